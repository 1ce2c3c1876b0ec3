"""The boot loader door, attacked from the serial console from power-on, as EC2's serial console allows.

The traps image's menu waits 5 s (set in a grub defaults file that sorts after ami-hardening's);
unhardened, its command line boots `init=/bin/sh` into a uid-0 shell (the demo's attack shows it).
With only ROOT-08 applied the menu still waits, so the lock itself is what gets attacked: the command
line and the editor ask for a superuser, and an unattended boot still reaches SSH. With ROOT-09 too
the menu never answers (the demo's attack after hardening)."""

from __future__ import annotations

import os
import time

import pytest

from hardening.apply import apply
from hardening.attack.bootmenu import probe_boot_menu
from hardening.attack.console import SerialConsole
from hardening.disk import mounted_root, overlay
from hardening.lab.image import VARIANTS
from hardening.lab.vm import boot_instance
from hardening.target import Image

pytestmark = pytest.mark.vm
TRAPS_ADMIN = VARIANTS["traps"]
RESTART = "reboot: Restarting system"


def probe(vm, commands):
    console = SerialConsole(vm.serial_socket)
    try:
        return probe_boot_menu(console, commands)
    finally:
        console.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="an offline apply mounts the image and needs root")
def test_superuser_locks_a_waiting_menu_and_unattended_boots_still_work(traps_image, tmp_path, no_orphan_qemu):
    image = overlay(traps_image, tmp_path / "root-08.qcow2")
    result = apply(Image(image), only=["ROOT-08"], admin_user=TRAPS_ADMIN)
    assert result.failed == 0 and result.changed > 0
    assert apply(Image(image), only=["ROOT-08"], admin_user=TRAPS_ADMIN).changed == 0
    with mounted_root(image) as root:
        grub = (root / "boot" / "grub" / "grub.cfg").read_text()
    assert 'set superusers="ami-hardening"' in grub
    assert "password_pbkdf2 ami-hardening grub.pbkdf2.sha512." in grub
    assert "set timeout=5" in grub, "ROOT-08 alone leaves the 5 s menu waiting"
    # The first boot is unattended: the menu's 5 s pass and the --unrestricted default entry boots.
    with boot_instance(image, user=TRAPS_ADMIN) as vm:
        vm.wait_for_cloud_init()
        assert vm.run("cat /proc/cmdline")[0] == 0
        restarts = vm.console().count(RESTART)
        vm.start_reboot()
        deadline = time.monotonic() + 300
        while vm.console().count(RESTART) == restarts:  # keys before that would reach the old login prompt
            assert time.monotonic() < deadline, "the instance did not restart"
            time.sleep(0.5)
        verdict = probe(vm, [])
        print(verdict)
        assert not verdict.open_ and verdict.known
        assert [line.split(":")[0] for line in verdict.evidence] == ["menu command line (c)", "menu editor (e)"]
        assert all("asks for a superuser" in line for line in verdict.evidence)
