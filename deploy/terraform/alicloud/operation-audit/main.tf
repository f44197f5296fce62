# Operation audit on Alibaba Cloud: an ActionTrail trail records every API call in the account
# (trail_region "All", read and write events) and delivers it twice. To an OSS bucket for the
# long term: private, public access blocked, server-side encrypted, versioned, and under a locked
# WORM retention policy (alicloud_oss_bucket_worm), so nobody, the account owner included, can
# delete or overwrite a record before `retention_days`. And to a Simple Log Service project,
# where an SLS trigger runs the forwarder function (deploy/cloud-audit/forwarder.py) on each
# shard's new records: the function reads them with its role's STS credentials and posts them
# to the DataKit's logstreaming input in the VPC, which writes them to the Guance audit
# workspace. DataKit has no SLS input; that is why the function exists.
#
# Facts from the providers' and clouds' documentation that shape this module:
# - ActionTrail writes SLS through its service-linked role AliyunServiceRoleForActionTrail (the
#   provider's own example); it is created here unless it exists (create_service_linked_role).
# - ActionTrail creates the Logstore `actiontrail_<trail name>` itself and refuses other writers;
#   SLS keeps it forever by default. It is therefore not an alicloud_log_store here: changing its
#   retention is done on that Logstore (console, or an `import` block in the root module). The
#   one alicloud_log_store here holds the SLS trigger's own run logs (the trigger requires one).
# - Function Compute 2.0 resources (alicloud_fc_service/_function/_trigger) are deprecated in the
#   provider in favour of FC 3.0 (alicloud_fcv3_*), which is used here. FC 3.0 attaches a
#   function to a VPC through the service-linked role AliyunServiceRoleForFC, so the function's
#   own role holds one permission: log:GetCursorOrData (the PullLogs action) on the ActionTrail
#   Logstore.
# - The trigger's invocation role (assumed by SLS) may invoke this function, read the source
#   Logstore's shards and write the trigger's log Logstore. The docs name only the system role
#   AliyunLogETLRole for this; the custom role's actions here are the narrowest that match what
#   the trigger does.
# - OSS: newer regions allow WORM on a versioned bucket (InitiateBucketWorm); older ones refused
#   it (error 0027-00000003). Set oss_versioning = false where it is refused. A locked WORM policy
#   cannot be shortened or removed, and the bucket outlives `terraform destroy` until it expires.
#
# The network: internet_access is off, so the function reaches only its VPC. Its security group
# allows out, at priority 1: TCP to the DataKit's port; TCP 80 and 443 to Alibaba Cloud's service
# range (sls_intranet_cidrs, default 100.64.0.0/10), because the trigger hands the function the
# SLS *intranet* endpoint (http://<region>-intranet.log.aliyuncs.com) to read from, and that name
# resolves into this range; and DNS to the VPC's resolvers (dns_server_cidrs). A drop-all egress
# rule at the lowest priority ends everything else (the group's default would allow all). A
# security group cannot name a host, so 100.64.0.0/10 also holds other Alibaba Cloud service
# endpoints: narrow sls_intranet_cidrs to the addresses that name resolves to if you want. Whether
# FC 3.0 sends service-endpoint and DNS traffic through the function's network interface at all
# is not stated in the documentation found; if it does not, those rules are simply unused.

