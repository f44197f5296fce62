# VPC isolation on Alibaba Cloud: a VPC for the gateway with vSwitches only. No NAT gateway,
# no EIP and no VPN or CEN attachment exist here, so nothing in it reaches the internet or any
# network but the upstream's, which the operator connects explicitly (a CEN transit router or
# a VPC peering limited to the upstream's range). The gateway's security group allows only
# the gateway port in and the upstream port out.

terraform {
  required_version = ">= 1.5"
  required_providers {
    alicloud = {
      source  = "aliyun/alicloud"
      version = ">= 1.220.0"
    }
  }
}

resource "alicloud_vpc" "gateway" {
  vpc_name   = "${var.name}-isolated"
  cidr_block = var.vpc_cidr
  tags       = var.tags
}

resource "alicloud_vswitch" "gateway" {
  count        = length(var.vswitch_cidrs)
  vswitch_name = "${var.name}-gateway-${count.index}"
  vpc_id       = alicloud_vpc.gateway.id
  cidr_block   = var.vswitch_cidrs[count.index]
  zone_id      = var.zone_ids[count.index]
  tags         = var.tags
}

module "security_group" {
  source           = "../security-group"
  name             = var.name
  vpc_id           = alicloud_vpc.gateway.id
  gateway_port     = var.gateway_port
  admin_port       = var.admin_port
  ingress_cidrs    = var.ingress_cidrs
  monitoring_cidrs = var.monitoring_cidrs
  upstream_cidrs   = var.upstream_cidrs
  upstream_port    = var.upstream_port
  tags             = var.tags
}
