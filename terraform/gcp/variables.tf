variable "project" {
  type        = string
  description = "GCP project to deploy to."
}

variable "region" {
  type        = string
  description = "GCP region, for example us-central1."
}

variable "zone" {
  type        = string
  description = "GCP zone inside the region, for example us-central1-a."
}

variable "capacity" {
  type        = number
  default     = 1
  description = "Number of generator instances."

  validation {
    condition     = var.capacity >= 0 && floor(var.capacity) == var.capacity
    error_message = "capacity must be a whole number, 0 or more."
  }
}

variable "generator_instance_type" {
  type        = string
  default     = "n2-standard-4"
  description = "Machine type of the generators (one worker process per vCPU)."
}

variable "coordinator_instance_type" {
  type        = string
  default     = "e2-medium"
  description = "Machine type of the coordinator."
}

variable "image_project" {
  type        = string
  default     = ""
  description = "Project holding the stressgrid-coordinator / stressgrid-generator image families; empty means the deployment project (images built with packer/ there)."
}

variable "network" {
  type        = string
  default     = "default"
  description = "VPC network to deploy into."
}

variable "subnetwork" {
  type        = string
  default     = ""
  description = "Subnetwork for the instances; required only for custom-mode networks."
}

variable "management_cidr_blocks" {
  type        = list(string)
  default     = []
  description = "IPv4 CIDR blocks allowed to reach the management port. Empty means only the public IP of the machine running terraform, as seen by caller_ip_url."
}

variable "caller_ip_url" {
  type        = string
  default     = "https://ipv4.icanhazip.com"
  description = "Service that answers with the caller's public IPv4 address in plain text."
}

variable "name_prefix" {
  type        = string
  default     = "stressgrid"
  description = "Prefix of resource names and network tags; change it to run more than one fleet in a project."
}

variable "coordinator_key" {
  description = "The coordinator's CurveZMQ secret key: the contents of coordinator.key made by 'python -m coordinator_app join-token --data-dir DIR'."
  type        = string
  sensitive   = true
}

variable "join_token" {
  description = "The fleet's join token from the same command (DIR/join-token); generators without it are refused."
  type        = string
  sensitive   = true

  validation {
    condition     = startswith(trimspace(var.join_token), "sgj1_")
    error_message = "The join token starts with sgj1_ (python -m coordinator_app join-token prints it)."
  }
}
