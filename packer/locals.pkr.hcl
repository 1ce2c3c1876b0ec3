# Base AMI presets and values derived from the inputs.

locals {
  # Source AMI filters per base_os: the image name pattern for each architecture, the
  # owner account, and the default user the image's cloud-init creates.
  base_os_presets = {
    "debian-12" = {
      owner = "136693071363"
      name  = { x86_64 = "debian-12-amd64-*", arm64 = "debian-12-arm64-*" }
      user  = "admin"
    }
    "ubuntu-22.04" = {
      owner = "099720109477"
      name = {
        x86_64 = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"
        arm64  = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-*"
      }
      user = "ubuntu"
    }
    "ubuntu-24.04" = {
      owner = "099720109477"
      name = {
        x86_64 = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
        arm64  = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*"
      }
      user = "ubuntu"
    }
    "al2023" = {
      owner = "137112412989"
      name  = { x86_64 = "al2023-ami-2023.*-kernel-*-x86_64", arm64 = "al2023-ami-2023.*-kernel-*-arm64" }
      user  = "ec2-user"
    }
  }
  preset = local.base_os_presets[var.base_os]

  # What both amazon sources share: the base AMI, the AMI's name and tags.
  source_ami_filters = {
    name                = local.preset.name[var.architecture]
    architecture        = var.architecture
    root-device-type    = "ebs"
    virtualization-type = "hvm"
  }
  ami_name = "${var.ami_name_prefix}-${var.base_os}-${var.profile}-${local.timestamp}"
  ami_tags = merge({
    Name                  = "${var.ami_name_prefix}-${var.base_os}-${var.profile}"
    ami-hardening-base    = var.base_os
    ami-hardening-profile = var.profile
  }, var.tags)
  snapshot_tags = merge({
    ami-hardening-base    = var.base_os
    ami-hardening-profile = var.profile
  }, var.tags)

  admin_user   = var.admin_user != "" ? var.admin_user : local.preset.user
  playbook_dir = var.playbook_dir != "" ? var.playbook_dir : abspath("${path.root}/../playbooks")
  timestamp    = formatdate("YYYYMMDD-hhmmss", timestamp())

  # The local build cannot use sudo to power off under the sealed profile, so the seal
  # leaves a root-owned watcher behind (in tmpfs) that powers off when this file appears.
  poweroff_trigger = "/dev/shm/ami-hardening-poweroff"

  hardening_vars = {
    ami_hardening_profile          = var.profile
    ami_hardening_admin_user       = local.admin_user
    ami_hardening_sealed_confirmed = var.sealed_confirmed
    ami_hardening_sudo_defer_seal  = true
  }
  # The amazon-chroot build's ami-harden arguments (apply, then check, on the mounted root).
  offline_check_arguments = join(" ", concat(
    ["--profile", var.profile, "--admin-user", local.admin_user],
    flatten([for id in var.skip_controls : ["--skip", id]]),
  ))
  offline_apply_arguments = "${local.offline_check_arguments}${var.sealed_confirmed ? " --confirm-sealed" : ""}"

  ansible_env = [
    "ANSIBLE_HOST_KEY_CHECKING=False",
    "ANSIBLE_PIPELINING=True",
    "ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes",
    "ANSIBLE_NOCOLOR=True",
    "ANSIBLE_PYTHON_INTERPRETER=auto_silent",
    "ANSIBLE_TIMEOUT=60",
  ]
}
