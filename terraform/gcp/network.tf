# Who may talk to the fleet.

locals {
  management_port = 8000
  generator_port  = 9696
  coordinator_tag = "${var.name_prefix}-coordinator"
  generator_tag   = "${var.name_prefix}-generator"
  subnetwork      = var.subnetwork == "" ? null : var.subnetwork
}

# The operator's public address, so the management port can be opened to
# that one address only (unless management_cidr_blocks says otherwise).
data "http" "caller_ip" {
  count = length(var.management_cidr_blocks) == 0 ? 1 : 0
  url   = var.caller_ip_url

  lifecycle {
    postcondition {
      condition     = self.status_code == 200 && can(cidrnetmask("${chomp(self.response_body)}/32"))
      error_message = "Could not learn this machine's public IPv4 address from caller_ip_url; set management_cidr_blocks instead."
    }
  }
}

locals {
  management_cidr_blocks = (
    length(var.management_cidr_blocks) > 0
    ? var.management_cidr_blocks
    : ["${chomp(data.http.caller_ip[0].response_body)}/32"]
  )
}

# Management website and API: the operator's address(es) only.
resource "google_compute_firewall" "coordinator_management" {
  name          = "${var.name_prefix}-coordinator-management"
  description   = "Stressgrid management website and API"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = local.management_cidr_blocks
  target_tags   = [local.coordinator_tag]

  allow {
    protocol = "tcp"
    ports    = [tostring(local.management_port)]
  }
}

# Generator endpoint: instances tagged as generators only.
resource "google_compute_firewall" "coordinator_generators" {
  name        = "${var.name_prefix}-coordinator-generators"
  description = "Stressgrid generators to the coordinator"
  network     = var.network
  direction   = "INGRESS"
  source_tags = [local.generator_tag]
  target_tags = [local.coordinator_tag]

  allow {
    protocol = "tcp"
    ports    = [tostring(local.generator_port)]
  }
}
