locals {
  emulated = var.aws_endpoint_url != ""

  tags = merge(
    {
      Project   = "versus"
      Stack     = var.name
      ManagedBy = "terraform"
    },
    var.tags,
  )

  prometheus_port = 9090
  grafana_port    = 3000
  locust_web_port = 8089

  frameworks    = sort(var.frameworks == null ? keys(local.framework_ports) : tolist(var.frameworks))
  service_ports = { for fw in local.frameworks : fw => local.framework_ports[fw] }

  # One entry per GPU instance: which frameworks it serves. Shared (default): every instance
  # runs the whole stack, the cheapest way to compare. Dedicated: no two frameworks share a
  # GPU, so one framework's load cannot slow another down in a concurrent run.
  hosts = var.dedicated_instances ? {
    for pair in setproduct(local.frameworks, range(var.instances_per_framework)) :
    "${pair[0]}-${pair[1]}" => { frameworks = [pair[0]] }
    } : {
    for i in range(var.instances_per_framework) :
    "stack-${i}" => { frameworks = local.frameworks }
  }

  # (host, framework) pairs: ALB target attachments and per-instance service URLs.
  host_frameworks = {
    for pair in flatten([
      for host, spec in local.hosts : [for fw in spec.frameworks : { host = host, framework = fw }]
    ]) : "${pair.host}/${pair.framework}" => pair
  }

  ami_id         = var.ami_id != null ? var.ami_id : data.aws_ami.deep_learning[0].id
  loadgen_ami_id = var.loadgen_count == 0 ? null : (var.loadgen_ami_id != null ? var.loadgen_ami_id : data.aws_ami.ubuntu[0].id)
}

################################################################################
# AMIs
################################################################################

# Only looked up when no ami_id is given, so an override needs no DescribeImages access
# (and works in emulators and regions where the Deep Learning AMI is not published).
data "aws_ami" "deep_learning" {
  count = var.ami_id == null ? 1 : 0

  most_recent = true
  owners      = var.ami_owners

  filter {
    name   = "name"
    values = [var.ami_name_filter]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }

  filter {
    name   = "state"
    values = ["available"]
  }
}

data "aws_ami" "ubuntu" {
  count = var.loadgen_count > 0 && var.loadgen_ami_id == null ? 1 : 0

  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name = "name"
    # hvm-ssd and hvm-ssd-gp3: Canonical has published both for 22.04.
    values = ["ubuntu/images/hvm-ssd*/ubuntu-jammy-22.04-amd64-server-*"]
  }

  filter {
    name   = "state"
    values = ["available"]
  }
}
