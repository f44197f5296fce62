variable "name" {
  description = "Name prefix for the resources."
  type        = string
  default     = "oneway"
}

variable "vpc_cidr" {
  description = "The isolated VPC's range."
  type        = string
}

variable "subnet_cidrs" {
  description = "One private subnet per availability zone."
  type        = list(string)
}

variable "availability_zones" {
  description = "The zones of `subnet_cidrs`, in the same order."
  type        = list(string)
}

variable "gateway_port" {
  description = "The gateway's public listener port."
  type        = number
  default     = 8443
}

variable "admin_port" {
  description = "The admin port: /metrics, /live, /ready."
  type        = number
  default     = 9090
}

variable "ingress_cidrs" {
  description = "The agents' ranges (or the load balancer's subnets)."
  type        = list(string)
}

variable "monitoring_cidrs" {
  description = "Who may scrape the admin port."
  type        = list(string)
  default     = []
}

variable "upstream_cidrs" {
  description = "The Guance DataWay ranges: the only destinations."
  type        = list(string)
}

variable "upstream_port" {
  description = "The DataWay port: the only destination port."
  type        = number
  default     = 9528
}

variable "upstream_route_targets" {
  description = "Per upstream CIDR, the transit gateway or peering connection that reaches it (set the other to null)."
  type = map(object({
    transit_gateway_id        = string
    vpc_peering_connection_id = string
  }))
  default = {}
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
