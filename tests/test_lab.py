"""The lab: image cache, boot as a new instance, and the `lab` commands."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import LAB_INSTANCE_ID

from hardening.lab import image as image_module
from hardening.lab import imds

pytestmark = pytest.mark.vm


def test_unchanged_recipe_reuses_the_cached_image(lab_image):
    before = lab_image.stat().st_mtime
    assert image_module.ensure_image("debian") == lab_image
    assert lab_image.stat().st_mtime == before
    assert lab_image.name == f"lab-debian-{image_module.recipe_hash('debian')}.qcow2"


def test_boot_as_new_instance_is_vulnerable_by_design(lab_instance):
    rc, out, _ = lab_instance.run("sudo -n id -u; cat /proc/cmdline; grep -c 'LABEL=cloudimg-rootfs' /etc/fstab; "
                                  "cat /var/lib/cloud/data/instance-id; sudo cat /run/cloud-init/result.json | "
                                  "tr -d '\\n'; echo; ls /run/from-imds", timeout=120)
    assert rc == 0
    uid, cmdline, fstab_count, instance_id, result, ran = out.split("\n")[:6]
    assert uid == "0"
    assert "root=LABEL=cloudimg-rootfs" in cmdline
    assert "console=ttyS0" in cmdline
    assert fstab_count == "1"
    # An EC2 instance from inside: the Ec2 datasource, fed by the IMDSv2 service with tokens.
    assert instance_id == LAB_INSTANCE_ID
    assert json.loads(result)["v1"]["datasource"].startswith("DataSourceEc2")
    assert ran == "/run/from-imds"
    served = imds.requests_served(lab_instance.console_log.parent / "imds")
    assert any(line.endswith("PUT /latest/api/token 200") for line in served)
    assert any(line.endswith("/user-data 200 token") for line in served)


def test_boot_never_modifies_the_image(lab_image, lab_instance):
    before = lab_image.stat().st_mtime
    rc, out, err = lab_instance.run("sudo -n sh -c 'touch /etc/changed-by-test && sync && rm /etc/changed-by-test'",
                                    timeout=120)
    assert rc == 0, out + err
    assert lab_image.stat().st_mtime == before


def test_lab_boot_command_prints_target_and_stops(lab_image, no_orphan_qemu):
    result = subprocess.run(["ami-harden", "lab", "boot", str(lab_image), "--for", "5", "--format", "json"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert record["target"].startswith("ssh://admin@127.0.0.1:")
    assert record["key"].endswith("lab-key")


def test_lab_image_command_prints_path_last(lab_image):
    result = subprocess.run(["ami-harden", "lab", "image"], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == str(lab_image)
