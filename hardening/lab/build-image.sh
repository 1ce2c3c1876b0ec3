#!/usr/bin/env bash
# Build the vulnerable lab image: a Debian 12 cloud-like disk that finds / by LABEL, as old AMIs do.
# Usage: build-image.sh OUTPUT.qcow2 VARIANT ADMIN
#   VARIANT: debian | traps; ADMIN: cloud-init's default user, the instance's admin.
# Needs root, mmdebstrap, grub-pc-bin, qemu-utils, e2fsprogs, fdisk (sfdisk), util-linux.
# Packages come from $AMI_HARDEN_MIRROR, else from the Debian mirror this host's apt uses.
# shellcheck disable=SC2016  # $1, $TERM: written literally, for mmdebstrap's hook and for systemd
set -euo pipefail

out=$1
variant=${2:-debian}
admin=${3:-admin}
label=cloudimg-rootfs
size=3G

host_mirror() {
  local found
  found=$({
    grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{ print $2 }'
    grep -hs '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      awk '{ for (i = 2; i <= NF; i++) if ($i !~ /^\[|\]$|=/) { print $i; break } }'
  } | grep -v -e '-security') || true
  printf '%s\n' "$found" | sed -n 1p
}
mirror=${AMI_HARDEN_MIRROR:-$(host_mirror)}
if [ -z "$mirror" ]; then
  echo "build-image: no Debian mirror in this host's apt sources; set AMI_HARDEN_MIRROR" >&2
  exit 2
fi

work=$(mktemp -d /var/tmp/ami-lab.XXXXXX)
loop=""
cleanup() {
  set +e
  for m in dev/pts dev proc sys ""; do mountpoint -q "$work/root/$m" && umount -l "$work/root/$m"; done
  [ -n "$loop" ] && losetup -d "$loop"
  rm -rf "$work"
}
trap cleanup EXIT

