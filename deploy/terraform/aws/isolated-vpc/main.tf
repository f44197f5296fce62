# VPC isolation: a VPC for the gateway with private subnets only. No internet gateway, no NAT
# gateway and no default route exist, so nothing in it can reach the internet or any network
# but the ones routed here explicitly (the upstream, through peering or a transit gateway that
# the operator adds to `upstream_route_targets`). The gateway's security group and a network
# ACL allow only the gateway port in and the upstream port out.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

resource "aws_vpc" "gateway" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = false
  enable_dns_hostnames = false
  tags                 = merge(var.tags, { Name = "${var.name}-isolated" })
}

resource "aws_subnet" "gateway" {
  count                   = length(var.subnet_cidrs)
  vpc_id                  = aws_vpc.gateway.id
  cidr_block              = var.subnet_cidrs[count.index]
  availability_zone       = var.availability_zones[count.index]
  map_public_ip_on_launch = false
  tags                    = merge(var.tags, { Name = "${var.name}-gateway-${count.index}" })
}

resource "aws_route_table" "gateway" {
  vpc_id = aws_vpc.gateway.id
  tags   = merge(var.tags, { Name = "${var.name}-no-default-route" })
}

# Routes to the upstream only, through what the operator provides (peering or transit gateway).
resource "aws_route" "upstream" {
  for_each                  = var.upstream_route_targets
  route_table_id            = aws_route_table.gateway.id
  destination_cidr_block    = each.key
  transit_gateway_id        = each.value.transit_gateway_id
  vpc_peering_connection_id = each.value.vpc_peering_connection_id
}

resource "aws_route_table_association" "gateway" {
  count          = length(aws_subnet.gateway)
  subnet_id      = aws_subnet.gateway[count.index].id
  route_table_id = aws_route_table.gateway.id
}

resource "aws_network_acl" "gateway" {
  vpc_id     = aws_vpc.gateway.id
  subnet_ids = aws_subnet.gateway[*].id
  tags       = merge(var.tags, { Name = "${var.name}-gateway" })

  dynamic "ingress" {
    for_each = { for i, cidr in var.ingress_cidrs : i => cidr }
    content {
      rule_no    = 100 + ingress.key
      protocol   = "tcp"
      action     = "allow"
      cidr_block = ingress.value
      from_port  = var.gateway_port
      to_port    = var.gateway_port
    }
  }

  # Replies from the upstream (network ACLs are stateless).
  dynamic "ingress" {
    for_each = { for i, cidr in var.upstream_cidrs : i => cidr }
    content {
      rule_no    = 200 + ingress.key
      protocol   = "tcp"
      action     = "allow"
      cidr_block = ingress.value
      from_port  = 1024
      to_port    = 65535
    }
  }

  dynamic "egress" {
    for_each = { for i, cidr in var.upstream_cidrs : i => cidr }
    content {
      rule_no    = 100 + egress.key
      protocol   = "tcp"
      action     = "allow"
      cidr_block = egress.value
      from_port  = var.upstream_port
      to_port    = var.upstream_port
    }
  }

  # Replies to the agents (stateless ACLs); no connection can start from here to them:
  # the security group allows no such egress.
  dynamic "egress" {
    for_each = { for i, cidr in var.ingress_cidrs : i => cidr }
    content {
      rule_no    = 200 + egress.key
      protocol   = "tcp"
      action     = "allow"
      cidr_block = egress.value
      from_port  = 1024
      to_port    = 65535
    }
  }
}

module "security_group" {
  source           = "../security-group"
  name             = var.name
  vpc_id           = aws_vpc.gateway.id
  gateway_port     = var.gateway_port
  admin_port       = var.admin_port
  ingress_cidrs    = var.ingress_cidrs
  monitoring_cidrs = var.monitoring_cidrs
  upstream_cidrs   = var.upstream_cidrs
  upstream_port    = var.upstream_port
  tags             = var.tags
}
