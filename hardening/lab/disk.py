"""Loop-mount the root filesystem of a disk image (qcow2 or raw) on the host."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from hardening.errors import HardeningError


def run_tool(*args: str, ok: tuple[int, ...] = (0,), context: str = "") -> str:
    """Run a system tool and return its stripped output; HardeningError (`context` first, then the tool's
    message on one line) when it exits with a code outside `ok`."""
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode not in ok:
        message = " ".join((result.stderr.strip() or result.stdout.strip()).split())
        raise HardeningError(f"{context}{args[0]} failed: {message}")
    return result.stdout.strip()


def image_format(path: Path) -> str:
    """The format qemu-img reads for `path` (qcow2, raw, ...); HardeningError if not a disk image."""
    if not path.is_file():
        raise HardeningError(f"disk image {path} does not exist")
    result = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise HardeningError(f"{path} is not a disk image qemu can read")
    import json

    info = json.loads(result.stdout)
    if info.get("format") == "raw" and info.get("virtual-size", 0) < 1024 * 1024:
        raise HardeningError(f"{path} is not a disk image (too small to hold a system)")
    return info["format"]


@contextmanager
def raw_copy(image: Path) -> Iterator[Path]:
    """A temporary raw copy of `image` (sparse), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ami-raw-", dir="/var/tmp") as tmp:
        raw = Path(tmp) / "disk.raw"
        run_tool("qemu-img", "convert", "-O", "raw", str(image), str(raw))
        yield raw


@contextmanager
def loop_partition(raw: Path, partition: int = 1) -> Iterator[str]:
    """Attach a raw disk to a loop device and yield the node of one partition (no udev needed)."""
    loop = run_tool("losetup", "-P", "--find", "--show", str(raw))
    try:
        node = f"{loop}p{partition}"
        subprocess.run(["partx", "-u", loop], capture_output=True, check=False)
        for _ in range(50):
            if Path(node).exists():
                break
            time.sleep(0.1)
        else:
            raise HardeningError(f"{raw}: partition {partition} did not appear as {node}")
        yield node
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


@contextmanager
def mounted_root(image: Path, read_only: bool = True) -> Iterator[Path]:
    """Mount partition 1 of a disk image and yield its mount point; always unmount and detach.

    A qcow2 image is converted to a temporary raw copy first, so a writable mount never changes
    the original; a raw image is mounted in place.
    """
    image = Path(image)
    with ExitStack() as stack:
        raw = image if image_format(image) == "raw" else stack.enter_context(raw_copy(image))
        node = stack.enter_context(loop_partition(raw))
        mountpoint = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ami-root-")))
        run_tool("mount", "-o", "ro" if read_only else "rw", node, str(mountpoint))
        stack.callback(subprocess.run, ["umount", str(mountpoint)], capture_output=True, check=False)
        yield mountpoint
