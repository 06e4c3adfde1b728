data "aws_ami" "coordinator" {
  most_recent = true
  owners      = [var.ami_owner]

  filter {
    name   = "name"
    values = ["stressgrid-coordinator-*"]
  }
}

# Bearer token for the management website and API. Letters and digits only,
# so it needs no quoting in the env file or in an HTTP header.
resource "random_password" "management_token" {
  length  = 40
  special = false
}

resource "aws_instance" "coordinator" {
  ami                         = data.aws_ami.coordinator.id
  instance_type               = var.coordinator_instance_type
  key_name                    = var.key_name == "" ? null : var.key_name
  subnet_id                   = local.subnet_ids[0]
  vpc_security_group_ids      = [aws_security_group.coordinator.id]
  associate_public_ip_address = true
  iam_instance_profile        = aws_iam_instance_profile.coordinator.name

  user_data = templatefile("${path.module}/../templates/coordinator-startup.sh.tftpl", {
    management_token = random_password.management_token.result
    coordinator_key  = trimspace(var.coordinator_key)
    join_token       = trimspace(var.join_token)
    management_port  = local.management_port
    generator_port   = local.generator_port
    aws_region       = var.region
  })
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required" # IMDSv2 only
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 20
    encrypted   = true
  }

  tags = {
    Name = "${var.name_prefix}-coordinator"
    Role = "coordinator"
  }
}
