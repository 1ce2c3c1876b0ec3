"""The judge: the attack probe on hardened copies of the lab images, each booted as a new instance.

The demo test attacks the traps image and its marketplace copy; these cover the rest."""

from __future__ import annotations

import json
import subprocess

import pytest

from hardening.catalog import VECTORS
from hardening.lab.hardened import writable_copy
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


@pytest.mark.heavy
def test_sealed_leaves_nobody_with_sudo(hardened_image, no_orphan_qemu):
    verdicts = attack(hardened_image("traps", "sealed"), "--profile", "sealed", "--admin-user", ADMIN)
    assert_all_closed(verdicts)
    assert f"{ADMIN}: sudo -n refused" in verdicts["sudo"]["evidence"]


def test_still_closed_after_update_grub_and_reboot(hardened_image, tmp_path, no_orphan_qemu):
    updated = tmp_path / "after-update-grub.qcow2"
    with writable_copy(hardened_image("traps", "marketplace"), updated, ADMIN) as vm:
        rc, out, err = vm.run("sudo -n update-grub && sudo -n update-initramfs -u", timeout=600)
        assert rc == 0, out + err
    assert_all_closed(attack(updated, "--admin-user", ADMIN))
