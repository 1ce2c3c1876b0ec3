# Example values for a seller's AMI build:
#   packer build -only=amazon-ebs.hardened -var-file=packer/example.pkrvars.hcl packer/
base_os         = "debian-12"
architecture    = "x86_64"
region          = "us-east-1"
instance_type   = "t3.small"
profile         = "marketplace"
admin_user      = "admin"
ami_name_prefix = "example-product"
ami_users       = ["123456789012"]
tags = {
  Product = "example-product"
}
