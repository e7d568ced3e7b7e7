provider "aws" {
  region = var.region

  # Everything below is inert against real AWS (aws_endpoint_url = ""). When an emulator
  # endpoint is given (the tests use moto's server mode), every service this stack calls is
  # pointed at it, fake credentials are used so real ones can never leak to it, and the
  # account/credential look-ups that an emulator cannot answer are skipped.
  access_key                  = local.emulated ? "testing" : null
  secret_key                  = local.emulated ? "testing" : null
  skip_credentials_validation = local.emulated
  skip_requesting_account_id  = local.emulated
  skip_metadata_api_check     = local.emulated
  s3_use_path_style           = local.emulated
  # An emulator that lacks an API answers at once; don't spend minutes retrying it.
  max_retries = local.emulated ? 1 : null

  dynamic "endpoints" {
    for_each = local.emulated ? [var.aws_endpoint_url] : []

    content {
      ec2   = endpoints.value
      elbv2 = endpoints.value
      iam   = endpoints.value
      s3    = endpoints.value
      sts   = endpoints.value
    }
  }
}
