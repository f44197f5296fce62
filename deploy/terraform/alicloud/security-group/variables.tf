variable "name" {
  description = "Name prefix for the resources."
  type        = string
  default     = "oneway"
}

variable "vpc_id" {
  description = "The VPC the gateway runs in."
  type        = string
}

variable "gateway_port" {
  description = "The gateway's public listener port (listener.address)."
  type        = number
  default     = 8443
}

variable "admin_port" {
  description = "The admin port (admin.address): /metrics, /live, /ready."
  type        = number
  default     = 9090
}

variable "ingress_cidrs" {
  description = "Who may reach the gateway port: the agents' ranges, or the load balancer's subnets."
  type        = list(string)
}

variable "monitoring_cidrs" {
  description = "Who may scrape the admin port."
  type        = list(string)
  default     = []
}

variable "upstream_cidrs" {
  description = "The Guance DataWay (or its load balancer) ranges: the only destinations."
  type        = list(string)
}

variable "upstream_port" {
  description = "The DataWay port: the only destination port."
  type        = number
  default     = 9528
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
