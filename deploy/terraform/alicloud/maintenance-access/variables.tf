variable "name" {
  description = "Name prefix for the resources."
  type        = string
  default     = "oneway"
}

variable "vpc_id" {
  description = "The VPC of the managed hosts."
  type        = string
}

variable "vswitch_id" {
  description = "The vSwitch the bastion instance is placed in."
  type        = string
}

variable "managed_security_group_id" {
  description = "The managed hosts' security group: it gets the one rule allowing port 22, from the bastion only."
  type        = string
}

variable "managed_hosts" {
  description = "The hosts the vendor may maintain: host name -> {private_ip, ecs_instance_id}."
  type = map(object({
    private_ip      = string
    ecs_instance_id = string
  }))
}

variable "host_account_name" {
  description = "The account on each managed host that the bastion logs in as."
  type        = string
  default     = "oneway-maint"
}

variable "host_account_private_key" {
  description = "That account's SSH private key, base64-encoded, for the bastion to hold; null: enter it in the Bastionhost console."
  type        = string
  default     = null
  sensitive   = true
}

variable "license_code" {
  description = "The Bastionhost package (see DescribePricingModule), e.g. bhah_ent_50_asset."
  type        = string
  default     = "bhah_ent_50_asset"
}

variable "plan_code" {
  description = "cloudbastion (Basic) or cloudbastion_ha (HA)."
  type        = string
  default     = "cloudbastion"
}

variable "storage_tb" {
  description = "Session recording storage, in TB (0 to 500)."
  type        = string
  default     = "5"
}

variable "bandwidth_mbps" {
  description = "Bandwidth, in Mbit/s (a multiple of 5 on the China site, of 10 on the international site)."
  type        = string
  default     = "10"
}

variable "period" {
  description = "Subscription months for the bastion instance (1 to 9, 12, 24, 36)."
  type        = number
  default     = 1
}

variable "public_access_cidrs" {
  description = "Public addresses (the vendor's office egress) allowed to reach the bastion; empty (the default): no public access at all."
  type        = list(string)
  default     = []
}

variable "operator_cidrs" {
  description = "Private ranges (a VPN, an Express Connect) allowed to reach the bastion's O&M ports."
  type        = list(string)
  default     = []
}

variable "bastion_web_port" {
  description = "The bastion's web O&M port opened to operator_cidrs (check it on the instance)."
  type        = number
  default     = 443
}

variable "bastion_ssh_port" {
  description = "The bastion's SSH O&M port opened to operator_cidrs (check it on the instance; never 22)."
  type        = number
  default     = 60022

  validation {
    condition     = var.bastion_ssh_port != 22
    error_message = "The bastion's O&M port is not the hosts' port 22."
  }
}

variable "vendor_user_name" {
  description = "The vendor engineer's Bastionhost user name (letters, digits, underscores)."
  type        = string
  default     = "vendor_maint"
}

variable "vendor_account_id" {
  description = "The vendor's Alibaba Cloud account ID, trusted by the maintenance RAM role during a window."
  type        = string
  default     = null
}

variable "console_actions" {
  description = "What the maintenance role may do in the console or API during the window (read-only by default)."
  type        = list(string)
  default     = ["ecs:Describe*", "vpc:Describe*", "log:Get*", "log:List*", "cms:Describe*", "cms:Query*", "actiontrail:LookupEvents"]
}

variable "window_open" {
  description = "Whether the vendor's bastion user and RAM role exist. The customer opens a window with true (and the window_* values) and closes it with false."
  type        = bool
  default     = false
}

variable "window_id" {
  description = "A new name for every window, e.g. 2026-12-maint-1: a new one rotates the vendor's password."
  type        = string
  default     = "closed"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,64}$", var.window_id))
    error_message = "window_id: 1 to 64 letters, digits, '.', '_' or '-'."
  }
}

variable "window_starts_at" {
  description = "The window's start, RFC 3339 (e.g. 2026-12-05T09:00:00+08:00)."
  type        = string
  default     = null

  validation {
    condition     = var.window_starts_at == null || can(formatdate("YYYY-MM-DD'T'hh:mm:ssZ", var.window_starts_at))
    error_message = "window_starts_at must be an RFC 3339 timestamp, e.g. 2026-12-05T09:00:00+08:00."
  }
}

variable "window_ends_at" {
  description = "The window's end, RFC 3339: after it the RAM role can do nothing."
  type        = string
  default     = null

  validation {
    condition     = var.window_ends_at == null || can(formatdate("YYYY-MM-DD'T'hh:mm:ssZ", var.window_ends_at))
    error_message = "window_ends_at must be an RFC 3339 timestamp, e.g. 2026-12-05T13:00:00+08:00."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
