# Maintenance access on Alibaba Cloud: the vendor reaches the customer's hosts only through a
# Cloud Bastionhost instance, and only while the customer has opened a maintenance window.
#
# - Port 22 on the managed hosts is open to the bastion's security group and nothing else: the
#   one port-22 rule of all these modules (on managed_security_group_id). The bastion itself
#   has no public access unless the customer lists the vendor's office egress in
#   public_access_cidrs; on the private side its security group takes only operator_cidrs on
#   the Bastionhost web and SSH O&M ports (bastion_web_port, bastion_ssh_port: check them on
#   the instance).
# - Bastionhost records sessions without extra configuration: the Session Audit pages show each
#   O&M session (graphic and text replay, commands, file transfers) and it keeps audit logs 180
#   days by default. Archiving them to SLS (Log Audit Service) or OSS, and two-factor login for
#   Bastionhost users, are console settings the provider does not expose: configure them there.
# - Each managed host is imported with a host account; the vendor's Bastionhost user exists only
#   while window_open is true, its password is a random_password kept by window_id (a new window
#   is a new password), and it is authorised on each host's account. The provider has no user
#   validity period (no start or end time on alicloud_bastionhost_user), so the bastion user does
#   NOT expire by itself: the customer closes the window by applying window_open = false, which
#   deletes the user and its authorisations.
# - Console (API) maintenance uses a RAM role that vendor_account_id may assume, also only while
#   window_open is true. Its custom policy allows console_actions only between window_starts_at
#   and window_ends_at (acs:CurrentTime) and with MFA (acs:MFAPresent), and denies everything
#   after window_ends_at: those permissions expire by themselves at the end of the window; the
#   role itself disappears when the customer applies window_open = false.
#
# Bastionhost is a subscription product: the instance is bought for `period` months on apply.

