################################################################################
# GPU inference instances
################################################################################

resource "aws_instance" "service" {
  for_each = local.hosts

  ami                         = local.ami_id
  instance_type               = var.instance_type
  subnet_id                   = local.subnet_id
  vpc_security_group_ids      = [aws_security_group.instances.id]
  associate_public_ip_address = true
  iam_instance_profile        = aws_iam_instance_profile.instance.name
  key_name                    = var.key_name
  monitoring                  = var.detailed_monitoring

  user_data = templatefile("${path.module}/templates/service_user_data.sh.tftpl", {
    repo_url              = var.repo_url
    repo_ref              = var.repo_ref
    region                = var.region
    bucket                = aws_s3_bucket.artifacts.bucket
    prefix                = var.artifact_prefix
    artifact_wait_minutes = var.artifact_wait_minutes
    dataset               = var.dataset
    model_version         = var.model_version
    frameworks            = each.value.frameworks
    service_environment   = var.service_environment
    compose_files         = var.compose_files
    # Compose service names: each framework's gunicorn, its nginx proxy (the only thing
    # listening on the framework's port, deploy/nginx/), and the monitoring pair.
    compose_services = concat(
      each.value.frameworks,
      [for fw in each.value.frameworks : "${fw}-proxy"],
      ["prometheus", "grafana"],
    )
  })
  # Bootstrap runs once: a changed script (repo_ref, frameworks, ...) needs a new instance.
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required" # IMDSv2 only
    # 1 hop: the host (aws s3 sync) gets the role's credentials, containers behind the
    # docker bridge do not; the services never need AWS access.
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-${each.key}" })
  }

  tags = merge(local.tags, {
    Name       = "${var.name}-${each.key}"
    Role       = "inference"
    Frameworks = join(",", each.value.frameworks)
  })

  lifecycle {
    precondition {
      condition     = local.subnet_id != null
      error_message = "No subnet of VPC ${data.aws_vpc.this.id} lies in a zone offering ${join(" and ", local.instance_types)}${var.availability_zone != null ? " (availability_zone = ${var.availability_zone})" : ""}. Choose another region, zone or instance type."
    }
  }

  # The instance must be able to read the models the moment it boots.
  depends_on = [aws_iam_role_policy.artifacts_read]
}
