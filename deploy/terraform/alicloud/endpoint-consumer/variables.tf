variable "name" {
  description = "Name prefix for the resources."
  type        = string
  default     = "oneway"
}

variable "vpc_id" {
  description = "The customer's VPC with the DataKit hosts."
  type        = string
}

variable "zones" {
  description = "One vSwitch per zone for the endpoint."
  type = list(object({
    vswitch_id = string
    zone_id    = string
  }))
}

variable "service_id" {
  description = "The endpoint service's ID (../endpoint-service output service_id)."
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
