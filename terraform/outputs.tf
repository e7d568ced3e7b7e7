locals {
  # Public DNS name where the VPC has DNS hostnames, else the public IP.
  instance_address = { for host, instance in aws_instance.service : host => coalesce(instance.public_dns, instance.public_ip) }
  first_stack_host = sort(keys(local.hosts))[0]
}

output "service_urls" {
  description = "Base URL of each framework's service: the load balancer when enable_alb, else the first instance serving it."
  value = {
    for fw in local.frameworks : fw => (
      var.enable_alb
      ? "http://${aws_lb.this[0].dns_name}:${local.framework_ports[fw]}"
      : "http://${local.instance_address[local.first_host[fw]]}:${local.framework_ports[fw]}"
    )
  }
}

output "service_instance_urls" {
  description = "Every instance's URL of each framework's service (direct, bypassing any load balancer)."
  value = {
    for fw in local.frameworks : fw => [
      for pair in values(local.host_frameworks) :
      "http://${local.instance_address[pair.host]}:${local.framework_ports[fw]}" if pair.framework == fw
    ]
  }
}

output "grafana_url" {
  description = "Grafana of the first inference instance (each instance runs its own Prometheus and Grafana)."
  value       = "http://${local.instance_address[local.first_stack_host]}:${local.grafana_port}"
}

output "prometheus_url" {
  description = "Prometheus of the first inference instance."
  value       = "http://${local.instance_address[local.first_stack_host]}:${local.prometheus_port}"
}

output "monitoring_urls" {
  description = "Grafana and Prometheus URLs of every inference instance."
  value = {
    for host, address in local.instance_address : host => {
      grafana    = "http://${address}:${local.grafana_port}"
      prometheus = "http://${address}:${local.prometheus_port}"
    }
  }
}

output "alb_dns_name" {
  description = "DNS name of the load balancer (null without enable_alb)."
  value       = try(aws_lb.this[0].dns_name, null)
}

output "locust_url" {
  description = "Locust web UI on the load-generator master (null without load generators)."
  value       = try("http://${coalesce(aws_instance.loadgen_master[0].public_dns, aws_instance.loadgen_master[0].public_ip)}:${local.locust_web_port}", null)
}

output "artifact_bucket" {
  description = "Name of the model artifact bucket."
  value       = aws_s3_bucket.artifacts.bucket
}

output "artifact_uri" {
  description = "S3 URI of the model repository the instances pull from."
  value       = "s3://${aws_s3_bucket.artifacts.bucket}/${var.artifact_prefix}"
}

output "artifact_push_command" {
  description = "Command that uploads the local model repository to where the instances wait for it."
  value       = "python -m shared.artifacts push models/ s3://${aws_s3_bucket.artifacts.bucket}/${var.artifact_prefix}"
}

output "instance_ids" {
  description = "Inference instance ids by host key (stack-N, or <framework>-N with dedicated_instances)."
  value       = { for host, instance in aws_instance.service : host => instance.id }
}

output "loadgen_instance_ids" {
  description = "Load-generator instance ids, master first."
  value       = concat(aws_instance.loadgen_master[*].id, aws_instance.loadgen_worker[*].id)
}

output "ami_id" {
  description = "AMI of the inference instances."
  value       = local.ami_id
}

output "subnet_id" {
  description = "Subnet (and so availability zone) of every instance."
  value       = local.subnet_id
}

output "security_group_id" {
  description = "Security group of the inference instances and load generators."
  value       = aws_security_group.instances.id
}

output "instance_role_arn" {
  description = "IAM role of the inference instances (read-only on the artifact prefix)."
  value       = aws_iam_role.instance.arn
}
