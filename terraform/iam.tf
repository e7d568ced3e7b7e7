################################################################################
# Instance role: read-only access to the model prefix, nothing else
################################################################################

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name}-instance"
  description        = "versus inference hosts: read model artifacts from s3://${aws_s3_bucket.artifacts.bucket}/${var.artifact_prefix}/"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json

  tags = local.tags
}

data "aws_iam_policy_document" "artifacts_read" {
  statement {
    sid       = "ReadModelArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${var.artifact_prefix}/*"]
  }

  # Listing is needed by `aws s3 sync`; the condition keeps the rest of the bucket unlisted.
  statement {
    sid       = "ListModelArtifacts"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.artifact_prefix, "${var.artifact_prefix}/*"]
    }
  }
}

resource "aws_iam_role_policy" "artifacts_read" {
  name   = "read-model-artifacts"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.artifacts_read.json
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-instance"
  role = aws_iam_role.instance.name

  tags = local.tags
}
