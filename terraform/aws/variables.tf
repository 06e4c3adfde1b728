variable "region" {
  type        = string
  description = "AWS region to deploy to, for example us-east-1."
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
  default     = "c6i.xlarge"
  description = "EC2 instance type of the generators (one worker process per vCPU)."
}

variable "coordinator_instance_type" {
  type        = string
  default     = "t3.medium"
  description = "EC2 instance type of the coordinator."
}

variable "ami_owner" {
  type        = string
  default     = "self"
  description = "Owner of the stressgrid-coordinator-* / stressgrid-generator-* AMIs: \"self\" for AMIs built with packer/ in this account, or an AWS account ID that shares them."
}

variable "key_name" {
  type        = string
  default     = ""
  description = "Name of an EC2 key pair for SSH to the instances; empty means no SSH access."
}

variable "vpc_id" {
  type        = string
  default     = ""
  description = "VPC to deploy into; empty means the region's default VPC."
}

variable "subnet_ids" {
  type        = list(string)
  default     = []
  description = "Subnets for the instances (the coordinator uses the first); empty means every subnet of the VPC in a zone that offers both instance types. They need a route to the internet (an internet gateway) for the public addresses to work."
}

variable "management_cidr_blocks" {
  type        = list(string)
  default     = []
  description = "IPv4 CIDR blocks allowed to reach the management port (and SSH). Empty means only the public IP of the machine running terraform, as seen by caller_ip_url."
}

variable "caller_ip_url" {
  type        = string
  default     = "https://checkip.amazonaws.com"
  description = "Service that answers with the caller's public IPv4 address in plain text."
}

variable "name_prefix" {
  type        = string
  default     = "stressgrid"
  description = "Prefix of resource names; change it to run more than one fleet in an account."
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
