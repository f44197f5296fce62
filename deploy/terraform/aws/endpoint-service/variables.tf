variable "name" {
  description = "Name prefix for the resources."
  type        = string
  default     = "oneway"
}

variable "vpc_id" {
  description = "The Guance account's VPC the gateway runs in (see ../isolated-vpc)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the network load balancer."
  type        = list(string)
}

variable "gateway_ips" {
  description = "The gateway instances' or pods' addresses."
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

variable "consumer_principals" {
  description = "The customer account(s) allowed to connect, e.g. arn:aws:iam::111122223333:root."
  type        = list(string)
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
