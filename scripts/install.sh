#!/usr/bin/env bash
# Install what ami-hardening needs on a fresh Debian 12 or Ubuntu 24.04 machine (as root), then the package.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo bash scripts/install.sh): it installs apt packages, and the lab" >&2
  echo "needs loop devices, mount and chroot to build its image" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt_packages=(
  qemu-system-x86 qemu-utils mmdebstrap grub-pc-bin grub2-common e2fsprogs fdisk util-linux
  genisoimage openssh-client packer chromium python3-pip python3-venv shellcheck git
)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# A distribution Python refuses system-wide pip installs (PEP 668): use a virtual environment then,
# and put ami-harden on PATH.
if python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
  ln -sf "$PWD/.venv/bin/ami-harden" /usr/local/bin/ami-harden
  echo "install.sh: installed into $PWD/.venv; ami-harden is linked into /usr/local/bin"
else
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[dev]"
  echo "install.sh: installed for $(command -v python3)"
fi
echo "install.sh: next, ami-harden demo (7 to 20 minutes, by how fast this machine runs QEMU), or ami-harden --help"
