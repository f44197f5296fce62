output "endpoint_domain" {
  description = "The address DataKit's dataway URL (or oneway agent) uses."
  value       = alicloud_privatelink_vpc_endpoint.gateway.endpoint_domain
}
