"""The boot loader door, attacked from the serial console from power-on, as EC2's serial console allows.

The traps image's menu waits 5 s (set in a grub defaults file that sorts after ami-hardening's).
Unhardened, its command line boots `init=/bin/sh` into a uid-0 shell. With only ROOT-08 applied the
menu still waits, so the lock itself is what gets attacked: the command line and the editor ask for
a superuser, and an unattended boot still reaches SSH."""

from __future__ import annotations

import time

import pytest

from hardening.apply import apply
from hardening.attack.bootmenu import default_entry, probe_boot_menu
from hardening.attack.console import SerialConsole
from hardening.lab.disk import mounted_root
from hardening.lab.image import VARIANTS
from hardening.lab.vm import boot_instance

pytestmark = pytest.mark.vm
TRAPS_ADMIN = VARIANTS["traps"]


def grub_cfg(image) -> str:
    with mounted_root(image) as root:
        return (root / "boot" / "grub" / "grub.cfg").read_text()


def probe(vm, commands):
    console = SerialConsole(vm.serial_socket)
    try:
        return probe_boot_menu(console, commands)
    finally:
        console.close()


def test_unhardened_traps_menu_gives_a_root_shell(traps_image, no_orphan_qemu):
    commands = default_entry(grub_cfg(traps_image))
    with boot_instance(traps_image, wait=False, allow_reboot=False, user=TRAPS_ADMIN) as vm:
        verdict = probe(vm, commands)
    print(verdict)
    assert verdict.open_ and "gave a uid-0 shell" in verdict.evidence[-1]


def test_superuser_locks_a_waiting_menu_and_unattended_boots_still_work(traps_image, no_orphan_qemu):
    with boot_instance(traps_image, user=TRAPS_ADMIN) as vm:
        vm.wait_for_cloud_init()
        result = apply(vm.target, only=["ROOT-08"], progress=print)
        assert result.failed == 0 and result.changed > 0
        rc, out, _ = vm.run("sudo -n grep -c -e '^set superusers=\"ami-hardening\"' -e '^password_pbkdf2 ami-hardening "
                            "grub.pbkdf2.sha512' -e '^set timeout=5' /boot/grub/grub.cfg")
        assert rc == 0 and out.strip() == "3", "ROOT-08 alone leaves the 5 s menu waiting"
        assert apply(vm.target, only=["ROOT-08"]).changed == 0
        for attacked in (False, True):
            vm.run("sudo -n sh -c 'nohup sh -c \"sleep 2; systemctl reboot\" >/dev/null 2>&1 &'")
            vm.close_ssh()
            time.sleep(1)
            if attacked:
                verdict = probe(vm, [])
                print(verdict)
                assert not verdict.open_ and verdict.known
                assert [line.split(":")[0] for line in verdict.evidence] == ["menu command line (c)", "menu editor (e)"]
                assert all("asks for a superuser" in line for line in verdict.evidence)
            else:
                vm.wait_for_ssh()  # the menu's 5 s pass and the --unrestricted default entry boots
                assert vm.run("cat /proc/cmdline")[0] == 0
