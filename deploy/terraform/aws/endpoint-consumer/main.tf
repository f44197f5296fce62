# The customer's side of the independent-account mode: an interface endpoint in the customer's
# VPC to the Guance account's endpoint service, reachable on one port from the DataKit hosts
# only. The endpoint accepts connections from this VPC; it gives the other side no way in.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

resource "aws_security_group" "endpoint" {
  name        = "${var.name}-endpoint"
  description = "oneway endpoint: ${var.public_port}/tcp from the DataKit hosts"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "datakit" {
  for_each          = toset(var.datakit_cidrs)
  security_group_id = aws_security_group.endpoint.id
  ip_protocol       = "tcp"
  from_port         = var.public_port
  to_port           = var.public_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_endpoint" "gateway" {
  vpc_id              = var.vpc_id
  service_name        = var.service_name
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.subnet_ids
  security_group_ids  = [aws_security_group.endpoint.id]
  private_dns_enabled = false
  tags                = merge(var.tags, { Name = "${var.name}-gateway" })
}
