"""Where the playbooks, checks and Packer templates are: inside the package (`hardening/_shipped/`)
when it was installed from a wheel (setup.py copies them there), else beside it in the checkout (a
source tree or an editable install)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """The directory `name` (playbooks, checks or packer): the wheel's copy when there is one, else the
    checkout's."""
    inside = _PACKAGE / "_shipped" / name
    return inside if inside.is_dir() else _PACKAGE.parent / name