terraform {
  required_version = ">= 1.5"
  required_providers {
    alicloud = {
      source  = "aliyun/alicloud"
      version = ">= 1.252.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
  }
}

data "alicloud_account" "current" {}

data "alicloud_regions" "current" {
  current = true
}

locals {
  account       = data.alicloud_account.current.id
  region        = data.alicloud_regions.current.regions[0].id
  trail_name    = "${var.name}-audit"
  project       = coalesce(var.log_project_name, "${var.name}-audit-${local.account}")
  trail_store   = "actiontrail_${local.trail_name}"
  bucket        = coalesce(var.oss_bucket_name, "${var.name}-actiontrail-${local.account}")
  function_name = "${var.name}-audit-forwarder"
  datakit       = coalesce(var.datakit_cidr, "${var.datakit_address}/32")
  role_arn      = "acs:ram::${local.account}:role/aliyunserviceroleforactiontrail"
}

resource "alicloud_resource_manager_service_linked_role" "actiontrail" {
  count        = var.create_service_linked_role ? 1 : 0
  service_name = "actiontrail.aliyuncs.com"
}

resource "alicloud_log_project" "audit" {
  project_name = local.project
  description  = "oneway: ActionTrail events (Logstore ${local.trail_store}) and the forwarder trigger's logs"
  tags         = var.tags
}

# The SLS trigger's own run logs (ActionTrail's Logstore is created by ActionTrail: see above).
resource "alicloud_log_store" "trigger" {
  project_name     = alicloud_log_project.audit.project_name
  logstore_name    = "forwarder-trigger"
  retention_period = var.retention_period
  shard_count      = 1
}

# Long-term archive.
resource "alicloud_oss_bucket" "archive" {
  bucket        = local.bucket
  storage_class = "Standard"
  tags          = var.tags

  lifecycle {
    ignore_changes = [acl, versioning, server_side_encryption_rule]
  }
}

resource "alicloud_oss_bucket_acl" "archive" {
  bucket = alicloud_oss_bucket.archive.bucket
  acl    = "private"
}

resource "alicloud_oss_bucket_public_access_block" "archive" {
  bucket              = alicloud_oss_bucket.archive.bucket
  block_public_access = true
}

resource "alicloud_oss_bucket_server_side_encryption" "archive" {
  bucket        = alicloud_oss_bucket.archive.bucket
  sse_algorithm = "AES256"
}

resource "alicloud_oss_bucket_versioning" "archive" {
  count  = var.oss_versioning ? 1 : 0
  bucket = alicloud_oss_bucket.archive.bucket
  status = "Enabled"
}

resource "alicloud_oss_bucket_worm" "archive" {
  bucket                   = alicloud_oss_bucket.archive.bucket
  retention_period_in_days = var.retention_days
  status                   = "Locked"

  depends_on = [alicloud_oss_bucket_versioning.archive]
}

resource "alicloud_actiontrail_trail" "audit" {
  trail_name         = local.trail_name
  trail_region       = "All"
  event_rw           = "All"
  sls_project_arn    = "acs:log:${local.region}:${local.account}:project/${alicloud_log_project.audit.project_name}"
  sls_write_role_arn = local.role_arn
  oss_bucket_name    = alicloud_oss_bucket.archive.bucket
  oss_key_prefix     = "actiontrail"
  status             = "Enable"

  depends_on = [
    alicloud_resource_manager_service_linked_role.actiontrail,
    alicloud_oss_bucket_worm.archive,
    alicloud_oss_bucket_acl.archive,
    alicloud_oss_bucket_server_side_encryption.archive,
  ]
}

# The forwarder's role: read the ActionTrail Logstore, nothing else.
resource "alicloud_ram_role" "forwarder" {
  role_name   = "${var.name}-audit-forwarder"
  description = "oneway audit forwarder: reads the ActionTrail Logstore only"
  tags        = var.tags
  assume_role_policy_document = jsonencode({
    Version = "1"
    Statement = [{
      Action    = "sts:AssumeRole"
      Effect    = "Allow"
      Principal = { Service = ["fc.aliyuncs.com"] }
    }]
  })
}

resource "alicloud_ram_policy" "forwarder" {
  policy_name = "${var.name}-audit-forwarder-read"
  description = "Pull the ActionTrail Logstore's records (PullLogs)"
  policy_document = jsonencode({
    Version = "1"
    Statement = [{
      Effect   = "Allow"
      Action   = ["log:GetCursorOrData"]
      Resource = ["acs:log:${local.region}:${local.account}:project/${alicloud_log_project.audit.project_name}/logstore/${local.trail_store}"]
    }]
  })
}

resource "alicloud_ram_role_policy_attachment" "forwarder" {
  role_name   = alicloud_ram_role.forwarder.role_name
  policy_name = alicloud_ram_policy.forwarder.policy_name
  policy_type = "Custom"
}

# The role SLS assumes to run the trigger.
resource "alicloud_ram_role" "trigger" {
  role_name   = "${var.name}-audit-trigger"
  description = "oneway audit: SLS invokes the forwarder on new ActionTrail records"
  tags        = var.tags
  assume_role_policy_document = jsonencode({
    Version = "1"
    Statement = [{
      Action    = "sts:AssumeRole"
      Effect    = "Allow"
      Principal = { Service = ["log.aliyuncs.com"] }
    }]
  })
}

resource "alicloud_ram_policy" "trigger" {
  policy_name = "${var.name}-audit-trigger"
  description = "Invoke the forwarder, follow the ActionTrail Logstore's shards, write the trigger's logs"
  policy_document = jsonencode({
    Version = "1"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["fc:InvokeFunction"]
        Resource = ["acs:fc:${local.region}:${local.account}:functions/${local.function_name}"]
      },
      {
        Effect   = "Allow"
        Action   = ["log:ListShards", "log:GetCursorOrData"]
        Resource = ["acs:log:${local.region}:${local.account}:project/${alicloud_log_project.audit.project_name}/logstore/${local.trail_store}"]
      },
      {
        Effect   = "Allow"
        Action   = ["log:PostLogStoreLogs"]
        Resource = ["acs:log:${local.region}:${local.account}:project/${alicloud_log_project.audit.project_name}/logstore/${alicloud_log_store.trigger.logstore_name}"]
      },
    ]
  })
}

