################################################################################
# General
################################################################################

variable "name" {
  description = "Name prefix for every resource (and the Name tag). Use a different one per stack in the same account."
  type        = string
  default     = "versus"

  validation {
    # Target group names are limited to 32 characters: "<name>-tensorflow" must fit.
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must be 1-20 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. us-east-1."
  }
}

variable "tags" {
  description = "Additional tags for every resource (merged over the defaults: Project, Stack, ManagedBy)."
  type        = map(string)
  default     = {}
}

variable "aws_endpoint_url" {
  description = "TESTING ONLY: base URL of an AWS emulator (e.g. moto's server, http://127.0.0.1:5000). Empty means real AWS."
  type        = string
  default     = ""

  validation {
    condition     = var.aws_endpoint_url == "" || can(regex("^https?://[^/]+/?$", var.aws_endpoint_url))
    error_message = "aws_endpoint_url must be empty (real AWS) or a base URL such as http://127.0.0.1:5000."
  }
}

################################################################################
# Access
################################################################################

variable "allowed_cidrs" {
  description = "CIDR blocks (IPv4 or IPv6) allowed to reach the services, Prometheus, Grafana (and SSH/Locust when enabled), e.g. [\"203.0.113.7/32\"]. No default: choose who can reach an unauthenticated inference API."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidrs) > 0
    error_message = "allowed_cidrs must hold at least one CIDR block, e.g. [\"203.0.113.7/32\"] (your address: curl -s https://checkip.amazonaws.com)."
  }

  validation {
    condition     = alltrue([for cidr in var.allowed_cidrs : can(cidrhost(cidr, 0))])
    error_message = "Every entry of allowed_cidrs must be a CIDR block such as 203.0.113.7/32 or 2001:db8::/64."
  }

  validation {
    # The services have no authentication: opening them to the whole internet must be a
    # deliberate, visible choice, not a copy-pasted default.
    condition     = var.allow_public_access || alltrue([for cidr in var.allowed_cidrs : !endswith(cidr, "/0")])
    error_message = "allowed_cidrs opens the stack to the whole internet (0.0.0.0/0 or ::/0); the services have no authentication. Use your own address (x.x.x.x/32) or set allow_public_access = true if you really mean it."
  }
}

variable "allow_public_access" {
  description = "Allow allowed_cidrs to contain 0.0.0.0/0 or ::/0. The services, Prometheus and Locust have no authentication."
  type        = bool
  default     = false
}

variable "key_name" {
  description = "Name of an existing EC2 key pair for SSH. Null (default): no key and port 22 stays closed."
  type        = string
  default     = null
}

################################################################################
# Network
################################################################################

variable "vpc_id" {
  description = "VPC to deploy into. Null (default): the region's default VPC and its default subnets. A custom VPC needs public subnets (route to an internet gateway)."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must be null or a VPC id such as vpc-0123456789abcdef0."
  }
}

variable "availability_zone" {
  description = "Availability zone for the instances. Null (default): the first zone (by name) that offers instance_type (and loadgen_instance_type). Pin it to keep instances from moving if AWS changes its offerings."
  type        = string
  default     = null

  validation {
    condition     = var.availability_zone == null || can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$", var.availability_zone))
    error_message = "availability_zone must be null or a zone name such as us-east-1a."
  }
}

################################################################################
# Model artifacts (S3)
################################################################################

variable "artifact_bucket_name" {
  description = "Name of the S3 bucket created for model artifacts. Null (default): a unique name starting with \"<name>-artifacts-\"."
  type        = string
  default     = null

  validation {
    condition     = var.artifact_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifact_bucket_name))
    error_message = "artifact_bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens."
  }
}

variable "artifact_prefix" {
  description = "Key prefix of the model repository in the bucket (models/<dataset>/<framework>/<version>/ below it). The instances may read only this prefix."
  type        = string
  default     = "models"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.artifact_prefix))
    error_message = "artifact_prefix must be a key prefix without leading or trailing slash, e.g. models or team/versus/models."
  }
}

variable "bucket_force_destroy" {
  description = "Let terraform destroy delete the bucket even when it holds model artifacts (every version). False (default) protects trained models: empty the bucket first or set this to true."
  type        = bool
  default     = false
}

