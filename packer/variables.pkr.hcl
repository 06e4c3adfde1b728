# Inputs of the image builds. Set them with -var NAME=VALUE or a
# *.pkrvars.hcl file (see docs/deployment.md).

variable "wheel" {
  type        = string
  description = "Path of the stressgrid wheel (built for the image's Python 3.12 on x86_64) or of a stressgrid source archive (.tar.gz, compiled on the build instance)."

  validation {
    # Written with functions that Packer has had for years (no regex).
    condition = (
      length(split("-", basename(var.wheel))) >= 2 &&
      split("-", basename(var.wheel))[0] == "stressgrid" &&
      (trimsuffix(basename(var.wheel), ".whl") != basename(var.wheel) ||
      trimsuffix(basename(var.wheel), ".tar.gz") != basename(var.wheel))
    )
    error_message = "The wheel variable must name a stressgrid-<version>-*.whl wheel or a stressgrid-<version>.tar.gz source archive."
  }
}

# --- Amazon EC2 ---------------------------------------------------------

variable "aws_region" {
  type        = string
  default     = "us-east-1"
  description = "Region in which the AMIs are built."
}

variable "ami_regions" {
  type        = list(string)
  default     = ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]
  description = "Regions the finished AMIs are copied to (the build region may be listed too)."
}

variable "ami_users" {
  type        = list(string)
  default     = []
  description = "AWS account IDs that may launch the AMIs, besides the owner."
}

variable "aws_instance_type" {
  type        = string
  default     = "t3.small"
  description = "Instance type of the temporary build instance."
}

# --- Google Compute Engine ----------------------------------------------

variable "gcp_project_id" {
  type        = string
  default     = ""
  description = "GCP project in which the images are built and stored (required for the googlecompute builds)."
}

variable "gcp_zone" {
  type        = string
  default     = "us-central1-a"
  description = "Zone of the temporary build instance."
}

variable "gcp_machine_type" {
  type        = string
  default     = "e2-standard-2"
  description = "Machine type of the temporary build instance."
}

locals {
  # stressgrid-0.1.0-cp312-cp312-linux_x86_64.whl or stressgrid-0.1.0.tar.gz
  wheel_name = basename(var.wheel)
  version    = trimsuffix(split("-", local.wheel_name)[1], ".tar.gz")

  # GCE image names allow only lower-case letters, digits and dashes.
  image_version = replace(replace(replace(lower(local.version), ".", "-"), "+", "-"), "_", "-")

  timestamp = formatdate("YYYYMMDDhhmmss", timestamp())

  # Where the build instance receives the package and the files/ directory.
  upload_dir = "/tmp/stressgrid-build"
}
