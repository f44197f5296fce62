# Operation audit on AWS: every API call in the account (every region, global services too) is
# recorded by a CloudTrail trail and delivered twice. Once to an S3 bucket for the long term:
# SSE-KMS, versioned, public access blocked, TLS only, and Object Lock in COMPLIANCE mode, so no
# one (the vendor's maintenance role and the account root included) can delete or rewrite a
# record before `retention_days`; CloudTrail's digest files prove the log files were not changed.
# Once to a CloudWatch Logs group, which a subscription filter hands to the forwarder function
# (deploy/cloud-audit/forwarder.py): it runs in the VPC and posts each record to the DataKit's
# logstreaming input, which writes it to the Guance audit workspace. DataKit has no
# S3/CloudWatch input; that is why the function exists. Its security group's only egress is TCP
# to the DataKit's port; its role may write its own logs and manage its VPC network interfaces,
# nothing else. CloudWatch Logs invokes it, not the network: it needs no other route.
#
# Other log groups (the Session Manager log group of ../maintenance-access) reach the same
# function with their own subscription filter; name them in `extra_log_group_sources`.
#
# Object Lock COMPLIANCE cannot be shortened or removed: the bucket and its objects outlive a
# `terraform destroy` until the retention has passed. The Lambda function's own log group is
# created here (KMS, retention) so the function's role needs no logs:CreateLogGroup.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account    = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  trail_name = "${var.name}-audit"
  trail_arn  = "arn:${local.partition}:cloudtrail:${local.region}:${local.account}:trail/${local.trail_name}"
  bucket     = coalesce(var.bucket_name, "${var.name}-cloudtrail-${local.account}")
  function   = "${var.name}-audit-forwarder"
  trail_logs = "/${var.name}/cloudtrail"
  datakit    = coalesce(var.datakit_cidr, "${var.datakit_address}/32")
}

# One key for the trail's files, its log group and the function's log group.
resource "aws_kms_key" "audit" {
  description             = "${var.name}: CloudTrail files and audit log groups"
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
        Sid       = "CloudTrailEncryptsThisTrail"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "kms:GenerateDataKey*"
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceArn" = local.trail_arn }
          StringLike   = { "kms:EncryptionContext:aws:cloudtrail:arn" = "arn:${local.partition}:cloudtrail:*:${local.account}:trail/*" }
        }
      },
      {
        Sid       = "CloudTrailDescribesTheKey"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "kms:DescribeKey"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsTheAuditGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = [
              "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${local.trail_logs}",
              "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:/aws/lambda/${local.function}",
            ]
          }
        }
      },
    ]
  })
}

resource "aws_s3_bucket" "trail" {
  bucket              = local.bucket
  object_lock_enabled = true
  tags                = var.tags
}

