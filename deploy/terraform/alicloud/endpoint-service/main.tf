# Independent account on Alibaba Cloud: the gateway lives in the Guance account behind an
# intranet network load balancer, published as a PrivateLink endpoint service that only the
# customer's account may connect to. PrivateLink carries connections from the consumer to this
# service only. No peering, no CEN, no NAT between the accounts. The load balancer passes the
# agents' addresses in PROXY protocol; set [listener.proxy_protocol] trusted_cidrs to the
# vSwitches' ranges.

terraform {
  required_version = ">= 1.5"
  required_providers {
    alicloud = {
      source  = "aliyun/alicloud"
      version = ">= 1.220.0"
    }
  }
}

resource "alicloud_nlb_load_balancer" "gateway" {
  load_balancer_name = "${var.name}-gateway"
  load_balancer_type = "Network"
  address_type       = "Intranet"
  address_ip_version = "Ipv4"
  vpc_id             = var.vpc_id
  tags               = var.tags

  dynamic "zone_mappings" {
    for_each = var.zone_mappings
    content {
      vswitch_id = zone_mappings.value.vswitch_id
      zone_id    = zone_mappings.value.zone_id
    }
  }
}

resource "alicloud_nlb_server_group" "gateway" {
  server_group_name = "${var.name}-gateway"
  server_group_type = "Ip"
  vpc_id            = var.vpc_id
  scheduler         = "Wrr"
  protocol          = "TCP"

  health_check {
    health_check_enabled = true
    health_check_type    = "TCP"
  }
}

resource "alicloud_nlb_server_group_server_attachment" "gateway" {
  for_each        = toset(var.gateway_ips)
  server_group_id = alicloud_nlb_server_group.gateway.id
  server_type     = "Ip"
  server_id       = each.value
  server_ip       = each.value
  port            = var.gateway_port
  weight          = 100
}

resource "alicloud_nlb_listener" "gateway" {
  load_balancer_id       = alicloud_nlb_load_balancer.gateway.id
  server_group_id        = alicloud_nlb_server_group.gateway.id
  listener_protocol      = "TCP"
  listener_port          = var.public_port
  proxy_protocol_enabled = true
}

resource "alicloud_privatelink_vpc_endpoint_service" "gateway" {
  service_description    = "oneway: DataKit pushes into the Guance account"
  service_resource_type  = "nlb"
  auto_accept_connection = false
}

resource "alicloud_privatelink_vpc_endpoint_service_resource" "gateway" {
  service_id    = alicloud_privatelink_vpc_endpoint_service.gateway.id
  resource_id   = alicloud_nlb_load_balancer.gateway.id
  resource_type = "nlb"
}

resource "alicloud_privatelink_vpc_endpoint_service_user" "customer" {
  for_each   = toset(var.consumer_account_ids)
  service_id = alicloud_privatelink_vpc_endpoint_service.gateway.id
  user_id    = each.value
}