variable "noncurrent_version_retention_days" {
  description = "Days a replaced or deleted artifact version is kept before S3 expires it (versioning protects against overwrites; this bounds its storage cost). Null: keep every version forever (no lifecycle rule)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days == null || try(var.noncurrent_version_retention_days >= 1 && floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days, false)
    error_message = "noncurrent_version_retention_days must be null or a whole number >= 1."
  }
}

variable "artifact_wait_minutes" {
  description = "How long a new instance waits for models to appear under the artifact prefix (they are pushed after apply) before it gives up."
  type        = number
  default     = 120

  validation {
    condition     = var.artifact_wait_minutes >= 1 && var.artifact_wait_minutes <= 1440
    error_message = "artifact_wait_minutes must be between 1 and 1440."
  }
}

################################################################################
# Inference instances
################################################################################

variable "instance_type" {
  description = "GPU instance type for the inference services (NVIDIA Turing or newer, as CUDA 13 requires: g4dn, g5, g6, g6e, p4d, p5)."
  type        = string
  default     = "g4dn.xlarge"

  validation {
    # A CPU type would boot, pay, and then fail every GPU container; p3 (V100, Volta) cannot
    # run the CUDA 13 builds of torch, jax and onnxruntime: refuse both up front.
    condition     = can(regex("^(g4dn|g5|g6|g6e|p4d|p5)\\.(metal|[0-9]*xlarge)$", var.instance_type))
    error_message = "instance_type must be an NVIDIA GPU type of the g4dn, g5, g6, g6e, p4d or p5 family (e.g. g4dn.xlarge, g5.xlarge); p3 (Volta) cannot run CUDA 13."
  }
}

# The runtime table (shared/runtimes.py): each runtime's service and its port, as in
# docker-compose.yml. Terraform cannot import Python, so tests/terraform compares this map with
# the table; it lives here because the validation below reads it.
locals {
  framework_ports = {
    torch      = 8001
    tensorflow = 8002
    jax        = 8003
    onnx       = 8004
    openvino   = 8005
  }
}

variable "frameworks" {
  description = "Runtimes whose inference service is deployed: any of local.framework_ports above. Null (default): every one."
  type        = set(string)
  default     = null

  validation {
    condition     = var.frameworks == null ? true : length(var.frameworks) > 0 && length(setsubtract(var.frameworks, keys(local.framework_ports))) == 0
    error_message = "frameworks must be a non-empty subset of the runtimes: ${join(", ", keys(local.framework_ports))}."
  }
}

variable "instances_per_framework" {
  description = "Number of GPU instances serving each framework (more than 1 only makes sense with enable_alb)."
  type        = number
  default     = 1

  validation {
    # The upper bound is a guard against a typo that would launch a fleet of GPUs.
    condition     = var.instances_per_framework >= 1 && var.instances_per_framework <= 10 && floor(var.instances_per_framework) == var.instances_per_framework
    error_message = "instances_per_framework must be a whole number from 1 to 10."
  }
}

variable "dedicated_instances" {
  description = "False (default): each instance runs every chosen framework (instances_per_framework instances in all). True: each framework gets instances of its own (length(frameworks) * instances_per_framework instances), so frameworks never share a GPU during a benchmark."
  type        = bool
  default     = false
}

variable "ami_id" {
  description = "AMI for the GPU instances. Null (default): the newest \"Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)\". An override must be Ubuntu with the NVIDIA driver installed."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must be null or an AMI id such as ami-0123456789abcdef0."
  }
}

variable "ami_name_filter" {
  description = "Name pattern of the Deep Learning AMI looked up when ami_id is null."
  type        = string
  default     = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
}

variable "ami_owners" {
  description = "Owners searched for the Deep Learning AMI when ami_id is null."
  type        = list(string)
  default     = ["amazon"]
}

variable "root_volume_size" {
  description = "Root volume size in GiB (gp3, encrypted). Must hold the AMI (75 GiB for recent Deep Learning Base AMIs) plus the service images."
  type        = number
  default     = 150

  validation {
    condition     = var.root_volume_size >= 75 && var.root_volume_size <= 2000
    error_message = "root_volume_size must be between 75 and 2000 GiB (the Deep Learning AMI snapshot alone is 75 GiB)."
  }
}

