output "coordinator_url" {
  description = "Management website and API of the coordinator."
  value       = "http://${google_compute_instance.coordinator.network_interface[0].access_config[0].nat_ip}:${local.management_port}"
}

output "management_token" {
  description = "Bearer token for the management website and API (terraform output -raw management_token)."
  value       = random_password.management_token.result
  sensitive   = true
}

output "coordinator_private_ip" {
  description = "Internal address of the coordinator inside the network."
  value       = google_compute_instance.coordinator.network_interface[0].network_ip
}

output "generator_coordinator_url" {
  description = "COORDINATOR_URL given to the generators."
  value       = local.generator_coordinator_url
}

output "generator_group" {
  description = "Name of the generators' managed instance group."
  value       = google_compute_instance_group_manager.generators.name
}

output "management_cidr_blocks" {
  description = "Addresses allowed to reach the management port."
  value       = local.management_cidr_blocks
}
