"""Build the vulnerable lab image once per recipe and reuse it from a cache."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hardening.errors import HardeningError

RECIPE = Path(__file__).with_name("build-image.sh")
# Variant -> its admin, cloud-init's default user. The traps variant's admin is not named `admin`,
# so nothing that takes the admin's name as data can pass by assuming it.
VARIANTS = {"debian": "admin", "traps": "ec2-user"}
REQUIRED_TOOLS = ("mmdebstrap", "qemu-img", "sfdisk", "losetup", "partx", "mkfs.ext4", "blkid")


def cache_dir() -> Path:
    """Where built images live: $AMI_HARDEN_CACHE or ~/.cache/ami-harden."""
    path = Path(os.environ.get("AMI_HARDEN_CACHE", Path.home() / ".cache" / "ami-harden"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def recipe_hash(variant: str) -> str:
    """A short hash of the build script and variant: an unchanged recipe maps to the same image."""
    digest = hashlib.sha256(RECIPE.read_bytes() + f"{variant} {VARIANTS[variant]}".encode()).hexdigest()
    return digest[:12]


def image_path(variant: str = "debian") -> Path:
    """The cache path of the image a recipe builds."""
    return cache_dir() / f"lab-{variant}-{recipe_hash(variant)}.qcow2"


@contextmanager
def cache_lock() -> Iterator[None]:
    """Hold the cache's lock: what one process builds in the cache (an image, the key pair), another waits
    for (two demos, a demo and a test run)."""
    with open(cache_dir() / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_image(variant: str = "debian", rebuild: bool = False, log=None) -> Path:
    """Return the cached lab image for `variant`, building it first when missing."""
    if variant not in VARIANTS:
        raise HardeningError(f"unknown lab variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    path = image_path(variant)
    with cache_lock():
        if path.exists() and not rebuild:
            return path
        _check_build_host()
        if log:
            log(f"building lab image {path.name} (about a minute)")
        result = subprocess.run(["bash", str(RECIPE), str(path), variant, VARIANTS[variant]],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise HardeningError(f"lab image build failed:\n{tail}")
    return path


def _check_build_host() -> None:
    if os.geteuid() != 0:
        raise HardeningError("building the lab image needs root (loop devices, mount, chroot)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise HardeningError(f"building the lab image needs {', '.join(missing)}; run .ci/install first")