variable "detailed_monitoring" {
  description = "Enable 1-minute CloudWatch detailed monitoring on every instance (a few dollars per instance per month)."
  type        = bool
  default     = true
}

variable "enable_alb" {
  description = "Put an internet-facing Application Load Balancer in front of the services: one target group per framework (health check /readyz) and one listener per framework port."
  type        = bool
  default     = false
}

################################################################################
# Software on the instances
################################################################################

variable "repo_url" {
  description = "Git URL the instances clone the versus repository from (https; must be reachable without credentials, or embed a read-only token)."
  type        = string

  validation {
    # No quotes or blanks: the URL is pasted into the boot script.
    condition     = can(regex("^(https://|git@|ssh://)[^'\"\\s]+$", var.repo_url))
    error_message = "repo_url must be a git URL starting with https://, ssh:// or git@, without quotes or spaces."
  }
}

variable "repo_ref" {
  description = "Branch, tag or commit of repo_url to deploy. Changing it replaces the instances."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+$", var.repo_ref))
    error_message = "repo_ref must be a branch, tag or commit name (letters, digits, . _ / -)."
  }
}

variable "dataset" {
  description = "Dataset whose models the services serve: models/<dataset>/<framework>/<model_version>/ under artifact_prefix (VERSUS_DATASET of docker-compose.yml)."
  type        = string
  default     = "dr"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]*$", var.dataset))
    error_message = "dataset must be a dataset name such as dr or bloodmnist."
  }
}

variable "model_version" {
  description = "Model version the services serve (VERSUS_MODEL_VERSION of docker-compose.yml). The instances wait until every deployed framework's manifest.json of this version is in S3."
  type        = string
  default     = "1"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+$", var.model_version))
    error_message = "model_version must be a version directory name such as 1 or 2024-06-01."
  }
}

variable "service_environment" {
  description = "Extra environment for docker compose on the inference hosts, e.g. { VERSUS_MAX_BATCH_SIZE = \"32\" } (the serving knobs of services/settings.py). Stored in user data and state: no secrets."
  type        = map(string)
  default     = {}

  validation {
    # Written unquoted into an environment file by the boot script.
    condition = alltrue([
      for k, v in var.service_environment : can(regex("^[A-Z][A-Z0-9_]*$", k)) && can(regex("^[A-Za-z0-9._:/@,+=-]*$", v))
    ])
    error_message = "service_environment keys must be UPPER_CASE names and values may hold only letters, digits and . _ : / @ , + = -."
  }
}

variable "compose_files" {
  description = "Compose files (relative to the repository root) passed to docker compose with -f, e.g. add a GPU override file."
  type        = list(string)
  default     = ["docker-compose.yml"]

  validation {
    condition     = length(var.compose_files) > 0 && alltrue([for f in var.compose_files : can(regex("^[A-Za-z0-9._/-]+$", f))])
    error_message = "compose_files must name at least one compose file, as plain relative paths."
  }
}

################################################################################
# Load generators (Locust)
################################################################################

variable "loadgen_count" {
  description = "Number of load-generator instances (0 = none). The first runs the Locust master (web UI on :8089) and workers, the others run workers."
  type        = number
  default     = 0

  validation {
    condition     = var.loadgen_count >= 0 && var.loadgen_count <= 10 && floor(var.loadgen_count) == var.loadgen_count
    error_message = "loadgen_count must be a whole number from 0 to 10."
  }
}

variable "loadgen_instance_type" {
  description = "Instance type of the load generators (CPU: Locust spends its time building requests)."
  type        = string
  default     = "c6i.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.loadgen_instance_type))
    error_message = "loadgen_instance_type must be an EC2 instance type such as c6i.xlarge."
  }
}

variable "loadgen_ami_id" {
  description = "AMI for the load generators. Null (default): the newest Canonical Ubuntu 22.04 LTS amd64 server image."
  type        = string
  default     = null

  validation {
    condition     = var.loadgen_ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.loadgen_ami_id))
    error_message = "loadgen_ami_id must be null or an AMI id such as ami-0123456789abcdef0."
  }
}

variable "uv_version" {
  description = "uv release installed on the load generators to create the Locust environment from uv.lock (must understand the lock file's format)."
  type        = string
  default     = "0.13.9"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.uv_version))
    error_message = "uv_version must be a release number such as 0.13.9."
  }
}
