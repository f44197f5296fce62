variable "name" {
  description = "Name prefix for the resources."
  type        = string
  default     = "oneway"
}

variable "vpc_id" {
  description = "The VPC the forwarder function runs in: the one that reaches the DataKit."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the forwarder function's network interfaces."
  type        = list(string)
}

variable "datakit_address" {
  description = "The DataKit the forwarder posts to (an address: no DNS is needed in the VPC)."
  type        = string

  validation {
    condition     = can(cidrhost("${var.datakit_address}/32", 0))
    error_message = "datakit_address must be an IPv4 address."
  }
}

variable "datakit_cidr" {
  description = "The forwarder's only destination range; null means datakit_address/32 (set it when several DataKits share a subnet)."
  type        = string
  default     = null
}

variable "datakit_port" {
  description = "The DataKit HTTP port (its logstreaming input): the forwarder's only destination port."
  type        = number
  default     = 9529
}

variable "extra_log_group_sources" {
  description = "Other log groups subscribed to the forwarder, name -> DataKit source, e.g. {\"/oneway/ssm-sessions\" = \"aws_ssm_session\"} for ../maintenance-access."
  type        = map(string)
  default     = {}
}

variable "bucket_name" {
  description = "The trail bucket's name; null means NAME-cloudtrail-ACCOUNT."
  type        = string
  default     = null
}

variable "retention_days" {
  description = "Object Lock COMPLIANCE retention of every trail file, in days: nobody can delete or overwrite a file before."
  type        = number
  default     = 400
}

variable "log_retention_days" {
  description = "Retention of the trail's and the function's CloudWatch log groups (the audit workspace keeps its own copy)."
  type        = number
  default     = 90
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
