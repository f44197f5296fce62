output "forwarder_function_arn" {
  description = "Give it to ../maintenance-access (audit_forwarder_arn) to forward the session logs too."
  value       = aws_lambda_function.forwarder.arn
}

output "forwarder_function_name" {
  description = "Give it to ../maintenance-access (audit_forwarder_name)."
  value       = aws_lambda_function.forwarder.function_name
}

output "trail_arn" {
  description = "The multi-region trail."
  value       = aws_cloudtrail.audit.arn
}

output "bucket_name" {
  description = "The Object Lock bucket holding the trail's files and digests."
  value       = aws_s3_bucket.trail.id
}

output "log_group_name" {
  description = "The CloudWatch log group CloudTrail delivers to (source aws_cloudtrail in DataKit)."
  value       = aws_cloudwatch_log_group.trail.name
}

output "kms_key_arn" {
  description = "The key encrypting the trail's files and the audit log groups (readers need kms:Decrypt on it)."
  value       = aws_kms_key.audit.arn
}
