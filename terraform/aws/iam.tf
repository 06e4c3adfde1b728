# The coordinator's instance role: it may publish metrics to CloudWatch, in
# the Stressgrid namespace, and nothing else.

data "aws_iam_policy_document" "coordinator_assume_role" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "coordinator_cloudwatch" {
  statement {
    sid       = "PutStressgridMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource-level permissions

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["Stressgrid"]
    }
  }
}

resource "aws_iam_role" "coordinator" {
  # IAM names are account-wide: include the region so fleets in several
  # regions do not collide.
  name               = "${var.name_prefix}-coordinator-${var.region}"
  assume_role_policy = data.aws_iam_policy_document.coordinator_assume_role.json
}

resource "aws_iam_role_policy" "coordinator_cloudwatch" {
  name   = "cloudwatch-put-metric-data"
  role   = aws_iam_role.coordinator.id
  policy = data.aws_iam_policy_document.coordinator_cloudwatch.json
}

resource "aws_iam_instance_profile" "coordinator" {
  name = "${var.name_prefix}-coordinator-${var.region}"
  role = aws_iam_role.coordinator.name
}
