################################################################################
# Optional load generators: distributed Locust (master + workers) in the same subnet
#
# loadgen_count instances: the first runs the Locust master (web UI on :8089, reachable
# from allowed_cidrs) and one worker per core; the rest run workers only. They get no
# instance profile: they need no AWS access.
################################################################################

locals {
  # Where Locust sends requests: the ALB when there is one (that is what scale-out serves),
  # else the first instance serving each framework, by private address (same subnet).
  first_host = {
    for fw in local.frameworks : fw => [for pair in values(local.host_frameworks) : pair.host if pair.framework == fw][0]
  }
  loadgen_targets = {
    for fw in local.frameworks : fw => (
      var.enable_alb
      ? "http://${aws_lb.this[0].dns_name}:${local.framework_ports[fw]}"
      : "http://${aws_instance.service[local.first_host[fw]].private_ip}:${local.framework_ports[fw]}"
    )
  }

  loadgen_template_vars = {
    repo_url   = var.repo_url
    repo_ref   = var.repo_ref
    uv_version = var.uv_version
    web_port   = local.locust_web_port
    targets    = local.loadgen_targets
  }
  # Ubuntu plus one Python environment for Locust.
  loadgen_root_volume_size = 30

  loadgen_public_ips = concat(aws_instance.loadgen_master[*].public_ip, aws_instance.loadgen_worker[*].public_ip)
}

resource "aws_instance" "loadgen_master" {
  count = var.loadgen_count > 0 ? 1 : 0

  ami                         = local.loadgen_ami_id
  instance_type               = var.loadgen_instance_type
  subnet_id                   = local.subnet_id
  vpc_security_group_ids      = [aws_security_group.instances.id]
  associate_public_ip_address = true
  key_name                    = var.key_name
  monitoring                  = var.detailed_monitoring

  user_data = templatefile("${path.module}/templates/loadgen_user_data.sh.tftpl", merge(local.loadgen_template_vars, {
    role        = "master"
    master_host = "127.0.0.1"
  }))
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = local.loadgen_root_volume_size
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-loadgen-0" })
  }

  tags = merge(local.tags, { Name = "${var.name}-loadgen-0", Role = "loadgen-master" })
}

resource "aws_instance" "loadgen_worker" {
  count = max(var.loadgen_count - 1, 0)

  ami                         = local.loadgen_ami_id
  instance_type               = var.loadgen_instance_type
  subnet_id                   = local.subnet_id
  vpc_security_group_ids      = [aws_security_group.instances.id]
  associate_public_ip_address = true
  key_name                    = var.key_name
  monitoring                  = var.detailed_monitoring

  user_data = templatefile("${path.module}/templates/loadgen_user_data.sh.tftpl", merge(local.loadgen_template_vars, {
    role        = "worker"
    master_host = aws_instance.loadgen_master[0].private_ip
  }))
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = local.loadgen_root_volume_size
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-loadgen-${count.index + 1}" })
  }

  tags = merge(local.tags, { Name = "${var.name}-loadgen-${count.index + 1}", Role = "loadgen-worker" })
}
