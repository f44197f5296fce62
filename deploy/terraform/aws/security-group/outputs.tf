output "security_group_id" {
  description = "Attach it to the gateway's instances or pods (and nothing else)."
  value       = aws_security_group.gateway.id
}
