"""The hostile user-data battery: every channel leaves a marker that proves it ran as root."""

from __future__ import annotations

from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import yaml

MARKER_DIR = "/var/lib/ami-probe"
PROBE_USER = "amiprobe"
ROOT_PASSWORD = "Ami-Probe-Passw0rd!"
SUDOERS_DROP = "/etc/sudoers.d/99-ami-probe"

# Channel name -> how the probe recognises that it ran.
CHANNELS = ("script", "boothook", "bootcmd", "runcmd", "write_files", "users", "chpasswd", "ssh_pwauth",
            "disable_root")


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


def battery(public_key: str) -> str:
    """MIME multi-part user-data: a #! script, a #cloud-boothook and the #cloud-config above."""
    message = MIMEMultipart()
    parts = (
        (f"#!/bin/sh\n{_marker('script')}\n", "x-shellscript", "probe.sh"),
        (f"#cloud-boothook\n#!/bin/sh\n{_marker('boothook')}\n", "cloud-boothook", "probe-boothook.sh"),
        (cloud_config(public_key), "cloud-config", "probe.yaml"),
    )
    for body, subtype, filename in parts:
        part = MIMEText(body, subtype)
        part.add_header("Content-Disposition", "attachment", filename=filename)
        message.attach(part)
    return message.as_string()
