# Plugin requirements for Packer >= 1.7 (run `packer init packer/` once).
# Packer 1.6.x has these builders built in and rejects this block: the local build
# (`ami-harden build local`) leaves this file out when it finds Packer 1.6.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.2"
    }
    ansible = {
      source  = "github.com/hashicorp/ansible"
      version = ">= 1.1.0"
    }
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.0.0"
    }
  }
}