resource "alicloud_ram_role_policy_attachment" "trigger" {
  role_name   = alicloud_ram_role.trigger.role_name
  policy_name = alicloud_ram_policy.trigger.policy_name
  policy_type = "Custom"
}

# The forwarder: deploy/cloud-audit/forwarder.py, standard library (and the SLS SDK the runtime
# ships) only.
data "archive_file" "forwarder" {
  type             = "zip"
  source_file      = "${path.module}/../../../cloud-audit/forwarder.py"
  output_path      = "${path.module}/.build/forwarder-aliyun.zip"
  output_file_mode = "0644"
}

resource "alicloud_security_group" "forwarder" {
  security_group_name = "${var.name}-audit-forwarder"
  description         = "oneway audit forwarder: out to the DataKit and the SLS intranet endpoint only"
  vpc_id              = var.vpc_id
  tags                = var.tags
}

resource "alicloud_security_group_rule" "forwarder_datakit" {
  security_group_id = alicloud_security_group.forwarder.id
  type              = "egress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "${var.datakit_port}/${var.datakit_port}"
  priority          = 1
  cidr_ip           = local.datakit
  description       = "the DataKit logstreaming input"
}

resource "alicloud_security_group_rule" "forwarder_sls_http" {
  for_each          = toset(var.sls_intranet_cidrs)
  security_group_id = alicloud_security_group.forwarder.id
  type              = "egress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "80/80"
  priority          = 1
  cidr_ip           = each.value
  description       = "the SLS intranet endpoint (http, as the trigger hands it)"
}

resource "alicloud_security_group_rule" "forwarder_sls_https" {
  for_each          = toset(var.sls_intranet_cidrs)
  security_group_id = alicloud_security_group.forwarder.id
  type              = "egress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "443/443"
  priority          = 1
  cidr_ip           = each.value
  description       = "the SLS intranet endpoint (https)"
}

resource "alicloud_security_group_rule" "forwarder_dns" {
  for_each          = toset(var.dns_server_cidrs)
  security_group_id = alicloud_security_group.forwarder.id
  type              = "egress"
  ip_protocol       = "udp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "53/53"
  priority          = 1
  cidr_ip           = each.value
  description       = "the VPC's DNS resolvers (the SLS endpoint is a name)"
}

resource "alicloud_security_group_rule" "forwarder_deny_egress" {
  security_group_id = alicloud_security_group.forwarder.id
  type              = "egress"
  ip_protocol       = "all"
  nic_type          = "intranet"
  policy            = "drop"
  port_range        = "-1/-1"
  priority          = 100
  cidr_ip           = "0.0.0.0/0"
  description       = "everything else"
}

resource "alicloud_fcv3_function" "forwarder" {
  function_name   = local.function_name
  description     = "oneway: ActionTrail records to the DataKit in the isolated network"
  runtime         = "python3.10"
  handler         = "forwarder.aliyun_handler"
  role            = alicloud_ram_role.forwarder.arn
  memory_size     = 512
  timeout         = 120
  internet_access = false
  tags            = var.tags

  code {
    zip_file = filebase64(data.archive_file.forwarder.output_path)
  }

  environment_variables = {
    DATAKIT_URL = "http://${var.datakit_address}:${var.datakit_port}/v1/write/logstreaming"
    SOURCE      = "aliyun_actiontrail"
  }

  vpc_config {
    vpc_id            = var.vpc_id
    vswitch_ids       = var.vswitch_ids
    security_group_id = alicloud_security_group.forwarder.id
  }

  depends_on = [alicloud_ram_role_policy_attachment.forwarder]
}

resource "alicloud_fcv3_trigger" "actiontrail" {
  function_name   = alicloud_fcv3_function.forwarder.function_name
  trigger_name    = "actiontrail"
  trigger_type    = "log"
  qualifier       = "LATEST"
  description     = "new ActionTrail records in ${local.trail_store}"
  source_arn      = "acs:log:${local.region}:${local.account}:project/${alicloud_log_project.audit.project_name}"
  invocation_role = alicloud_ram_role.trigger.arn
  trigger_config = jsonencode({
    sourceConfig = {
      logstore  = local.trail_store
      startTime = null
    }
    jobConfig = {
      maxRetryTime    = 3
      triggerInterval = var.trigger_interval_seconds
    }
    functionParameter = {}
    logConfig = {
      project  = alicloud_log_project.audit.project_name
      logstore = alicloud_log_store.trigger.logstore_name
    }
    enable = true
  })

  # The Logstore exists once the trail does.
  depends_on = [alicloud_actiontrail_trail.audit, alicloud_ram_role_policy_attachment.trigger]
}