terraform {
  required_version = ">= 1.5"
  required_providers {
    alicloud = {
      source  = "aliyun/alicloud"
      version = ">= 1.252.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
  }
}

data "alicloud_regions" "current" {
  current = true
}

locals {
  region = data.alicloud_regions.current.regions[0].id
  window = {
    DateGreaterThan = { "acs:CurrentTime" = var.window_starts_at }
    DateLessThan    = { "acs:CurrentTime" = var.window_ends_at }
    Bool            = { "acs:MFAPresent" = "true" }
  }
}

resource "alicloud_security_group" "bastion" {
  security_group_name = "${var.name}-bastion"
  description         = "oneway bastion: O&M ports from operator_cidrs only"
  vpc_id              = var.vpc_id
  tags                = var.tags
}

resource "alicloud_security_group_rule" "bastion_web" {
  for_each          = toset(var.operator_cidrs)
  security_group_id = alicloud_security_group.bastion.id
  type              = "ingress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "${var.bastion_web_port}/${var.bastion_web_port}"
  priority          = 1
  cidr_ip           = each.value
  description       = "operators to the bastion's web console"
}

resource "alicloud_security_group_rule" "bastion_ssh" {
  for_each          = toset(var.operator_cidrs)
  security_group_id = alicloud_security_group.bastion.id
  type              = "ingress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "${var.bastion_ssh_port}/${var.bastion_ssh_port}"
  priority          = 1
  cidr_ip           = each.value
  description       = "operators to the bastion's SSH O&M port"
}

# The only port-22 rule: SSH to the managed hosts from the bastion's security group.
resource "alicloud_security_group_rule" "ssh_from_bastion" {
  security_group_id        = var.managed_security_group_id
  type                     = "ingress"
  ip_protocol              = "tcp"
  nic_type                 = "intranet"
  policy                   = "accept"
  port_range               = "22/22"
  priority                 = 1
  source_security_group_id = alicloud_security_group.bastion.id
  description              = "SSH from the oneway bastion only"
}

resource "alicloud_bastionhost_instance" "bastion" {
  description          = "${var.name}-bastion"
  license_code         = var.license_code
  plan_code            = var.plan_code
  storage              = var.storage_tb
  bandwidth            = var.bandwidth_mbps
  period               = var.period
  vswitch_id           = var.vswitch_id
  security_group_ids   = [alicloud_security_group.bastion.id]
  enable_public_access = length(var.public_access_cidrs) > 0
  public_white_list    = var.public_access_cidrs
  tags                 = var.tags
}

resource "alicloud_bastionhost_host" "managed" {
  for_each             = var.managed_hosts
  instance_id          = alicloud_bastionhost_instance.bastion.id
  host_name            = each.key
  active_address_type  = "Private"
  host_private_address = each.value.private_ip
  os_type              = "Linux"
  source               = "Ecs"
  source_instance_id   = each.value.ecs_instance_id
  instance_region_id   = local.region
  comment              = "oneway managed host"
}

resource "alicloud_bastionhost_host_account" "managed" {
  for_each          = var.managed_hosts
  instance_id       = alicloud_bastionhost_instance.bastion.id
  host_id           = alicloud_bastionhost_host.managed[each.key].host_id
  host_account_name = var.host_account_name
  protocol_name     = "SSH"
  private_key       = var.host_account_private_key
}

# The vendor engineer's password: a new one for every window.
resource "random_password" "vendor" {
  length      = 32
  special     = true
  min_upper   = 2
  min_lower   = 2
  min_numeric = 2
  min_special = 2
  # Punctuation kept to what password policies commonly accept.
  override_special = "!@#%*_-+="
  keepers = {
    window = var.window_id
  }
}

resource "alicloud_bastionhost_user" "vendor" {
  count        = var.window_open ? 1 : 0
  instance_id  = alicloud_bastionhost_instance.bastion.id
  source       = "Local"
  user_name    = var.vendor_user_name
  display_name = "vendor maintenance ${var.window_id}"
  password     = random_password.vendor.result
  comment      = "oneway maintenance window ${var.window_id}: ${coalesce(var.window_starts_at, "?")} to ${coalesce(var.window_ends_at, "?")}"

  lifecycle {
    precondition {
      condition     = var.window_starts_at != null && var.window_ends_at != null && var.window_id != "closed"
      error_message = "An open window needs its own window_id, window_starts_at and window_ends_at."
    }
    precondition {
      condition     = try(timecmp(var.window_ends_at, plantimestamp()) > 0, false)
      error_message = "window_ends_at is already past: this window is over."
    }
  }
}

resource "alicloud_bastionhost_host_account_user_attachment" "vendor" {
  for_each         = var.window_open ? var.managed_hosts : {}
  instance_id      = alicloud_bastionhost_instance.bastion.id
  user_id          = alicloud_bastionhost_user.vendor[0].user_id
  host_id          = alicloud_bastionhost_host.managed[each.key].host_id
  host_account_ids = [alicloud_bastionhost_host_account.managed[each.key].host_account_id]
}

# Console and API maintenance: a role the vendor's account may assume during the window.
resource "alicloud_ram_role" "maintenance" {
  count                = var.window_open ? 1 : 0
  role_name            = "${var.name}-maintenance"
  description          = "oneway maintenance window ${var.window_id}"
  max_session_duration = 3600
  tags                 = merge(var.tags, { "oneway-window" = var.window_id })
  assume_role_policy_document = jsonencode({
    Version = "1"
    Statement = [{
      Action    = "sts:AssumeRole"
      Effect    = "Allow"
      Principal = { RAM = ["acs:ram::${var.vendor_account_id}:root"] }
    }]
  })

  lifecycle {
    precondition {
      condition     = var.vendor_account_id != null && try(timecmp(var.window_starts_at, var.window_ends_at) < 0, false)
      error_message = "An open window needs vendor_account_id, and window_starts_at before window_ends_at."
    }
  }
}

resource "alicloud_ram_policy" "maintenance" {
  count       = var.window_open ? 1 : 0
  policy_name = "${var.name}-maintenance-${var.window_id}"
  description = "oneway maintenance window ${var.window_id}: allowed only inside the window, with MFA"
  policy_document = jsonencode({
    Version = "1"
    Statement = [
      {
        Effect    = "Allow"
        Action    = var.console_actions
        Resource  = "*"
        Condition = local.window
      },
      {
        Effect    = "Deny"
        Action    = "*"
        Resource  = "*"
        Condition = { DateGreaterThan = { "acs:CurrentTime" = var.window_ends_at } }
      },
      # Whatever console_actions says: never the recording itself (the trail, the bastion,
      # the function that delivers the trail) nor who may do what.
      {
        Effect   = "Deny"
        Action   = ["actiontrail:CreateTrail", "actiontrail:DeleteTrail", "actiontrail:UpdateTrail", "actiontrail:StopLogging", "actiontrail:StartLogging", "bastionhost:*", "ram:*", "fc:*"]
        Resource = "*"
      },
    ]
  })
}

resource "alicloud_ram_role_policy_attachment" "maintenance" {
  count       = var.window_open ? 1 : 0
  role_name   = alicloud_ram_role.maintenance[0].role_name
  policy_name = alicloud_ram_policy.maintenance[0].policy_name
  policy_type = "Custom"
}
