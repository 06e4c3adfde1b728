# Base machines: the current Ubuntu LTS (24.04, "noble") on x86_64. Image
# names, families and tags are set per role in stressgrid.pkr.hcl.

source "amazon-ebs" "ubuntu" {
  region        = var.aws_region
  instance_type = var.aws_instance_type
  ami_regions   = var.ami_regions
  ami_users     = var.ami_users
  ssh_username  = "ubuntu"

  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["099720109477"] # Canonical
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = 10
    volume_type           = "gp3"
    iops                  = 3000 # gp3 baseline, stated for older plugins
    throughput            = 125  # that require it
    delete_on_termination = true
  }
}

source "googlecompute" "ubuntu" {
  project_id              = var.gcp_project_id
  zone                    = var.gcp_zone
  machine_type            = var.gcp_machine_type
  source_image_family     = "ubuntu-2404-lts-amd64"
  source_image_project_id = ["ubuntu-os-cloud"]
  ssh_username            = "packer"
  disk_size               = 10
}
