output "bastion_instance_id" {
  description = "The Bastionhost instance."
  value       = alicloud_bastionhost_instance.bastion.id
}

output "bastion_security_group_id" {
  description = "The bastion's security group (the only source allowed to port 22 of the managed hosts)."
  value       = alicloud_security_group.bastion.id
}

output "vendor_user_name" {
  description = "The vendor engineer's Bastionhost user (null when the window is closed)."
  value       = one(alicloud_bastionhost_user.vendor[*].user_name)
}

output "vendor_password" {
  description = "Its password for this window: hand it over out of band (null when closed)."
  value       = var.window_open ? random_password.vendor.result : null
  sensitive   = true
}

output "maintenance_role_arn" {
  description = "The RAM role the vendor's account assumes during the window (null when closed)."
  value       = one(alicloud_ram_role.maintenance[*].arn)
}
