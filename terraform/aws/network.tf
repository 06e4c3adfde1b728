# Where the fleet lives and who may talk to it.

locals {
  management_port = 8000
  generator_port  = 9696
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

data "aws_vpc" "selected" {
  id      = var.vpc_id == "" ? null : var.vpc_id
  default = var.vpc_id == "" ? true : null
}

# Not every availability zone offers every instance type: use only subnets in
# zones that offer both the coordinator's and the generators' types.
data "aws_ec2_instance_type_offerings" "coordinator" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [var.coordinator_instance_type]
  }
}

data "aws_ec2_instance_type_offerings" "generator" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [var.generator_instance_type]
  }
}

data "aws_subnets" "selected" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.selected.id]
  }

  filter {
    name = "availability-zone"
    values = sort(setintersection(
      data.aws_ec2_instance_type_offerings.coordinator.locations,
      data.aws_ec2_instance_type_offerings.generator.locations,
    ))
  }
}

locals {
  subnet_ids = length(var.subnet_ids) > 0 ? var.subnet_ids : sort(data.aws_subnets.selected.ids)
}

resource "aws_security_group" "coordinator" {
  name        = "${var.name_prefix}-coordinator"
  description = "Stressgrid coordinator: management from the operator, generator endpoint from the generators"
  vpc_id      = data.aws_vpc.selected.id

  tags = {
    Name = "${var.name_prefix}-coordinator"
  }
}

resource "aws_security_group" "generator" {
  name        = "${var.name_prefix}-generator"
  description = "Stressgrid generators: no inbound traffic except SSH when a key pair is set"
  vpc_id      = data.aws_vpc.selected.id

  tags = {
    Name = "${var.name_prefix}-generator"
  }
}

# Management website and API: the operator's address(es) only.
resource "aws_vpc_security_group_ingress_rule" "management" {
  for_each = toset(local.management_cidr_blocks)

  security_group_id = aws_security_group.coordinator.id
  description       = "Stressgrid management website and API"
  ip_protocol       = "tcp"
  from_port         = local.management_port
  to_port           = local.management_port
  cidr_ipv4         = each.value
}

# Generator endpoint: members of the generator security group only.
resource "aws_vpc_security_group_ingress_rule" "generators" {
  security_group_id            = aws_security_group.coordinator.id
  description                  = "Stressgrid generators to the coordinator"
  ip_protocol                  = "tcp"
  from_port                    = local.generator_port
  to_port                      = local.generator_port
  referenced_security_group_id = aws_security_group.generator.id
}

# SSH from the operator's address(es), only when a key pair is given.
locals {
  ssh_rules = var.key_name == "" ? {} : {
    for pair in setproduct(["coordinator", "generator"], local.management_cidr_blocks) :
    "${pair[0]} ${pair[1]}" => { group = pair[0], cidr = pair[1] }
  }
  security_group_ids = {
    coordinator = aws_security_group.coordinator.id
    generator   = aws_security_group.generator.id
  }
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = local.ssh_rules

  security_group_id = local.security_group_ids[each.value.group]
  description       = "SSH from the operator"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value.cidr
}

# Outbound: anything. Generators must reach the targets under test, the
# coordinator the CloudWatch API.
resource "aws_vpc_security_group_egress_rule" "all_ipv4" {
  for_each = local.security_group_ids

  security_group_id = each.value
  description       = "All outbound IPv4"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "all_ipv6" {
  for_each = local.security_group_ids

  security_group_id = each.value
  description       = "All outbound IPv6"
  ip_protocol       = "-1"
  cidr_ipv6         = "::/0"
}
