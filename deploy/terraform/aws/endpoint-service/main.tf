# Independent account: the gateway lives in the Guance account and is reachable from the
# customer's account only through a VPC endpoint service (PrivateLink) on one port. PrivateLink
# carries connections from the consumer to this service only: nothing here can open a
# connection into the customer's VPC. No peering, no NAT, no transit routes between the two.
# The network load balancer passes the agents' addresses in PROXY protocol v2; set
# [listener.proxy_protocol] trusted_cidrs to the subnets' ranges.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

resource "aws_lb" "gateway" {
  name                             = "${var.name}-gateway"
  internal                         = true
  load_balancer_type               = "network"
  subnets                          = var.subnet_ids
  enable_cross_zone_load_balancing = true
  tags                             = var.tags
}

resource "aws_lb_target_group" "gateway" {
  name                 = "${var.name}-gateway"
  port                 = var.gateway_port
  protocol             = "TCP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  proxy_protocol_v2    = true
  deregistration_delay = 45

  health_check {
    protocol = "TCP"
    port     = "traffic-port"
  }

  tags = var.tags
}

resource "aws_lb_target_group_attachment" "gateway" {
  for_each         = toset(var.gateway_ips)
  target_group_arn = aws_lb_target_group.gateway.arn
  target_id        = each.value
  port             = var.gateway_port
}

resource "aws_lb_listener" "gateway" {
  load_balancer_arn = aws_lb.gateway.arn
  port              = var.public_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway.arn
  }
}

resource "aws_vpc_endpoint_service" "gateway" {
  acceptance_required        = true
  network_load_balancer_arns = [aws_lb.gateway.arn]
  allowed_principals         = var.consumer_principals
  tags                       = merge(var.tags, { Name = "${var.name}-gateway" })
}
