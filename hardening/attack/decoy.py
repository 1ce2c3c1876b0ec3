"""Decoy volumes: a copy of the image's root filesystem that carries the same LABEL (and UUID)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from hardening.disk import image_format, loop_partition, raw_copy, run_tool

DECOY_MARKER = "/ami-decoy"


@dataclass(frozen=True)
class RootIdentity:
    """How the image's root filesystem can be found: its LABEL and UUID."""

    label: str
    uuid: str


_run = partial(run_tool, context="decoy: ")


def make_decoys(image: Path, directory: Path) -> tuple[RootIdentity, Path, Path]:
    """Copy the image's root filesystem twice: same label with a new UUID, and same label and UUID.

    Each copy holds a marker file naming it, so a decoy mounted as / proves itself.
    """
    image_format(image)
    with raw_copy(image) as raw, loop_partition(raw) as node:
        identity = RootIdentity(_run("blkid", "-s", "LABEL", "-o", "value", node),
                                _run("blkid", "-s", "UUID", "-o", "value", node))
        same_uuid = directory / "decoy-same-uuid.raw"
        _run("e2image", "-ra", node, str(same_uuid))
    same_label = directory / "decoy-same-label.raw"
    _run("cp", "--sparse=always", str(same_uuid), str(same_label))
    # A new UUID on a filesystem mounted since its last check needs a fresh check (exit 1: fixed).
    _run("e2fsck", "-fy", str(same_label), ok=(0, 1))
    _run("tune2fs", "-U", str(uuid.uuid4()), str(same_label))
    for decoy, name in ((same_label, "same-label"), (same_uuid, "same-label-and-uuid")):
        note = directory / f"{name}.marker"
        note.write_text(f"decoy {name}\n")
        _run("debugfs", "-w", "-R", f"write {note} {DECOY_MARKER.lstrip('/')}", str(decoy))
    return identity, same_label, same_uuid
