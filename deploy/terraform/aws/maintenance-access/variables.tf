variable "name" {
  description = "Name prefix for the resources."
  type        = string
  default     = "oneway"
}

variable "vpc_id" {
  description = "The VPC of the managed instances."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the interface endpoints (one per availability zone of the managed instances)."
  type        = list(string)
}

variable "route_table_ids" {
  description = "The managed instances' route tables, for the S3 gateway endpoint."
  type        = list(string)
}

variable "bucket_name" {
  description = "The session transcript bucket's name; null means NAME-ssm-sessions-ACCOUNT."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the session log group (the audit workspace keeps its own copy)."
  type        = number
  default     = 400
}

variable "idle_session_timeout_minutes" {
  description = "Session Manager closes a session idle this long (1 to 60)."
  type        = number
  default     = 15
}

variable "max_session_duration_minutes" {
  description = "Session Manager ends any session after this long (1 to 1440)."
  type        = number
  default     = 60
}

variable "vendor_principal_arns" {
  description = "The vendor's IAM principals allowed to assume the maintenance role during a window, e.g. arn:aws:iam::444455556666:role/guance-maintainer."
  type        = list(string)
  default     = []
}

variable "window_open" {
  description = "Whether the maintenance role exists. The customer opens a window with true (and the window_* values) and closes it with false."
  type        = bool
  default     = false
}

variable "window_id" {
  description = "A new name for every window, e.g. 2026-12-maint-1: a new one rotates the external ID."
  type        = string
  default     = "closed"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,64}$", var.window_id))
    error_message = "window_id: 1 to 64 letters, digits, '.', '_' or '-'."
  }
}

variable "window_starts_at" {
  description = "The window's start, RFC 3339 (e.g. 2026-12-05T01:00:00Z)."
  type        = string
  default     = null

  validation {
    condition     = var.window_starts_at == null || can(formatdate("YYYY-MM-DD'T'hh:mm:ssZ", var.window_starts_at))
    error_message = "window_starts_at must be an RFC 3339 timestamp, e.g. 2026-12-05T01:00:00Z."
  }
}

variable "window_ends_at" {
  description = "The window's end, RFC 3339 (e.g. 2026-12-05T05:00:00Z): after it the role can neither be assumed nor do anything."
  type        = string
  default     = null

  validation {
    condition     = var.window_ends_at == null || can(formatdate("YYYY-MM-DD'T'hh:mm:ssZ", var.window_ends_at))
    error_message = "window_ends_at must be an RFC 3339 timestamp, e.g. 2026-12-05T05:00:00Z."
  }
}

variable "maintenance_tag_key" {
  description = "The tag an instance must carry for the maintenance role to open a session on it."
  type        = string
  default     = "oneway-maintenance"
}

variable "maintenance_tag_value" {
  description = "The value of maintenance_tag_key that allows sessions."
  type        = string
  default     = "allowed"
}

variable "audit_forwarder_arn" {
  description = "The forwarder function of ../operation-audit (forwarder_function_arn); null: the session log group is not forwarded."
  type        = string
  default     = null
}

variable "audit_forwarder_name" {
  description = "The same function's name (forwarder_function_name), for its invoke permission."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
