output "security_group_id" {
  description = "Attach it to the gateway's ECS instances or pods (and nothing else)."
  value       = alicloud_security_group.gateway.id
}
