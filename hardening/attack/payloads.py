"""The hostile user-data battery: every channel leaves a marker that proves it ran as root."""

from __future__ import annotations

import json
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import yaml

from hardening.seed import iso, seed_files

MARKER_DIR = "/var/lib/ami-probe"
PROBE_USER = "amiprobe"
ROOT_PASSWORD = "Ami-Probe-Passw0rd!"
SUDOERS_DROP = "/etc/sudoers.d/99-ami-probe"


def _marker(name: str) -> str:
    return f"mkdir -p {MARKER_DIR} && id -u > {MARKER_DIR}/{name}"


def cloud_config(public_key: str) -> str:
    """A #cloud-config that tries every root channel cloud-init offers."""
    config = {
        "disable_root": False,
        "ssh_pwauth": True,
        "chpasswd": {"expire": False, "list": f"root:{ROOT_PASSWORD}\n"},
        "users": ["default", {"name": PROBE_USER, "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash",
                              "lock_passwd": True, "ssh_authorized_keys": [public_key]}],
        "bootcmd": [["sh", "-c", _marker("bootcmd")]],
        "runcmd": [["sh", "-c", _marker("runcmd")]],
        "write_files": [
            {"path": SUDOERS_DROP, "permissions": "0440", "content": "ALL ALL=(ALL) NOPASSWD: ALL\n"},
            {"path": f"{MARKER_DIR}/write_files", "permissions": "0644", "content": "0\n"},
        ],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False)


def battery(public_key: str, source: str | None = None) -> str:
    """MIME multi-part user-data: a #! script, a #cloud-boothook and the #cloud-config above; with
    `source`, one more script leaves the marker `source` (which channel delivered the battery)."""
    message = MIMEMultipart()
    parts = (
        (f"#!/bin/sh\n{_marker('script')}\n", "x-shellscript", "probe.sh"),
        (f"#cloud-boothook\n#!/bin/sh\n{_marker('boothook')}\n", "cloud-boothook", "probe-boothook.sh"),
        (cloud_config(public_key), "cloud-config", "probe.yaml"),
        *([(f"#!/bin/sh\n{_marker(source)}\n", "x-shellscript", "probe-source.sh")] if source else []),
    )
    for body, subtype, filename in parts:
        part = MIMEText(body, subtype)
        part.add_header("Content-Disposition", "attachment", filename=filename)
        message.attach(part)
    return message.as_string()


# Filesystem labels that make cloud-init take a volume for the instance's datasource (ConfigDrive's
# and NoCloud's), and the prefix of the marker each volume leaves when it is read.
IMPERSONATED = ("config-2", "cidata")
VOLUME_MARKER = "volume-"


def impersonating_volumes(directory: Path, public_key: str) -> list[Path]:
    """Volumes a buyer can attach at launch that pass for the instance's datasource: ConfigDrive
    (`config-2`: its `files` are written as root on a new instance, its user_data is the battery) and
    NoCloud (`cidata`: the battery as user-data). Each leaves `volume-<label>` in MARKER_DIR."""
    drive = directory / "config-2"
    (drive / "openstack" / "latest").mkdir(parents=True)
    (drive / "openstack" / "content").mkdir()
    (drive / "openstack" / "content" / "0000").write_text("0\n")
    meta = {"uuid": "b0a1c2d3-0000-4000-8000-a11ac4ed0001", "hostname": "ami-lab", "public_keys": {"buyer": public_key},
            "files": [{"path": f"{MARKER_DIR}/{VOLUME_MARKER}config-2", "content_path": "/content/0000"}]}
    (drive / "openstack" / "latest" / "meta_data.json").write_text(json.dumps(meta))
    (drive / "openstack" / "latest" / "user_data").write_text(battery(public_key, f"{VOLUME_MARKER}config-2"))
    seed = seed_files(directory / "cidata", public_key, "ami-lab", battery(public_key, f"{VOLUME_MARKER}cidata"),
                      "i-attached-cidata")
    return [iso(directory / "config-2.iso", "config-2", [drive]), iso(directory / "cidata.iso", "cidata", seed)]
