# The gateway's security group: the one inbound port from the agents (or the load balancer),
# the admin port from monitoring, and the only outbound connections to the upstream port.
# Used alone for a gateway host in an existing network (the host-firewall mode adds
# deploy/nftables on the host), and by the isolated-vpc and endpoint-service modules.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

resource "aws_security_group" "gateway" {
  name        = "${var.name}-gateway"
  description = "oneway: ${var.gateway_port}/tcp in, ${var.upstream_port}/tcp out to the upstream only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "ingest" {
  for_each          = toset(var.ingress_cidrs)
  security_group_id = aws_security_group.gateway.id
  description       = "DataKit pushes (mTLS)"
  ip_protocol       = "tcp"
  from_port         = var.gateway_port
  to_port           = var.gateway_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "admin" {
  for_each          = toset(var.monitoring_cidrs)
  security_group_id = aws_security_group.gateway.id
  description       = "metrics and health"
  ip_protocol       = "tcp"
  from_port         = var.admin_port
  to_port           = var.admin_port
  cidr_ipv4         = each.value
}

# A security group without egress rules allows nothing out; these are the only ones.
resource "aws_vpc_security_group_egress_rule" "upstream" {
  for_each          = toset(var.upstream_cidrs)
  security_group_id = aws_security_group.gateway.id
  description       = "the Guance DataWay only"
  ip_protocol       = "tcp"
  from_port         = var.upstream_port
  to_port           = var.upstream_port
  cidr_ipv4         = each.value
}
