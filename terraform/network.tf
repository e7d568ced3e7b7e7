################################################################################
# VPC and subnets
#
# The default VPC (or a given vpc_id) rather than a VPC of our own: this is a short-lived
# benchmark stack whose instances must be reachable from the user's address anyway, and the
# default VPC already has public subnets in every zone and an internet gateway. A private
# VPC would add a NAT gateway (~$0.045/h plus data) for image pulls and S3 traffic, and more
# to tear down, for no benefit here: exposure is controlled by the security groups below.
################################################################################

data "aws_vpc" "this" {
  id      = var.vpc_id
  default = var.vpc_id == null ? true : null
}

data "aws_subnets" "this" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.this.id]
  }

  # A default VPC may also hold subnets someone added; keep to the public default ones.
  dynamic "filter" {
    for_each = var.vpc_id == null ? [true] : []

    content {
      name   = "default-for-az"
      values = ["true"]
    }
  }
}

data "aws_subnet" "this" {
  for_each = toset(data.aws_subnets.this.ids)

  id = each.value
}

# GPU types are not offered in every zone (e.g. us-east-1e has no g4dn): place the
# instances where the types exist.
data "aws_ec2_instance_type_offerings" "this" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = local.instance_types
  }
}

locals {
  instance_types = distinct(concat([var.instance_type], var.loadgen_count > 0 ? [var.loadgen_instance_type] : []))

  offered_azs = {
    for type in local.instance_types : type => toset([
      for i, az in data.aws_ec2_instance_type_offerings.this.locations : az
      if data.aws_ec2_instance_type_offerings.this.instance_types[i] == type
    ])
  }
  usable_azs = var.availability_zone != null ? toset([var.availability_zone]) : setintersection(values(local.offered_azs)...)

  # Every instance (GPU and load generators) goes into one subnet: one AZ means no
  # cross-AZ latency in the measurements and no inter-AZ data charges. Sorting by zone name
  # then id makes the choice stable between plans.
  instance_subnet_candidates = sort([
    for s in data.aws_subnet.this : "${s.availability_zone}/${s.id}" if contains(local.usable_azs, s.availability_zone)
  ])
  subnet_id = length(local.instance_subnet_candidates) > 0 ? split("/", local.instance_subnet_candidates[0])[1] : null

  # An ALB takes at most one subnet per zone and needs two zones.
  subnets_by_az  = { for s in data.aws_subnet.this : s.availability_zone => s.id... }
  alb_subnet_ids = [for az in sort(keys(local.subnets_by_az)) : sort(local.subnets_by_az[az])[0]]
}

################################################################################
# Security group: inference hosts and load generators
################################################################################

locals {
  # Ports reachable from allowed_cidrs: the chosen services, monitoring, and SSH / Locust
  # only when they exist. A service port is its nginx proxy's (docker-compose.yml publishes
  # nothing else there): gunicorn itself is only reachable on the compose network.
  public_ports = merge(
    local.service_ports,
    { prometheus = local.prometheus_port, grafana = local.grafana_port },
    var.key_name != null ? { ssh = 22 } : {},
    var.loadgen_count > 0 ? { locust = local.locust_web_port } : {},
  )

  public_ingress = {
    for pair in setproduct(keys(local.public_ports), var.allowed_cidrs) :
    "${pair[0]} ${pair[1]}" => { service = pair[0], port = local.public_ports[pair[0]], cidr = pair[1] }
  }
}

resource "aws_security_group" "instances" {
  name        = "${var.name}-instances"
  description = "versus inference hosts and load generators"
  vpc_id      = data.aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-instances" })
}

resource "aws_vpc_security_group_ingress_rule" "instances_public" {
  for_each = local.public_ingress

  security_group_id = aws_security_group.instances.id
  description       = "${each.value.service} from an allowed CIDR"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = strcontains(each.value.cidr, ":") ? null : each.value.cidr
  cidr_ipv6         = strcontains(each.value.cidr, ":") ? each.value.cidr : null

  tags = local.tags
}

# Load generators reach the services, Locust workers reach their master (:5557), by private
# address inside the group.
resource "aws_vpc_security_group_ingress_rule" "instances_intra" {
  security_group_id            = aws_security_group.instances.id
  description                  = "All traffic between members of this group"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.instances.id

  tags = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "instances_from_alb" {
  for_each = var.enable_alb ? toset(local.frameworks) : toset([])

  security_group_id            = aws_security_group.instances.id
  description                  = "${each.value} from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.framework_ports[each.value]
  to_port                      = local.framework_ports[each.value]
  referenced_security_group_id = aws_security_group.alb[0].id

  tags = local.tags
}

# Outbound is open: the hosts pull images (Docker Hub, NVIDIA, Ubuntu), the repository and
# the models (S3) at boot.
resource "aws_vpc_security_group_egress_rule" "instances_ipv4" {
  security_group_id = aws_security_group.instances.id
  description       = "All outbound IPv4"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "instances_ipv6" {
  security_group_id = aws_security_group.instances.id
  description       = "All outbound IPv6"
  ip_protocol       = "-1"
  cidr_ipv6         = "::/0"

  tags = local.tags
}
