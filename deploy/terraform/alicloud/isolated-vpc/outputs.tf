output "vpc_id" {
  description = "The isolated VPC."
  value       = alicloud_vpc.gateway.id
}

output "vswitch_ids" {
  description = "Where to run the gateway."
  value       = alicloud_vswitch.gateway[*].id
}

output "security_group_id" {
  description = "The gateway's security group."
  value       = module.security_group.security_group_id
}
