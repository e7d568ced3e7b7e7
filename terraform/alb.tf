################################################################################
# Optional Application Load Balancer: one listener and target group per framework
#
# Plain HTTP on the service ports, like the instances themselves: TLS needs a domain and an
# ACM certificate this stack does not assume. Access is limited to allowed_cidrs (and the
# load generators) by the ALB's own security group.
################################################################################

resource "aws_security_group" "alb" {
  count = var.enable_alb ? 1 : 0

  name        = "${var.name}-alb"
  description = "versus load balancer"
  vpc_id      = data.aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-alb" })
}

locals {
  alb_ingress = var.enable_alb ? {
    for pair in setproduct(local.frameworks, var.allowed_cidrs) :
    "${pair[0]} ${pair[1]}" => { framework = pair[0], port = local.framework_ports[pair[0]], cidr = pair[1] }
  } : {}
  service_port_range = [min(values(local.service_ports)...), max(values(local.service_ports)...)]
}

resource "aws_vpc_security_group_ingress_rule" "alb_public" {
  for_each = local.alb_ingress

  security_group_id = aws_security_group.alb[0].id
  description       = "${each.value.framework} from an allowed CIDR"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = strcontains(each.value.cidr, ":") ? null : each.value.cidr
  cidr_ipv6         = strcontains(each.value.cidr, ":") ? each.value.cidr : null

  tags = local.tags
}

# The load generators reach the internet-facing ALB through their public addresses, which a
# security-group reference would not match.
resource "aws_vpc_security_group_ingress_rule" "alb_loadgen" {
  count = var.enable_alb ? var.loadgen_count : 0

  security_group_id = aws_security_group.alb[0].id
  description       = "Service ports from load generator ${count.index}"
  ip_protocol       = "tcp"
  from_port         = local.service_port_range[0]
  to_port           = local.service_port_range[1]
  cidr_ipv4         = "${local.loadgen_public_ips[count.index]}/32"

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "alb_to_instances" {
  for_each = var.enable_alb ? toset(local.frameworks) : toset([])

  security_group_id            = aws_security_group.alb[0].id
  description                  = "${each.value} to the inference hosts"
  ip_protocol                  = "tcp"
  from_port                    = local.framework_ports[each.value]
  to_port                      = local.framework_ports[each.value]
  referenced_security_group_id = aws_security_group.instances.id

  tags = local.tags
}

resource "aws_lb" "this" {
  count = var.enable_alb ? 1 : 0

  name               = var.name
  load_balancer_type = "application"
  internal           = false
  security_groups    = [aws_security_group.alb[0].id]
  subnets            = local.alb_subnet_ids

  drop_invalid_header_fields = true
  # A benchmark stack is meant to be destroyed; protection would make `destroy` fail.
  enable_deletion_protection = false
  # Large camera images over slow links: keep the default 60 s idle timeout explicit.
  idle_timeout = 60

  tags = merge(local.tags, { Name = var.name })

  lifecycle {
    precondition {
      condition     = length(local.alb_subnet_ids) >= 2
      error_message = "An ALB needs subnets in at least two availability zones; VPC ${data.aws_vpc.this.id} has ${length(local.alb_subnet_ids)}."
    }
  }
}

resource "aws_lb_target_group" "service" {
  for_each = var.enable_alb ? toset(local.frameworks) : toset([])

  name        = "${var.name}-${each.value}"
  port        = local.framework_ports[each.value]
  protocol    = "HTTP"
  vpc_id      = data.aws_vpc.this.id
  target_type = "instance"
  # In-flight predictions finish well within this; the default 300 s slows every replace.
  deregistration_delay = 30

  health_check {
    enabled             = true
    path                = "/readyz" # ready = model loaded and warmed up, not merely alive
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = merge(local.tags, { Name = "${var.name}-${each.value}" })
}

resource "aws_lb_listener" "service" {
  for_each = var.enable_alb ? toset(local.frameworks) : toset([])

  load_balancer_arn = aws_lb.this[0].arn
  port              = local.framework_ports[each.value]
  protocol          = "HTTP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.service[each.value].arn
  }

  tags = local.tags
}

resource "aws_lb_target_group_attachment" "service" {
  for_each = var.enable_alb ? local.host_frameworks : {}

  target_group_arn = aws_lb_target_group.service[each.value.framework].arn
  target_id        = aws_instance.service[each.value.host].id
  port             = local.framework_ports[each.value.framework]
}
