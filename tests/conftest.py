"""Shared fixtures: the lab images, built once per run from the recipe cache."""

from __future__ import annotations

import subprocess

import pytest

from hardening.lab.image import VARIANTS, ensure_image


@pytest.fixture(scope="session")
def lab_image():
    """The vulnerable Debian 12 lab image (qcow2)."""
    return ensure_image("debian")


@pytest.fixture(scope="session")
def traps_image():
    """The lab image with leftovers that override by drop-in order, a waiting boot menu and admin `ec2-user`."""
    return ensure_image("traps")


def qemu_processes() -> set[str]:
    """PIDs of running qemu-system processes."""
    result = subprocess.run(["pgrep", "-f", "qemu-system-x86_64"], capture_output=True, text=True, check=False)
    return set(result.stdout.split())


@pytest.fixture
def no_orphan_qemu():
    """Fail the test when a qemu process it started outlives it."""
    before = qemu_processes()
    yield
    left = qemu_processes() - before
    assert not left, f"qemu processes left running: {sorted(left)}"


@pytest.fixture(scope="session")
def hardened_image(tmp_path_factory, lab_image, traps_image):
    """A factory of hardened copies of the lab images, one per (variant, profile), kept for the session."""
    from hardening.lab.hardened import harden_copy

    made = {}
    directory = tmp_path_factory.mktemp("hardened")
    sources = {"debian": lab_image, "traps": traps_image}

    def make(variant: str = "debian", profile: str = "marketplace"):
        if (variant, profile) not in made:
            dest = directory / f"{variant}-{profile}.qcow2"
            log = directory / f"{variant}-{profile}.log"
            result = harden_copy(sources[variant], dest, profile=profile, log_path=log, user=VARIANTS[variant])
            assert result.failed == 0 and result.unreachable == 0, f"hardening {variant} failed; see {log}"
            assert result.changed > 0, f"hardening {variant} changed nothing; see {log}"
            made[variant, profile] = dest
        return made[variant, profile]

    return make
