variable "name" {
  description = "Name prefix for the resources."
  type        = string
  default     = "oneway"
}

variable "vpc_id" {
  description = "The customer's VPC with the DataKit hosts."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the endpoint's interfaces."
  type        = list(string)
}

variable "service_name" {
  description = "The endpoint service's name (../endpoint-service output service_name)."
  type        = string
}

variable "public_port" {
  description = "The port DataKit (or oneway agent) connects to."
  type        = number
  default     = 443
}

variable "datakit_cidrs" {
  description = "The DataKit hosts' ranges."
  type        = list(string)
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
