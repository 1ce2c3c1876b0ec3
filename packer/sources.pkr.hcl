# Two sources for one set of provisioning steps (build.pkr.hcl): the AMI itself, and a
# local QEMU twin that runs the same steps on a disk image. A third, amazon-chroot, builds
# the AMI without booting it (its own build in build.pkr.hcl).

source "amazon-ebs" "hardened" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id

  source_ami_filter {
    filters     = local.source_ami_filters
    owners      = [local.preset.owner]
    most_recent = true
  }

  ssh_username            = local.admin_user
  temporary_key_pair_type = "ed25519"

  ami_name        = local.ami_name
  ami_description = "${var.base_os} hardened by ami-hardening (profile ${var.profile})"
  ami_users       = var.ami_users
  ami_org_arns    = var.ami_org_arns

  # AWS Marketplace rejects encrypted snapshots: no encryption and no KMS key here. An
  # account with EBS encryption by default turned on still encrypts them; turn it off
  # in the build region.
  encrypt_boot = false

  # Instances launched from the AMI require IMDSv2; so does the build instance.
  imds_support = "v2.0"
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  run_tags = {
    Name = "ami-hardening build (${var.base_os}, ${var.profile})"
  }
  tags          = local.ami_tags
  snapshot_tags = local.snapshot_tags
}

# Run on an EC2 instance in the target region, as root: the base AMI's root volume is
# attached here, hardened and verified offline through chroot, then registered. The image
# never boots before a buyer launches it, so no build key, host key or instance state is
# ever written to it and there is nothing to seal.
source "amazon-chroot" "hardened" {
  region = var.region

  source_ami_filter {
    filters     = local.source_ami_filters
    owners      = [local.preset.owner]
    most_recent = true
  }

  ami_name                = local.ami_name
  ami_description         = "${var.base_os} hardened offline by ami-hardening (profile ${var.profile})"
  ami_users               = var.ami_users
  ami_org_arns            = var.ami_org_arns
  ami_virtualization_type = "hvm"
  ena_support             = true
  sriov_support           = true
  encrypt_boot            = false
  imds_support            = "v2.0"

  # Harden, then verify; either failing fails the build before the AMI is registered.
  mount_path = "/mnt/ami-hardening/{{.Device}}"
  post_mount_commands = [
    "${var.check_command} apply {{.MountPath}} ${local.offline_apply_arguments}",
    "${var.check_command} check {{.MountPath}} ${local.offline_check_arguments}",
  ]

  tags          = local.ami_tags
  snapshot_tags = local.snapshot_tags
}

source "qemu" "hardened" {
  iso_url      = var.base_image
  iso_checksum = "none"
  disk_image   = true

  # A self-contained qcow2 the size of the base image: no backing file, no resize.
  use_backing_file = false
  skip_resize_disk = true
  skip_compaction  = true
  format           = "qcow2"
  output_directory = var.output_directory
  vm_name          = var.image_name

  # Cloud kernels lack e1000 and AHCI: virtio disk and NIC on the i440fx machine, where
  # the NoCloud seed CD sits on IDE.
  accelerator    = var.accelerator
  machine_type   = "pc"
  disk_interface = "virtio"
  net_device     = "virtio-net"
  headless       = true
  qemuargs = [
    ["-smp", "2"],
    ["-m", "1024M"],
    ["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
    ["-device", "virtio-net,netdev=user.0"],
  ]
  cd_files = var.seed_files
  cd_label = "cidata"

  communicator         = "ssh"
  ssh_username         = local.admin_user
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "10m"
  boot_wait            = "1s"

  # Needs no sudo: the seal left a watcher that powers off when this file appears.
  shutdown_command = "touch ${local.poweroff_trigger}"
  shutdown_timeout = "5m"
}
