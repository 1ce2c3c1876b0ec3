"""The control catalog: ids, vectors, Ansible tags and switches, and where each control is checked."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import yaml

from hardening.errors import HardeningError

# $AMI_HARDEN_CATALOG names a catalog of one's own (for instance with a control moved between
# profiles); the checks, run in the same process or a child, read the same one.
CATALOG_PATH = Path(os.environ.get("AMI_HARDEN_CATALOG") or Path(__file__).with_name("catalog.yml"))


@cache
def _catalog() -> dict:
    return yaml.safe_load(CATALOG_PATH.read_text())


PROFILES: tuple[str, ...] = tuple(_catalog()["profiles"])
VECTORS: tuple[str, ...] = tuple(_catalog()["vectors"])


def require_profile(profile: str) -> None:
    """HardeningError unless `profile` is one of PROFILES."""
    if profile not in PROFILES:
        raise HardeningError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")


@dataclass(frozen=True)
class Control:
    """One hardening control as the catalog describes it."""

    id: str
    vector: str
    title: str
    rationale: str
    profiles: tuple[str, ...]
    tag: str
    variable: str
    check: str

    @property
    def vector_tag(self) -> str:
        """The Ansible tag shared by every control of this control's vector."""
        return self.vector.replace("-", "_")

    def as_dict(self) -> dict:
        """A JSON-ready record of the control."""
        return {**asdict(self), "profiles": list(self.profiles)}


@cache
def controls() -> tuple[Control, ...]:
    """Every control, in catalog order."""
    return tuple(Control(**{**entry, "profiles": tuple(entry["profiles"])}) for entry in _catalog()["controls"])


def select(only: Iterable[str] = (), skip: Iterable[str] = (),
           profile: str | None = None) -> tuple[list[Control], list[Control]]:
    """The controls `only` names (every one when it names none) less those `skip` names and, given a
    `profile`, those outside it; and the rest. HardeningError for an unknown id or one named by both."""
    named = [control(item) for item in only]
    skipped = [control(item) for item in skip]
    both = [item.id for item in named if item in skipped]
    if both:
        raise HardeningError(f"{', '.join(both)} named by both --only and --skip; name each control once")
    chosen = [item for item in controls() if (not named or item in named) and item not in skipped
              and (profile is None or profile in item.profiles)]
    return chosen, [item for item in controls() if item not in chosen]


def control(control_id: str) -> Control:
    """The control with this id (case-insensitive); HardeningError for an unknown id."""
    wanted = control_id.strip().upper()
    for candidate in controls():
        if candidate.id == wanted:
            return candidate
    raise HardeningError(f"unknown control id {control_id!r}; see `ami-harden controls`")


def vector_tags() -> tuple[str, ...]:
    """The Ansible tags of the four vectors."""
    return tuple(dict.fromkeys(item.vector_tag for item in controls()))
