locals {
  image_project = var.image_project == "" ? var.project : var.image_project
}

data "google_compute_image" "coordinator" {
  family  = "stressgrid-coordinator"
  project = local.image_project
}

# Bearer token for the management website and API. Letters and digits only,
# so it needs no quoting in the env file or in an HTTP header.
resource "random_password" "management_token" {
  length  = 40
  special = false
}

# The instances carry no service account: nothing on them calls Google APIs.
resource "google_compute_instance" "coordinator" {
  name         = "${var.name_prefix}-coordinator"
  machine_type = var.coordinator_instance_type
  zone         = var.zone
  tags         = [local.coordinator_tag]

  boot_disk {
    initialize_params {
      image = data.google_compute_image.coordinator.self_link
      size  = 20
    }
  }

  network_interface {
    network    = var.network
    subnetwork = local.subnetwork
    access_config {} # public address for the management website
  }

  metadata = {
    startup-script = templatefile("${path.module}/../templates/coordinator-startup.sh.tftpl", {
      management_token = random_password.management_token.result
      coordinator_key  = trimspace(var.coordinator_key)
      join_token       = trimspace(var.join_token)
      management_port  = local.management_port
      generator_port   = local.generator_port
      aws_region       = ""
    })
  }

  labels = {
    role = "coordinator"
  }
}
