variable "name" {
  description = "Name prefix for the resources (the trail is NAME-audit: 6 to 36 characters, starting with a letter)."
  type        = string
  default     = "oneway"
}

variable "vpc_id" {
  description = "The VPC the forwarder function runs in: the one that reaches the DataKit."
  type        = string
}

variable "vswitch_ids" {
  description = "vSwitches for the forwarder function's network interfaces."
  type        = list(string)
}

variable "datakit_address" {
  description = "The DataKit the forwarder posts to (an address)."
  type        = string

  validation {
    condition     = can(cidrhost("${var.datakit_address}/32", 0))
    error_message = "datakit_address must be an IPv4 address."
  }
}

variable "datakit_cidr" {
  description = "The forwarder's destination range for the DataKit port; null means datakit_address/32."
  type        = string
  default     = null
}

variable "datakit_port" {
  description = "The DataKit HTTP port (its logstreaming input)."
  type        = number
  default     = 9529
}

variable "sls_intranet_cidrs" {
  description = "Where the SLS intranet endpoint resolves (Alibaba Cloud's service range by default): the forwarder reads the ActionTrail records there."
  type        = list(string)
  default     = ["100.64.0.0/10"]
}

variable "dns_server_cidrs" {
  description = "The VPC's DNS resolvers, to resolve the SLS intranet endpoint."
  type        = list(string)
  default     = ["100.100.2.136/32", "100.100.2.138/32"]
}

variable "log_project_name" {
  description = "The SLS project's name (globally unique); null means NAME-audit-ACCOUNT."
  type        = string
  default     = null
}

variable "oss_bucket_name" {
  description = "The archive bucket's name (globally unique); null means NAME-actiontrail-ACCOUNT."
  type        = string
  default     = null
}

variable "retention_days" {
  description = "The archive bucket's locked WORM retention, in days: nobody can delete or overwrite a record before."
  type        = number
  default     = 400
}

variable "oss_versioning" {
  description = "Enable versioning on the archive bucket (regions that refuse WORM on a versioned bucket need false)."
  type        = bool
  default     = true
}

variable "retention_period" {
  description = "Retention, in days, of the trigger's run-log Logstore."
  type        = number
  default     = 30
}

variable "trigger_interval_seconds" {
  description = "How often the SLS trigger hands new records to the forwarder (3 to 600)."
  type        = number
  default     = 60
}

variable "create_service_linked_role" {
  description = "Create ActionTrail's service-linked role AliyunServiceRoleForActionTrail; false where it already exists."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
