# Maintenance access on AWS: the vendor reaches the customer's instances only through AWS Systems
# Manager Session Manager, and only while the customer has opened a maintenance window.
#
# - No SSH: the managed instances' security group has no ingress rule at all, and its only egress
#   is 443 to the VPC endpoints (ssm, ssmmessages, ec2messages, logs, kms: interface endpoints
#   with private DNS, whose security group takes 443 from the managed instances only) and to the
#   S3 gateway endpoint's prefix list (session transcripts go to S3, and a gateway endpoint has
#   no security group: the prefix list is how a rule names it). No NAT or internet route is
#   needed. Attach the group next to the instances' own groups.
# - Every session is recorded: the account's Session Manager preferences (the document
#   SSM-SessionManagerRunShell) stream each session to a KMS-encrypted log group and upload the
#   transcript to a versioned, KMS-encrypted, non-public S3 bucket, and encrypt the session itself
#   with the same key; Run As is off. When audit_forwarder_arn/_name are set (the outputs of
#   ../operation-audit), the log group is subscribed to the forwarder, so the transcripts reach
#   the Guance audit workspace beside the CloudTrail record of StartSession.
#   If the account's preferences were ever saved in the console, SSM-SessionManagerRunShell
#   already exists: import it (terraform import ...aws_ssm_document.session_preferences
#   SSM-SessionManagerRunShell) before the first apply.
# - The maintenance role exists only while var.window_open is true (closing a window = apply with
#   window_open = false, which deletes the role). While it exists, its trust policy lets the
#   vendor's principals assume it only between window_starts_at and window_ends_at, with MFA, and
#   with the external ID; that ID is a random_password whose keeper is window_id, so each new
#   window has a new one. Sessions last at most an hour, and an explicit Deny on everything after
#   window_ends_at ends what a session assumed just before the end could still do. What expires by
#   itself: assuming the role, and every permission of a session, at window_ends_at. What the
#   customer must do: apply with window_open = false to remove the role.
# - The role may start sessions only on instances tagged maintenance_tag_key =
#   maintenance_tag_value, only with the recorded preferences document
#   (ssm:SessionDocumentAccessCheck), may end and resume only its own sessions, and may describe.
#
# AWS enforces the time conditions with aws:CurrentTime; terraform only checks (preconditions)
# that the window is well formed and not already over when the role is created.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account      = data.aws_caller_identity.current.account_id
  partition    = data.aws_partition.current.partition
  region       = data.aws_region.current.name
  session_logs = "/${var.name}/ssm-sessions"
  bucket       = coalesce(var.bucket_name, "${var.name}-ssm-sessions-${local.account}")
  document     = "SSM-SessionManagerRunShell"
  interface    = toset(["ssm", "ssmmessages", "ec2messages", "logs", "kms"])
}

resource "aws_kms_key" "sessions" {
  description             = "${var.name}: Session Manager sessions, transcripts and log group"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  tags                    = var.tags
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersTheKey"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsTheSessionGroup"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${local.session_logs}" }
        }
      },
    ]
  })
}

resource "aws_cloudwatch_log_group" "sessions" {
  name              = local.session_logs
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.sessions.arn
  tags              = var.tags
}

resource "aws_s3_bucket" "sessions" {
  bucket = local.bucket
  tags   = var.tags
}

