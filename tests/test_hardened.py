"""The judge: the attack probe on hardened copies of the lab images, each booted as a new instance.

The demo test attacks the traps image and its marketplace copy hardened over SSH; these cover the
copies hardened offline and what happens to a hardened image later."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from hardening.catalog import VECTORS
from hardening.disk import chroot_root, overlay
from hardening.lab.image import VARIANTS

pytestmark = pytest.mark.vm
ADMIN = VARIANTS["traps"]


def attack(image, *options: str) -> dict:
    result = subprocess.run(["ami-harden", "attack", str(image), "--format", "json", *options],
                            capture_output=True, text=True, timeout=1800, check=False)
    print(result.stderr)
    report = json.loads(result.stdout)
    print(json.dumps(report["vectors"], indent=2))
    assert result.returncode in (0, 1), result.stderr
    return {v["vector"]: v for v in report["vectors"]}


def assert_all_closed(verdicts: dict) -> None:
    assert tuple(verdicts) == VECTORS
    open_ = {name: v["evidence"] for name, v in verdicts.items() if v["status"] != "CLOSED"}
    assert not open_, f"not CLOSED: {json.dumps(open_, indent=2)}"


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="an offline apply mounts the image and needs root")


@needs_root
def test_a_copy_hardened_offline_holds_after_update_grub_and_a_new_initramfs(hardened_image, tmp_path,
                                                                             no_orphan_qemu):
    """`apply IMAGE` (chroot, never booted), then the image's own update-grub and update-initramfs as a
    kernel update runs them: cloud-init creates the admin at first boot, sudo works for it alone, and every
    vector is CLOSED."""
    updated = overlay(hardened_image("traps", "marketplace", offline=True), tmp_path / "after-update-grub.qcow2")
    with chroot_root(updated) as mounted:
        run = subprocess.run(["chroot", str(mounted.root), "/bin/sh", "-c",
                              "update-grub && update-initramfs -u -k all"], capture_output=True, text=True,
                             timeout=600, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
    verdicts = attack(updated, "--admin-user", ADMIN)
    assert_all_closed(verdicts)
    assert f"{ADMIN}: sudo -n gives root (expected: the marketplace admin)" in verdicts["sudo"]["evidence"]
    # The new initramfs still carries ROOT-11's script: without a root disk driver it reboots.
    assert "initramfs: root not found; it rebooted instead of opening a shell" in verdicts["root-login"]["evidence"]
    assert any(line.startswith("emergency mode (") and ": sulogin refused" in line
               for line in verdicts["root-login"]["evidence"])


@needs_root
def test_sealed_leaves_nobody_with_sudo(hardened_image, no_orphan_qemu):
    verdicts = attack(hardened_image("traps", "sealed", offline=True), "--profile", "sealed", "--admin-user", ADMIN)
    assert_all_closed(verdicts)
    assert f"{ADMIN}: sudo -n refused" in verdicts["sudo"]["evidence"]
    # The traps image's polkit rule answered YES to the admin's group; the hardening's rule runs first.
    for tool in ("systemd-run", "pkexec"):
        assert any(line.startswith(f"{ADMIN}: {tool} refused") for line in verdicts["sudo"]["evidence"])
