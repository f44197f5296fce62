# The gateway's security group on Alibaba Cloud: the gateway port in from the agents (or the
# load balancer), the admin port from monitoring, and out only to the upstream port. Alibaba
# Cloud security groups allow all egress unless told otherwise: the lowest-priority rule here
# drops it, the upstream rule above it is the only exception.

terraform {
  required_version = ">= 1.5"
  required_providers {
    alicloud = {
      source  = "aliyun/alicloud"
      version = ">= 1.220.0"
    }
  }
}

resource "alicloud_security_group" "gateway" {
  security_group_name = "${var.name}-gateway"
  description         = "oneway: ${var.gateway_port}/tcp in, ${var.upstream_port}/tcp out to the upstream only"
  vpc_id              = var.vpc_id
  tags                = var.tags
}

resource "alicloud_security_group_rule" "ingest" {
  for_each          = toset(var.ingress_cidrs)
  security_group_id = alicloud_security_group.gateway.id
  type              = "ingress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "${var.gateway_port}/${var.gateway_port}"
  priority          = 1
  cidr_ip           = each.value
}

resource "alicloud_security_group_rule" "admin" {
  for_each          = toset(var.monitoring_cidrs)
  security_group_id = alicloud_security_group.gateway.id
  type              = "ingress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "${var.admin_port}/${var.admin_port}"
  priority          = 1
  cidr_ip           = each.value
}

resource "alicloud_security_group_rule" "upstream" {
  for_each          = toset(var.upstream_cidrs)
  security_group_id = alicloud_security_group.gateway.id
  type              = "egress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "${var.upstream_port}/${var.upstream_port}"
  priority          = 1
  cidr_ip           = each.value
}

resource "alicloud_security_group_rule" "deny_egress" {
  security_group_id = alicloud_security_group.gateway.id
  type              = "egress"
  ip_protocol       = "all"
  nic_type          = "intranet"
  policy            = "drop"
  port_range        = "-1/-1"
  priority          = 100
  cidr_ip           = "0.0.0.0/0"
}
