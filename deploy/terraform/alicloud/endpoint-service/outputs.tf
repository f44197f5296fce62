output "service_id" {
  description = "Give it to the customer for their endpoint (../endpoint-consumer)."
  value       = alicloud_privatelink_vpc_endpoint_service.gateway.id
}
