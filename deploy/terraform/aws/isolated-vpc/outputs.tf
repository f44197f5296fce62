output "vpc_id" {
  description = "The isolated VPC."
  value       = aws_vpc.gateway.id
}

output "subnet_ids" {
  description = "Where to run the gateway."
  value       = aws_subnet.gateway[*].id
}

output "security_group_id" {
  description = "The gateway's security group."
  value       = module.security_group.security_group_id
}
