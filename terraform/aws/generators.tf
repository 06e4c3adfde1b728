data "aws_ami" "generator" {
  most_recent = true
  owners      = [var.ami_owner]

  filter {
    name   = "name"
    values = ["stressgrid-generator-*"]
  }
}

locals {
  # What the generators dial: the coordinator's private address.
  generator_coordinator_url = "tcp://${aws_instance.coordinator.private_ip}:${local.generator_port}"
}

resource "aws_launch_template" "generator" {
  name_prefix            = "${var.name_prefix}-generator-"
  image_id               = data.aws_ami.generator.id
  instance_type          = var.generator_instance_type
  key_name               = var.key_name == "" ? null : var.key_name
  update_default_version = true

  user_data = base64encode(templatefile("${path.module}/../templates/generator-startup.sh.tftpl", {
    coordinator_url = local.generator_coordinator_url
    join_token      = trimspace(var.join_token)
  }))

  # A public address so generators can reach targets on the internet without
  # a NAT gateway.
  network_interfaces {
    associate_public_ip_address = true
    delete_on_termination       = true
    security_groups             = [aws_security_group.generator.id]
  }

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required" # IMDSv2 only
  }

  tag_specifications {
    resource_type = "instance"
    tags = {
      Name = "${var.name_prefix}-generator"
      Role = "generator"
    }
  }
}

resource "aws_autoscaling_group" "generators" {
  name                = "${var.name_prefix}-generators"
  min_size            = var.capacity
  max_size            = var.capacity
  desired_capacity    = var.capacity
  vpc_zone_identifier = local.subnet_ids
  health_check_type   = "EC2"

  launch_template {
    id      = aws_launch_template.generator.id
    version = aws_launch_template.generator.latest_version
  }

  # A new launch template version (new AMI, or a replaced coordinator with a
  # new address) replaces the generators at once: a load test needs all of
  # them on the same version, not a slow rolling mix.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 0
    }
  }

  tag {
    key                 = "Name"
    value               = "${var.name_prefix}-generator"
    propagate_at_launch = true
  }
}
