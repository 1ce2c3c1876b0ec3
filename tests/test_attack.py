"""The attack probe's command line: help and bad input (the demo test runs it on real boots)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import assert_one_line_error

from hardening.attack.bootmenu import default_entry, with_shell
from hardening.attack.console import Finding
from hardening.attack.emergency import emergency_boot
from hardening.attack.probe import CLOSED, INCONCLUSIVE, OPEN, Verdict, fold
from hardening.errors import HardeningError
from hardening.lab.vm import qemu_command


def run_cli(*args: str, env: dict | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(["ami-harden", *args], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def test_help_documents_the_probe():
    result = run_cli("attack", "--help")
    assert result.returncode == 0
    for word in ("--profile", "--admin-user", "--format", "Example", "OPEN"):
        assert word in result.stdout


def test_missing_image_is_one_clear_line():
    assert_one_line_error(run_cli("attack", "/nonexistent/disk.qcow2"), "does not exist")


def test_a_file_that_is_not_a_disk_image_is_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a disk\n")
    assert_one_line_error(run_cli("attack", str(notes)), "not a disk image")


def test_unknown_profile_is_refused(tmp_path):
    assert_one_line_error(run_cli("attack", str(tmp_path), "--profile", "open"), "--profile")


def test_qemu_absent_is_one_clear_line(lab_image, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("qemu-img", "python3", "genisoimage", "ssh-keygen", "e2image", "blkid", "losetup", "partx",
                 "tune2fs", "debugfs", "cp"):
        path = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if path:
            (bin_dir / tool).symlink_to(path)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.path.dirname(subprocess.sys.executable)}")
    result = subprocess.run([subprocess.sys.executable, "-m", "hardening.cli", "attack", str(lab_image)],
                            capture_output=True, text=True, env=env, timeout=600, check=False)
    assert_one_line_error(result, "qemu-system-x86_64 is missing")


DEBIAN_ENTRY = """\
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'x' {
\tload_video
\tinsmod gzio
\tif [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi
\tinsmod part_msdos
\tinsmod ext2
\tset root='hd0,msdos1'
\tif [ x$feature_platform_search_hint = xy ]; then
\t  search --no-floppy --fs-uuid --set=root --hint-bios=hd0,msdos1 4815c451
\telse
\t  search --no-floppy --fs-uuid --set=root 4815c451
\tfi
\techo\t'Loading Linux 6.1.0-28-cloud-amd64 ...'
\tlinux\t/boot/vmlinuz-6.1.0-28-cloud-amd64 root=LABEL=cloudimg-rootfs ro quiet console=ttyS0,115200
\techo\t'Loading initial ramdisk ...'
\tinitrd\t/boot/initrd.img-6.1.0-28-cloud-amd64
}
menuentry 'second' {
\tlinux /boot/other
}
"""


def test_boot_menu_probe_types_the_default_entry_with_a_shell_as_init():
    commands = default_entry("set default=0\n" + DEBIAN_ENTRY)
    assert commands == ["insmod gzio", "insmod part_msdos", "insmod ext2", "set root='hd0,msdos1'",
                        "linux\t/boot/vmlinuz-6.1.0-28-cloud-amd64 root=LABEL=cloudimg-rootfs ro quiet "
                        "console=ttyS0,115200",
                        "initrd\t/boot/initrd.img-6.1.0-28-cloud-amd64"]
    typed = with_shell(commands, "init=/bin/sh")
    assert typed[-3:] == ["linux /boot/vmlinuz-6.1.0-28-cloud-amd64 root=LABEL=cloudimg-rootfs ro console=ttyS0,115200 "
                          "init=/bin/sh", "initrd /boot/initrd.img-6.1.0-28-cloud-amd64", "boot"]
    assert not any("\t" in command for command in typed)
    assert default_entry("no menu here\n") == []


def test_emergency_probe_boots_the_default_entry_into_emergency_mode_with_the_force_switch(tmp_path):
    tree = tmp_path / "tree"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot" / "vmlinuz-6.1.0-28-cloud-amd64").write_bytes(b"kernel")
    (tree / "boot" / "initrd.img-6.1.0-28-cloud-amd64").write_bytes(b"initrd")
    root_filesystem = tmp_path / "root.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(tree), str(root_filesystem), "8M"], check=True)
    boot = emergency_boot(root_filesystem, default_entry(DEBIAN_ENTRY), tmp_path)
    assert boot.kernel.read_bytes() == b"kernel" and boot.initrd.read_bytes() == b"initrd"
    assert boot.command_line == ("root=LABEL=cloudimg-rootfs ro console=ttyS0,115200 systemd.unit=emergency.target "
                                 "systemd.setenv=SYSTEMD_SULOGIN_FORCE=1")
    command = qemu_command(tmp_path / "disk.qcow2", None, 2222, tmp_path / "log", tmp_path / "sock", kernel=boot)
    assert command[command.index("-append") + 1] == boot.command_line
    assert not any("bootindex" in word for word in command)  # QEMU's kernel loader boots first
    with pytest.raises(HardeningError, match="loads no kernel"):
        emergency_boot(root_filesystem, [], tmp_path)
    with pytest.raises(HardeningError, match="/boot/other is not on the image's root filesystem"):
        emergency_boot(root_filesystem, ["linux /boot/other root=UUID=1", "initrd /boot/initrd"], tmp_path)


def test_console_boots_fold_into_the_root_login_verdict_in_boot_order():
    """Boots 3 to 5 run beside boots 1 and 2 and are folded in afterwards: OPEN wins whatever came
    first; a boot that cannot tell leaves a CLOSED verdict INCONCLUSIVE, never an OPEN one CLOSED."""
    root = Verdict("root-login", CLOSED, ["ssh: refused"])
    for finding in (Finding(False, True, ["menu: locked"]), Finding(False, False, ["initramfs: silent"]),
                    Finding(False, True, ["sulogin"])):
        fold(finding, root)
    assert (root.status, root.evidence) == (INCONCLUSIVE, ["ssh: refused", "menu: locked", "initramfs: silent",
                                                           "sulogin"])
    fold(Finding(True, True, ["emergency: uid 0"]), root)
    fold(Finding(False, False, ["later: silent"]), root)
    assert root.status == OPEN
