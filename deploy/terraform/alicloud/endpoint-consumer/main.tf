# The customer's side of the independent-account mode on Alibaba Cloud: a PrivateLink endpoint
# in the customer's VPC to the Guance account's endpoint service, reachable on one port from the
# DataKit hosts only. It gives the other side no way in.

terraform {
  required_version = ">= 1.5"
  required_providers {
    alicloud = {
      source  = "aliyun/alicloud"
      version = ">= 1.220.0"
    }
  }
}

resource "alicloud_security_group" "endpoint" {
  security_group_name = "${var.name}-endpoint"
  description         = "oneway endpoint: ${var.public_port}/tcp from the DataKit hosts"
  vpc_id              = var.vpc_id
  tags                = var.tags
}

resource "alicloud_security_group_rule" "datakit" {
  for_each          = toset(var.datakit_cidrs)
  security_group_id = alicloud_security_group.endpoint.id
  type              = "ingress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "${var.public_port}/${var.public_port}"
  priority          = 1
  cidr_ip           = each.value
}

resource "alicloud_privatelink_vpc_endpoint" "gateway" {
  vpc_endpoint_name  = "${var.name}-gateway"
  service_id         = var.service_id
  vpc_id             = var.vpc_id
  security_group_ids = [alicloud_security_group.endpoint.id]
}

resource "alicloud_privatelink_vpc_endpoint_zone" "gateway" {
  for_each    = { for z in var.zones : z.zone_id => z }
  endpoint_id = alicloud_privatelink_vpc_endpoint.gateway.id
  vswitch_id  = each.value.vswitch_id
  zone_id     = each.value.zone_id
}
