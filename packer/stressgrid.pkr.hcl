# One build, four images: {amazon-ebs, googlecompute} x {coordinator,
# generator}. The source's name is the role, handed to provision.sh.
# Pick images with -only, for example:
#   packer build -only='stressgrid.amazon-ebs.*' -var wheel=... packer/
#   packer build -only='stressgrid.googlecompute.generator' -var wheel=... -var gcp_project_id=... packer/

build {
  name = "stressgrid"

  source "amazon-ebs.ubuntu" {
    name            = "coordinator"
    ami_name        = "stressgrid-coordinator-${local.version}-${local.timestamp}"
    ami_description = "Stressgrid ${local.version} coordinator on Ubuntu 24.04"
    tags = {
      Name    = "stressgrid-coordinator"
      Role    = "coordinator"
      Version = local.version
    }
  }

  source "amazon-ebs.ubuntu" {
    name            = "generator"
    ami_name        = "stressgrid-generator-${local.version}-${local.timestamp}"
    ami_description = "Stressgrid ${local.version} generator on Ubuntu 24.04"
    tags = {
      Name    = "stressgrid-generator"
      Role    = "generator"
      Version = local.version
    }
  }

  source "googlecompute.ubuntu" {
    name              = "coordinator"
    image_name        = "stressgrid-coordinator-${local.image_version}-${local.timestamp}"
    image_family      = "stressgrid-coordinator"
    image_description = "Stressgrid ${local.version} coordinator on Ubuntu 24.04"
    image_labels = {
      role    = "coordinator"
      version = local.image_version
    }
  }

  source "googlecompute.ubuntu" {
    name              = "generator"
    image_name        = "stressgrid-generator-${local.image_version}-${local.timestamp}"
    image_family      = "stressgrid-generator"
    image_description = "Stressgrid ${local.version} generator on Ubuntu 24.04"
    image_labels = {
      role    = "generator"
      version = local.image_version
    }
  }

  provisioner "shell" {
    inline = ["mkdir -p ${local.upload_dir}/files"]
  }

  # Unit files, env file defaults, sysctl and limits files.
  provisioner "file" {
    source      = "${path.root}/files/"
    destination = "${local.upload_dir}/files"
  }

  provisioner "file" {
    source      = var.wheel
    destination = "${local.upload_dir}/${local.wheel_name}"
  }

  provisioner "shell" {
    script = "${path.root}/scripts/provision.sh"
    environment_vars = [
      "STRESSGRID_ROLE=${source.name}",
      "STRESSGRID_WHEEL=${local.upload_dir}/${local.wheel_name}",
      "STRESSGRID_FILES=${local.upload_dir}/files",
    ]
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E bash {{ .Path }}"
  }

  provisioner "shell" {
    inline = ["sudo rm -rf ${local.upload_dir}"]
  }
}