resource "aws_s3_bucket_versioning" "sessions" {
  bucket = aws_s3_bucket.sessions.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "sessions" {
  bucket                  = aws_s3_bucket.sessions.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "sessions" {
  bucket = aws_s3_bucket.sessions.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.sessions.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_policy" "sessions" {
  bucket = aws_s3_bucket.sessions.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyWithoutTLS"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.sessions.arn, "${aws_s3_bucket.sessions.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
  depends_on = [aws_s3_bucket_public_access_block.sessions]
}

# The account's (and region's) Session Manager preferences.
resource "aws_ssm_document" "session_preferences" {
  name            = local.document
  document_type   = "Session"
  document_format = "JSON"
  tags            = var.tags
  content = jsonencode({
    schemaVersion = "1.0"
    description   = "oneway: every session recorded to CloudWatch Logs and S3, KMS-encrypted"
    sessionType   = "Standard_Stream"
    inputs = {
      s3BucketName                = aws_s3_bucket.sessions.id
      s3KeyPrefix                 = "sessions"
      s3EncryptionEnabled         = true
      cloudWatchLogGroupName      = aws_cloudwatch_log_group.sessions.name
      cloudWatchEncryptionEnabled = true
      cloudWatchStreamingEnabled  = true
      kmsKeyId                    = aws_kms_key.sessions.arn
      runAsEnabled                = false
      runAsDefaultUser            = ""
      idleSessionTimeout          = tostring(var.idle_session_timeout_minutes)
      maxSessionDuration          = tostring(var.max_session_duration_minutes)
      shellProfile = {
        windows = ""
        linux   = ""
      }
    }
  })
}

# The network path: endpoints in the VPC, reachable on 443 from the managed instances only.
resource "aws_security_group" "endpoints" {
  name        = "${var.name}-ssm-endpoints"
  description = "oneway: 443 in from the managed instances only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_managed" {
  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS from the managed instances"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.managed.id
}

resource "aws_security_group" "managed" {
  name        = "${var.name}-ssm-managed"
  description = "oneway: no ingress at all; 443 out to the SSM, logs, KMS and S3 endpoints only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

# No ingress rule exists for this group (no port 22): sessions arrive over the agent's own
# outbound connection. These are its only egress rules.
resource "aws_vpc_security_group_egress_rule" "managed_to_endpoints" {
  security_group_id            = aws_security_group.managed.id
  description                  = "HTTPS to the interface endpoints"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints.id
}

resource "aws_vpc_security_group_egress_rule" "managed_to_s3" {
  security_group_id = aws_security_group.managed.id
  description       = "HTTPS to S3 through the gateway endpoint (session transcripts)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = local.interface
  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.subnet_ids
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true
  tags                = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.route_table_ids
  tags              = merge(var.tags, { Name = "${var.name}-s3" })
}

# The managed instances' role: the SSM agent, and writing the session records.
resource "aws_iam_role" "instance" {
  name = "${var.name}-ssm-managed-instance"
  tags = var.tags
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy_attachment" "instance_core" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy" "instance_records" {
  name = "write-session-records"
  role = aws_iam_role.instance.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "SessionLogGroup"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        Resource = ["${aws_cloudwatch_log_group.sessions.arn}:*"]
      },
      {
        Sid      = "FindTheLogGroup"
        Effect   = "Allow"
        Action   = "logs:DescribeLogGroups"
        Resource = "*"
      },
      {
        Sid      = "SessionBucket"
        Effect   = "Allow"
        Action   = "s3:PutObject"
        Resource = "${aws_s3_bucket.sessions.arn}/*"
      },
      {
        Sid      = "SessionBucketEncryption"
        Effect   = "Allow"
        Action   = "s3:GetEncryptionConfiguration"
        Resource = aws_s3_bucket.sessions.arn
      },
      {
        Sid      = "SessionKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = aws_kms_key.sessions.arn
      },
    ]
  })
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-ssm-managed-instance"
  role = aws_iam_role.instance.name
  tags = var.tags
}

# The external ID the vendor must present: a new one for every window.
resource "random_password" "external_id" {
  length  = 32
  special = false
  keepers = {
    window = var.window_id
  }
}

resource "aws_iam_role" "maintenance" {
  count                = var.window_open ? 1 : 0
  name                 = "${var.name}-maintenance"
  description          = "oneway maintenance window ${var.window_id}: ${coalesce(var.window_starts_at, "?")} to ${coalesce(var.window_ends_at, "?")}"
  max_session_duration = 3600
  tags                 = merge(var.tags, { "oneway-window" = var.window_id })
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "VendorDuringTheWindowWithMfa"
      Effect    = "Allow"
      Principal = { AWS = var.vendor_principal_arns }
      Action    = "sts:AssumeRole"
      Condition = {
        DateGreaterThan = { "aws:CurrentTime" = var.window_starts_at }
        DateLessThan    = { "aws:CurrentTime" = var.window_ends_at }
        Bool            = { "aws:MultiFactorAuthPresent" = "true" }
        StringEquals    = { "sts:ExternalId" = random_password.external_id.result }
      }
    }]
  })

  lifecycle {
    precondition {
      condition     = var.window_starts_at != null && var.window_ends_at != null && var.window_id != "closed" && length(var.vendor_principal_arns) > 0
      error_message = "An open window needs its own window_id, window_starts_at, window_ends_at and vendor_principal_arns."
    }
    precondition {
      condition     = try(timecmp(var.window_starts_at, var.window_ends_at) < 0, false)
      error_message = "window_starts_at must be before window_ends_at."
    }
    precondition {
      condition     = try(timecmp(var.window_ends_at, plantimestamp()) > 0, false)
      error_message = "window_ends_at is already past: this window is over."
    }
  }
}