packages=(
  linux-image-cloud-amd64 systemd systemd-sysv udev kmod initramfs-tools
  openssh-server sudo cloud-init cloud-guest-utils python3 locales
  ifupdown isc-dhcp-client iproute2 netbase grub-pc e2fsprogs util-linux
)
# polkit and pkexec, as images with a management agent or a desktop stack carry them.
if [ "$variant" = traps ]; then packages+=(polkitd pkexec); fi
(IFS=,; mmdebstrap --variant=minbase --include="${packages[*]}" \
  --aptopt='APT::Install-Recommends "false"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  bookworm "$work/rootfs.tar" "$mirror")

truncate -s "$size" "$work/disk.raw"
echo 'label: dos
start=2048, type=83, bootable' | sfdisk -q "$work/disk.raw"
loop=$(losetup -P --find --show "$work/disk.raw")
partx -u "$loop" 2>/dev/null || partx -a "$loop" 2>/dev/null || true
for _ in $(seq 50); do [ -b "${loop}p1" ] && break; sleep 0.1; done
mkfs.ext4 -q -L "$label" "${loop}p1"
uuid=$(blkid -s UUID -o value "${loop}p1")

root=$work/root
mkdir -p "$root"
mount "${loop}p1" "$root"
tar -C "$root" -xpf "$work/rootfs.tar"

cat >"$root/etc/fstab" <<EOF
LABEL=$label / ext4 rw,discard,errors=remount-ro 0 1
EOF
echo ami-lab >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 ami-lab\n' >"$root/etc/hosts"
printf 'auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n' >"$root/etc/network/interfaces"
sed -i 's/^# *en_US.UTF-8/en_US.UTF-8/' "$root/etc/locale.gen"
echo 'LANG=en_US.UTF-8' >"$root/etc/default/locale"

# cloud-init as Debian's cloud images ship it: default user with passwordless sudo, and no
# datasource_list (the built-in list; ds-identify keeps every datasource it finds).
cat >"$root/etc/cloud/cloud.cfg.d/01-lab.cfg" <<EOF
manage_etc_hosts: true
system_info:
  default_user:
    name: $admin
    lock_passwd: true
    gecos: Debian
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
EOF

# Serial console on ttyS0, and grub that finds / by LABEL.
cat >"$root/etc/default/grub" <<EOF
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_LINUX_UUID=true
GRUB_DISABLE_LINUX_PARTUUID=true
GRUB_DEVICE=LABEL=$label
EOF

if [ "$variant" = traps ]; then
  # Leftovers seen on hand-made and vendor AMIs, each placed where its drop-in directory gives it
  # precedence: sshd keeps the first value it reads, so a drop-in sorting before every other wins;
  # cloud-init and grub-mkconfig keep the last, so a file sorting after every other wins.
  mkdir -p "$root/etc/ssh/sshd_config.d"
  printf 'PermitRootLogin yes\nPasswordAuthentication yes\n' >"$root/etc/ssh/sshd_config.d/50-cloud-init.conf"
  printf 'PermitRootLogin yes\nKbdInteractiveAuthentication yes\nMatch User deploy\n  PasswordAuthentication yes\n' \
    >"$root/etc/ssh/sshd_config.d/00-access.conf"
  cat >"$root/etc/cloud/cloud.cfg.d/99-zz-leftover.cfg" <<'EOF'
datasource_list: [ ConfigDrive, NoCloud, OpenStack, Ec2, None ]
allow_userdata: true
disable_root: false
ssh_pwauth: true
vendor_data: {enabled: true}
system_info:
  default_user:
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
EOF
  # A boot menu that waits on the serial console, set in a file sorting after every grub default.
  mkdir -p "$root/etc/default/grub.d"
  printf 'GRUB_TIMEOUT=5\nGRUB_TIMEOUT_STYLE=menu\nGRUB_DISABLE_LINUX_UUID=true\n' \
    >"$root/etc/default/grub.d/zz-leftover.cfg"
  # NOPASSWD for the sudo group in the main sudoers, cloud-init's rule, and a deploy account's rule.
  sed -i 's/^%sudo\s.*/%sudo\tALL=(ALL:ALL) NOPASSWD: ALL/' "$root/etc/sudoers"
  printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$admin" >"$root/etc/sudoers.d/90-cloud-init-users"
  printf 'deploy ALL=(ALL) NOPASSWD:ALL\n' >"$root/etc/sudoers.d/zz-deploy"
  chmod 0440 "$root/etc/sudoers.d/90-cloud-init-users" "$root/etc/sudoers.d/zz-deploy"
  # polkit rules that answer yes for any action: root through systemd-run or pkexec without sudo.
  # One sorts before every other and names the adm group (cloud-init's default user is in it); one
  # sorts after most and names the admin.
  mkdir -p "$root/etc/polkit-1/rules.d"
  cat >"$root/etc/polkit-1/rules.d/00-adm.rules" <<'EOF'
polkit.addRule(function(action, subject) {
    if (subject.isInGroup("adm")) {
        return polkit.Result.YES;
    }
});
EOF
  cat >"$root/etc/polkit-1/rules.d/60-operator.rules" <<EOF
polkit.addRule(function(action, subject) {
    if (subject.user == "$admin") {
        return polkit.Result.YES;
    }
});
EOF
  # A deploy account with a pre-seeded key, in the disk group (raw access to every volume).
  chroot "$root" useradd -m -s /bin/bash -G disk deploy
  mkdir -m 700 "$root/home/deploy/.ssh"
  ssh-keygen -q -t ed25519 -N '' -C deploy@build -f "$work/deploy-key"
  cp "$work/deploy-key.pub" "$root/home/deploy/.ssh/authorized_keys"
  chroot "$root" chown -R deploy:deploy /home/deploy/.ssh
  # A root autologin on the serial console and a shell without login on tty1, as debug builds leave.
  mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d" "$root/etc/systemd/system/getty@tty1.service.d"
  printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %%I $TERM\n' \
    >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
  printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty -n -l /bin/bash %%I $TERM\n' \
    >"$root/etc/systemd/system/getty@tty1.service.d/override.conf"
  # sulogin's force switch for emergency mode, as advised for images whose root password is locked: a
  # boot that fails then opens a root shell on the serial console without a password.
  mkdir -p "$root/etc/systemd/system/emergency.service.d"
  printf '[Service]\nEnvironment=SYSTEMD_SULOGIN_FORCE=1\n' >"$root/etc/systemd/system/emergency.service.d/sulogin.conf"
fi

for m in dev dev/pts proc sys; do mount --bind "/$m" "$root/$m"; done
# Without udev here, grub-probe needs the by-uuid link to see the filesystem.
mkdir -p /dev/disk/by-uuid
ln -sf "${loop}p1" "/dev/disk/by-uuid/$uuid"
chroot "$root" /bin/sh -ec '
  locale-gen >/dev/null
  grub-install --target=i386-pc --modules="part_msdos ext2" '"$loop"' 2>&1 | grep -v "^Installation finished" || true
  update-grub 2>/dev/null
  apt-get clean
  rm -rf /var/lib/apt/lists/*
  : >/etc/machine-id
'
rm -f "/dev/disk/by-uuid/$uuid"
if grep -q '/dev/loop' "$root/boot/grub/grub.cfg"; then
  echo "build-image: grub.cfg names the build loop device" >&2
  exit 1
fi
grep -q "root=LABEL=$label" "$root/boot/grub/grub.cfg"

for m in dev/pts dev proc sys; do umount "$root/$m"; done
umount "$root"
losetup -d "$loop"
loop=""
qemu-img convert -O qcow2 "$work/disk.raw" "$out.tmp"
mv "$out.tmp" "$out"
