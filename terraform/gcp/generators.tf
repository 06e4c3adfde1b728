data "google_compute_image" "generator" {
  family  = "stressgrid-generator"
  project = local.image_project
}

locals {
  # What the generators dial: the coordinator's internal address.
  generator_coordinator_url = "tcp://${google_compute_instance.coordinator.network_interface[0].network_ip}:${local.generator_port}"
}

resource "google_compute_instance_template" "generator" {
  name_prefix  = "${var.name_prefix}-generator-"
  machine_type = var.generator_instance_type
  tags         = [local.generator_tag]

  disk {
    source_image = data.google_compute_image.generator.self_link
    boot         = true
    auto_delete  = true
    disk_size_gb = 20
  }

  # A public address so generators can reach targets on the internet without
  # Cloud NAT.
  network_interface {
    network    = var.network
    subnetwork = local.subnetwork
    access_config {}
  }

  metadata = {
    startup-script = templatefile("${path.module}/../templates/generator-startup.sh.tftpl", {
      coordinator_url = local.generator_coordinator_url
      join_token      = trimspace(var.join_token)
    })
  }

  labels = {
    role = "generator"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_instance_group_manager" "generators" {
  name               = "${var.name_prefix}-generators"
  zone               = var.zone
  base_instance_name = "${var.name_prefix}-generator"
  target_size        = var.capacity

  version {
    instance_template = google_compute_instance_template.generator.id
  }

  # A new template (new image, or a replaced coordinator with a new address)
  # replaces all generators at once: a load test needs them on one version.
  update_policy {
    type                  = "PROACTIVE"
    minimal_action        = "REPLACE"
    max_surge_fixed       = 0
    max_unavailable_fixed = max(var.capacity, 1)
  }
}