resource "aws_iam_role_policy" "maintenance" {
  count = var.window_open ? 1 : 0
  name  = "session-manager-in-window"
  role  = aws_iam_role.maintenance[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "StartSessionOnTaggedInstances"
        Effect   = "Allow"
        Action   = "ssm:StartSession"
        Resource = "arn:${local.partition}:ec2:*:${local.account}:instance/*"
        Condition = {
          StringEquals = { "ssm:resourceTag/${var.maintenance_tag_key}" = var.maintenance_tag_value }
          BoolIfExists = { "ssm:SessionDocumentAccessCheck" = "true" }
          DateLessThan = { "aws:CurrentTime" = var.window_ends_at }
        }
      },
      {
        Sid      = "OnlyTheRecordedPreferences"
        Effect   = "Allow"
        Action   = "ssm:StartSession"
        Resource = "arn:${local.partition}:ssm:*:${local.account}:document/${local.document}"
        Condition = {
          BoolIfExists = { "ssm:SessionDocumentAccessCheck" = "true" }
          DateLessThan = { "aws:CurrentTime" = var.window_ends_at }
        }
      },
      {
        Sid      = "OwnSessionsOnly"
        Effect   = "Allow"
        Action   = ["ssm:TerminateSession", "ssm:ResumeSession"]
        Resource = "arn:${local.partition}:ssm:*:*:session/$${aws:userid}-*"
      },
      {
        Sid    = "ReadOnlyDescribes"
        Effect = "Allow"
        Action = [
          "ssm:DescribeSessions",
          "ssm:GetConnectionStatus",
          "ssm:DescribeInstanceInformation",
          "ssm:DescribeInstanceProperties",
          "ec2:DescribeInstances",
        ]
        Resource = "*"
      },
      {
        Sid      = "EncryptTheSession"
        Effect   = "Allow"
        Action   = "kms:GenerateDataKey"
        Resource = aws_kms_key.sessions.arn
      },
      {
        Sid       = "NothingAfterTheWindow"
        Effect    = "Deny"
        Action    = "*"
        Resource  = "*"
        Condition = { DateGreaterThan = { "aws:CurrentTime" = var.window_ends_at } }
      },
    ]
  })
}

# Session transcripts to the Guance audit workspace, through ../operation-audit's forwarder.
resource "aws_lambda_permission" "sessions" {
  count          = var.audit_forwarder_name == null ? 0 : 1
  statement_id   = "CloudWatchLogsSessionGroup"
  action         = "lambda:InvokeFunction"
  function_name  = var.audit_forwarder_name
  principal      = "logs.amazonaws.com"
  source_arn     = "${aws_cloudwatch_log_group.sessions.arn}:*"
  source_account = local.account
}

resource "aws_cloudwatch_log_subscription_filter" "sessions" {
  count           = var.audit_forwarder_arn == null ? 0 : 1
  name            = "${var.name}-audit-forwarder"
  log_group_name  = aws_cloudwatch_log_group.sessions.name
  filter_pattern  = ""
  destination_arn = var.audit_forwarder_arn

  depends_on = [aws_lambda_permission.sessions]
}
