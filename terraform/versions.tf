terraform {
  # 1.9 is the first release whose variable validation may refer to other variables
  # (allowed_cidrs is checked against allow_public_access).
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Pinned to the patch series that is tested here (tests/terraform run against 5.100.0,
      # the last 5.x release); 6.x renamed and removed arguments used below.
      version = "~> 5.100.0"
    }
  }
}
