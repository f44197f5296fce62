variable "name" {
  description = "Name prefix for the resources."
  type        = string
  default     = "oneway"
}

variable "vpc_id" {
  description = "The Guance account's VPC the gateway runs in (see ../isolated-vpc)."
  type        = string
}

variable "zone_mappings" {
  description = "One vSwitch per zone for the network load balancer."
  type = list(object({
    vswitch_id = string
    zone_id    = string
  }))
}

variable "gateway_ips" {
  description = "The gateway ECS instances' or pods' addresses."
  type        = list(string)
}

variable "gateway_port" {
  description = "The gateway's listener port."
  type        = number
  default     = 8443
}

variable "public_port" {
  description = "The port the customer's endpoint exposes."
  type        = number
  default     = 443
}

variable "consumer_account_ids" {
  description = "The customer's Alibaba Cloud account ID(s) allowed to connect."
  type        = list(string)
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
