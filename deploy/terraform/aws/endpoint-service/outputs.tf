output "service_name" {
  description = "Give it to the customer for their interface endpoint (../endpoint-consumer)."
  value       = aws_vpc_endpoint_service.gateway.service_name
}
