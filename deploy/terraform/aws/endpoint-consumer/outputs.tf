output "dns_entries" {
  description = "The endpoint's DNS names: the address DataKit's dataway URL (or oneway agent) uses."
  value       = aws_vpc_endpoint.gateway.dns_entry[*].dns_name
}