resource "aws_s3_bucket_versioning" "trail" {
  bucket = aws_s3_bucket.trail.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "trail" {
  bucket = aws_s3_bucket.trail.id
  rule {
    default_retention {
      mode = "COMPLIANCE"
      days = var.retention_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.trail]
}

resource "aws_s3_bucket_public_access_block" "trail" {
  bucket                  = aws_s3_bucket.trail.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "trail" {
  bucket = aws_s3_bucket.trail.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.audit.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_policy" "trail" {
  bucket = aws_s3_bucket.trail.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "CloudTrailAclCheck"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "s3:GetBucketAcl"
        Resource  = aws_s3_bucket.trail.arn
        Condition = { StringEquals = { "aws:SourceArn" = local.trail_arn } }
      },
      {
        Sid       = "CloudTrailWrite"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.trail.arn}/AWSLogs/${local.account}/*"
        Condition = {
          StringEquals = {
            "s3:x-amz-acl"  = "bucket-owner-full-control"
            "aws:SourceArn" = local.trail_arn
          }
        }
      },
      {
        Sid       = "DenyWithoutTLS"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.trail.arn, "${aws_s3_bucket.trail.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
  depends_on = [aws_s3_bucket_public_access_block.trail]
}

resource "aws_cloudwatch_log_group" "trail" {
  name              = local.trail_logs
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.audit.arn
  tags              = var.tags
}

# The role CloudTrail assumes to write the log group, for this trail only.
resource "aws_iam_role" "trail_logs" {
  name = "${var.name}-cloudtrail-logs"
  tags = var.tags
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "cloudtrail.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceArn" = local.trail_arn } }
    }]
  })
}

resource "aws_iam_role_policy" "trail_logs" {
  name = "write-trail-log-group"
  role = aws_iam_role.trail_logs.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = "${aws_cloudwatch_log_group.trail.arn}:*"
    }]
  })
}

resource "aws_cloudtrail" "audit" {
  name                          = local.trail_name
  s3_bucket_name                = aws_s3_bucket.trail.id
  is_multi_region_trail         = true
  include_global_service_events = true
  enable_log_file_validation    = true
  kms_key_id                    = aws_kms_key.audit.arn
  cloud_watch_logs_group_arn    = "${aws_cloudwatch_log_group.trail.arn}:*"
  cloud_watch_logs_role_arn     = aws_iam_role.trail_logs.arn
  tags                          = var.tags

  depends_on = [aws_s3_bucket_policy.trail, aws_iam_role_policy.trail_logs]
}

# The forwarder: deploy/cloud-audit/forwarder.py, standard library only.
data "archive_file" "forwarder" {
  type             = "zip"
  source_file      = "${path.module}/../../../cloud-audit/forwarder.py"
  output_path      = "${path.module}/.build/forwarder-aws.zip"
  output_file_mode = "0644"
}

resource "aws_security_group" "forwarder" {
  name        = "${var.name}-audit-forwarder"
  description = "oneway audit forwarder: ${var.datakit_port}/tcp out to the DataKit only, nothing in"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

# A security group without egress rules allows nothing out; this is the only one.
resource "aws_vpc_security_group_egress_rule" "forwarder_datakit" {
  security_group_id = aws_security_group.forwarder.id
  description       = "the DataKit logstreaming input only"
  ip_protocol       = "tcp"
  from_port         = var.datakit_port
  to_port           = var.datakit_port
  cidr_ipv4         = local.datakit
}

resource "aws_cloudwatch_log_group" "forwarder" {
  name              = "/aws/lambda/${local.function}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.audit.arn
  tags              = var.tags
}

resource "aws_iam_role" "forwarder" {
  name = local.function
  tags = var.tags
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

# What AWSLambdaVPCAccessExecutionRole grants, with the logs part narrowed to its own group.
resource "aws_iam_role_policy" "forwarder" {
  name = "vpc-and-own-logs"
  role = aws_iam_role.forwarder.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "OwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "${aws_cloudwatch_log_group.forwarder.arn}:*"
      },
      {
        Sid    = "VpcNetworkInterfaces"
        Effect = "Allow"
        Action = [
          "ec2:CreateNetworkInterface",
          "ec2:DescribeNetworkInterfaces",
          "ec2:DescribeSubnets",
          "ec2:DeleteNetworkInterface",
          "ec2:AssignPrivateIpAddresses",
          "ec2:UnassignPrivateIpAddresses",
        ]
        Resource = "*"
      },
    ]
  })
}

resource "aws_lambda_function" "forwarder" {
  function_name    = local.function
  description      = "oneway: cloud operation audit to the DataKit in the isolated network"
  role             = aws_iam_role.forwarder.arn
  handler          = "forwarder.aws_handler"
  runtime          = "python3.12"
  filename         = data.archive_file.forwarder.output_path
  source_code_hash = data.archive_file.forwarder.output_base64sha256
  timeout          = 60
  memory_size      = 128
  tags             = var.tags

  environment {
    variables = {
      DATAKIT_URL       = "http://${var.datakit_address}:${var.datakit_port}/v1/write/logstreaming"
      LOG_GROUP_SOURCES = jsonencode(merge({ (local.trail_logs) = "aws_cloudtrail" }, var.extra_log_group_sources))
    }
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = [aws_security_group.forwarder.id]
  }

  depends_on = [aws_cloudwatch_log_group.forwarder, aws_iam_role_policy.forwarder]
}

resource "aws_lambda_permission" "trail_logs" {
  statement_id   = "CloudWatchLogsTrailGroup"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.forwarder.function_name
  principal      = "logs.amazonaws.com"
  source_arn     = "${aws_cloudwatch_log_group.trail.arn}:*"
  source_account = local.account
}

resource "aws_cloudwatch_log_subscription_filter" "trail" {
  name            = "${var.name}-audit-forwarder"
  log_group_name  = aws_cloudwatch_log_group.trail.name
  filter_pattern  = ""
  destination_arn = aws_lambda_function.forwarder.arn

  depends_on = [aws_lambda_permission.trail_logs]
}
