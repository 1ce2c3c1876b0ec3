# Inputs shared by both sources. Values for a seller's AMI go in a *.pkrvars.hcl file
# (see example.pkrvars.hcl) or on the command line with -var.

variable "profile" {
  type        = string
  default     = "marketplace"
  description = "marketplace: the admin user keeps sudo (AWS Marketplace policy); sealed: nobody keeps sudo."
  validation {
    condition     = contains(["marketplace", "sealed"], var.profile)
    error_message = "The profile must be \"marketplace\" or \"sealed\"."
  }
}

variable "sealed_confirmed" {
  type        = bool
  default     = false
  description = "Must be true with profile = \"sealed\", which breaks AWS Marketplace policy (no sudo for anyone)."
}

variable "admin_user" {
  type        = string
  default     = ""
  description = "The named admin user, also the user Packer logs in as; empty: the base OS's default user."
}

variable "ansible_extra_args" {
  type        = list(string)
  default     = []
  description = "Extra ansible-playbook arguments for the hardening run, e.g. [\"--skip-tags\", \"root_07\"]."
}

variable "skip_controls" {
  type        = list(string)
  default     = []
  description = "Control ids (e.g. SUDO-05) the verification leaves out; switch each off in the hardening run too, through its variable (ami-harden controls)."
}

variable "report_dir" {
  type        = string
  default     = ""
  description = "A directory on the build host where the verification writes its JSON reports (verify-PROFILE.json); empty writes none."
}

variable "playbook_dir" {
  type        = string
  default     = ""
  description = "Directory holding harden.yml and seal.yml; empty: ../playbooks next to this template."
}

variable "check_command" {
  type        = string
  default     = "ami-harden"
  description = "The ami-harden command the build host runs: the verification, and apply and check for amazon-chroot."
}

# amazon-ebs

variable "base_os" {
  type        = string
  default     = "debian-12"
  description = "Base AMI preset: debian-12, ubuntu-22.04, ubuntu-24.04 or al2023."
  validation {
    condition     = contains(["debian-12", "ubuntu-22.04", "ubuntu-24.04", "al2023"], var.base_os)
    error_message = "The base_os must be one of debian-12, ubuntu-22.04, ubuntu-24.04, al2023."
  }
}

variable "architecture" {
  type        = string
  default     = "x86_64"
  description = "CPU architecture of the base AMI: x86_64 or arm64."
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "The architecture must be \"x86_64\" or \"arm64\"."
  }
}

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region the build instance runs in and the AMI is registered in."
}

variable "instance_type" {
  type        = string
  default     = "t3.small"
  description = "Build instance type; pick an arm64 type (e.g. t4g.small) for architecture = arm64."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet for the build instance; empty: the default VPC. It needs a route for SSH from the build host."
}

variable "ami_name_prefix" {
  type        = string
  default     = "ami-hardened"
  description = "The AMI name is PREFIX-BASE_OS-PROFILE-TIMESTAMP."
}

variable "ami_users" {
  type        = list(string)
  default     = []
  description = "AWS account ids allowed to launch the AMI (private until shared)."
}

variable "ami_org_arns" {
  type        = list(string)
  default     = []
  description = "AWS Organizations ARNs allowed to launch the AMI."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Extra tags for the AMI and its snapshot."
}

# qemu (local twin of the AMI build)

variable "base_image" {
  type        = string
  default     = ""
  description = "Base disk image (qcow2 or raw) the local build starts from; it is never modified."
}

variable "output_directory" {
  type        = string
  default     = "output/packer"
  description = "Directory Packer creates for the hardened qcow2; it must not exist yet."
}

variable "image_name" {
  type        = string
  default     = "hardened.qcow2"
  description = "File name of the hardened qcow2 in output_directory."
}

variable "ssh_private_key_file" {
  type        = string
  default     = ""
  description = "Private key the local build logs in with; its public half is in the seed's meta-data."
}

variable "seed_files" {
  type        = list(string)
  default     = []
  description = "NoCloud seed files (meta-data, user-data) for the local build's cidata CD."
}

variable "accelerator" {
  type        = string
  default     = "tcg"
  description = "QEMU accelerator: tcg (works everywhere) or kvm."
}
