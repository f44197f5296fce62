output "maintenance_role_arn" {
  description = "The role the vendor assumes during the window (null when the window is closed)."
  value       = one(aws_iam_role.maintenance[*].arn)
}

output "external_id" {
  description = "The external ID for this window: hand it to the vendor out of band (null when closed)."
  value       = var.window_open ? random_password.external_id.result : null
  sensitive   = true
}

output "managed_security_group_id" {
  description = "Attach it to the managed instances (beside their own groups): no ingress, 443 to the endpoints."
  value       = aws_security_group.managed.id
}

output "instance_profile_name" {
  description = "The instance profile for the managed instances (SSM agent and session records)."
  value       = aws_iam_instance_profile.instance.name
}

output "session_log_group_name" {
  description = "Where sessions stream (source aws_ssm_session in DataKit: add it to ../operation-audit's extra_log_group_sources)."
  value       = aws_cloudwatch_log_group.sessions.name
}

output "session_bucket_name" {
  description = "Where session transcripts are uploaded."
  value       = aws_s3_bucket.sessions.id
}

output "session_document_name" {
  description = "The Session Manager preferences document."
  value       = aws_ssm_document.session_preferences.name
}
