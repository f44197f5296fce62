output "trail_name" {
  description = "The ActionTrail trail (all regions, read and write events)."
  value       = alicloud_actiontrail_trail.audit.trail_name
}

output "log_project_name" {
  description = "The SLS project ActionTrail delivers to."
  value       = alicloud_log_project.audit.project_name
}

output "actiontrail_logstore" {
  description = "The Logstore ActionTrail creates and writes (source aliyun_actiontrail in DataKit)."
  value       = local.trail_store
}

output "archive_bucket_name" {
  description = "The WORM-locked OSS bucket with the long-term copy."
  value       = alicloud_oss_bucket.archive.bucket
}

output "forwarder_function_name" {
  description = "The Function Compute 3.0 function that posts the records to the DataKit."
  value       = alicloud_fcv3_function.forwarder.function_name
}

output "forwarder_security_group_id" {
  description = "The forwarder's security group (out to the DataKit and the SLS endpoint only)."
  value       = alicloud_security_group.forwarder.id
}
