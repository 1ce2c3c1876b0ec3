"""cloud-init NoCloud seed files: the meta-data and user-data a new instance reads from a disk
labelled `cidata` (a Packer build's CD, a lab instance's seed)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

import yaml


def seed_files(directory: Path, public_key: str, hostname: str, user_data: str | None = None,
               instance_id: str | None = None) -> list[Path]:
    """Write meta-data (a fresh instance id unless given, `hostname`, the key pair) and user-data."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"instance-id": instance_id or f"i-{uuid.uuid4().hex[:17]}", "local-hostname": hostname,
            "public-keys": [public_key]}
    (directory / "meta-data").write_text(yaml.safe_dump(meta))
    (directory / "user-data").write_text(user_data or "")
    return [directory / "meta-data", directory / "user-data"]


def iso(output: Path, label: str, sources: Sequence[Path]) -> Path:
    """An ISO9660 image labelled `label` holding `sources` at its root (a directory: its contents)."""
    subprocess.run(["genisoimage", "-quiet", "-output", str(output), "-volid", label, "-joliet", "-rock",
                    *map(str, sources)], check=True)
    return output
