# One set of provisioning steps for both sources: harden, reboot, verify, seal.

build {
  sources = ["source.amazon-ebs.hardened", "source.qemu.hardened"]

  # (a) Harden. The sudo role keeps the admin's grant until the seal (sealed profile):
  # the build still needs sudo for the steps below.
  provisioner "ansible" {
    playbook_file    = "${local.playbook_dir}/harden.yml"
    user             = local.admin_user
    use_proxy        = false
    ansible_env_vars = local.ansible_env
    extra_arguments  = concat(["--extra-vars", jsonencode(local.hardening_vars)], var.ansible_extra_args)
  }

  # Boot the hardened configuration once before judging it.
  provisioner "ansible" {
    playbook_file    = "${path.root}/reboot.yml"
    user             = local.admin_user
    use_proxy        = false
    ansible_env_vars = local.ansible_env
  }

  # Packer's own SSH connection died with the reboot: reconnect it now, while host keys and
  # the build key still exist (the local build's shutdown command runs on it after the
  # seal), and let cloud-init finish the boot before anything is judged or cleaned.
  provisioner "shell" {
    inline = ["if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null || true; fi"]
  }

  # (b) Verify every control over SSH; a failing control fails the build and is named.
  # The key: the local build's key file, or the temporary key Packer made for the AMI build.
  # Under the sealed profile the admin's sudo grant is still there until (c), which
  # removes it and fails unless no account has a grant left.
  provisioner "shell-local" {
    environment_vars = [
      "AMI_HARDEN_TARGET=ssh://${build.User}@${build.Host}:${build.Port}",
      "AMI_HARDEN_PROFILE=${var.profile}",
      "AMI_HARDEN_ADMIN_USER=${local.admin_user}",
      "AMI_HARDEN_CHECK=${var.check_command}",
      "AMI_HARDEN_SKIP=${join(" ", var.skip_controls)}",
      "AMI_HARDEN_BUILD_KEY_FILE=${var.ssh_private_key_file}",
      "AMI_HARDEN_BUILD_KEY=${build.SSHPrivateKey}",
      "AMI_HARDEN_REPORT_DIR=${var.report_dir}",
    ]
    script = "${path.root}/scripts/verify.sh"
  }

  # (c) Seal: clear instance state and remove the build's access, sudo grant last.
  provisioner "ansible" {
    playbook_file    = "${local.playbook_dir}/seal.yml"
    user             = local.admin_user
    use_proxy        = false
    ansible_env_vars = local.ansible_env
    extra_arguments = ["--extra-vars", jsonencode(merge(local.hardening_vars, {
      ami_hardening_seal_poweroff_trigger = source.type == "qemu" ? local.poweroff_trigger : ""
    }))]
  }
}

# The AMI without a build instance: everything happens in the amazon-chroot source's
# post_mount_commands (ami-harden apply, then check, on the mounted root volume).
build {
  name    = "offline"
  sources = ["source.amazon-chroot.hardened"]
}
