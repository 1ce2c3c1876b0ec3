"""Disk images on the host: read their format, attach them to loop devices, mount their root
filesystem, and prepare a mounted root for commands run in it through chroot."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from hardening.errors import HardeningError

MIN_IMAGE = 1024 * 1024
BY_UUID = Path("/dev/disk/by-uuid")


def run_tool(*args: str, ok: tuple[int, ...] = (0,), context: str = "") -> str:
    """Run a system tool and return its stripped output; HardeningError (`context` first, then the tool's
    message on one line) when it exits with a code outside `ok`."""
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode not in ok:
        message = " ".join((result.stderr.strip() or result.stdout.strip()).split())
        raise HardeningError(f"{context}{args[0]} failed: {message}")
    return result.stdout.strip()


def _info(path: Path, shared: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", "info", "--output=json", *(["-U"] * shared), str(path)],
                          capture_output=True, text=True, check=False)


def is_disk_image(path: Path) -> bool:
    """True when `path` is a file qemu reads as a disk image large enough to hold a system (an image
    in use by a VM counts); small raw files such as an inventory do not."""
    if not Path(path).is_file():
        return False
    result = _info(Path(path), shared=True)
    if result.returncode != 0:
        return False
    info = json.loads(result.stdout)
    return info.get("format") != "raw" or info.get("virtual-size", 0) >= MIN_IMAGE


def image_info(path: Path) -> dict:
    """What `qemu-img info` reads of `path` (format, virtual-size, backing file ...); HardeningError if it
    is not a disk image or a running VM holds it."""
    if not path.is_file():
        raise HardeningError(f"disk image {path} does not exist")
    result = _info(path)
    if result.returncode != 0:
        if "lock" in result.stderr:
            raise HardeningError(f"{path} is in use (a running VM holds it); stop the VM first")
        raise HardeningError(f"{path} is not a disk image qemu can read")
    info = json.loads(result.stdout)
    if info.get("format") == "raw" and info.get("virtual-size", 0) < MIN_IMAGE:
        raise HardeningError(f"{path} is not a disk image (too small to hold a system)")
    return info


def image_format(path: Path) -> str:
    """The format qemu-img reads for `path` (qcow2, raw, ...); see image_info."""
    return image_info(path)["format"]


def overlay(image: Path, dest: Path) -> Path:
    """Write `dest`, a new qcow2 file backed by `image` (which it never changes), and return it."""
    image, dest = Path(image).resolve(), Path(dest)
    dest.unlink(missing_ok=True)
    run_tool("qemu-img", "create", "-q", "-f", "qcow2", "-F", image_format(image), "-b", str(image), str(dest))
    return dest


def require_system_root(root: Path, label: str | Path) -> None:
    """HardeningError unless `root` holds a system to chroot into; `label` names it in the message."""
    if not (Path(root) / "bin" / "sh").exists():
        raise HardeningError(f"{label} holds no system root (no /bin/sh)")


@contextmanager
def raw_copy(image: Path, directory: Path | str = "/var/tmp") -> Iterator[Path]:
    """A temporary raw copy of `image` (sparse) in `directory`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ami-raw-", dir=directory) as tmp:
        raw = Path(tmp) / "disk.raw"
        run_tool("qemu-img", "convert", "-O", "raw", str(image), str(raw))
        yield raw


@contextmanager
def loop_device(raw: Path) -> Iterator[str]:
    """Attach a raw disk to a loop device with its partitions (no udev needed); always detach."""
    loop = run_tool("losetup", "-P", "--find", "--show", str(raw))
    try:
        subprocess.run(["partx", "-u", loop], capture_output=True, check=False)
        yield loop
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


def _appeared(node: str) -> str:
    """`node` once the kernel has created it (partx without udev can take a moment)."""
    for _ in range(50):
        if Path(node).exists():
            return node
        time.sleep(0.1)
    raise HardeningError(f"partition {node} did not appear")


@contextmanager
def loop_partition(raw: Path, partition: int = 1) -> Iterator[str]:
    """Attach a raw disk to a loop device and yield the node of one partition."""
    with loop_device(raw) as loop:
        yield _appeared(f"{loop}p{partition}")


def _probe(node: str) -> dict[str, str] | None:
    """A filesystem read from its superblock (no udev here): NAME (the node), TYPE, UUID, LABEL and
    PARTUUID; None when `node` holds none."""
    probe = subprocess.run(["blkid", "-p", "-o", "export", node], capture_output=True, text=True, check=False)
    fields = dict(line.split("=", 1) for line in probe.stdout.splitlines() if "=" in line)
    if not fields.get("TYPE"):
        return None
    return {"NAME": node, "TYPE": fields["TYPE"], "UUID": fields.get("UUID", ""), "LABEL": fields.get("LABEL", ""),
            "PARTUUID": fields.get("PART_ENTRY_UUID", "")}


def filesystems(loop: str) -> list[dict[str, str]]:
    """The filesystems on a loop device's partitions (see _probe)."""
    out = run_tool("lsblk", "--json", "--paths", "--output", "NAME,TYPE", loop)
    parts = [device["name"] for device in json.loads(out)["blockdevices"][0].get("children", [])
             if device.get("type") == "part"]
    return [found for found in (_probe(_appeared(node)) for node in parts) if found]


def mounted_filesystems(root: Path) -> list[dict[str, str]]:
    """The filesystems mounted at `root`, `root`/boot and `root`/boot/efi (see _probe)."""
    nodes = []
    for path in (root, root / "boot", root / "boot" / "efi"):
        if path.is_dir() and os.path.ismount(path):
            nodes.append(run_tool("findmnt", "--noheadings", "--nofsroot", "--output", "SOURCE", "--mountpoint",
                                  str(path)))
    return [found for found in map(_probe, nodes) if found]


def _fstab_mounts(root: Path, devices: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(node, mount point) for /boot and /boot/efi when the image's fstab puts them on its own partitions."""
    fstab = root / "etc" / "fstab"
    lines = fstab.read_text(errors="replace").splitlines() if fstab.is_file() else []
    mounts = []
    for line in lines:
        fields = line.split()
        if len(fields) < 2 or fields[0].startswith("#") or fields[1] not in ("/boot", "/boot/efi"):
            continue
        key, _, value = fields[0].partition("=")
        node = next((d["NAME"] for d in devices if value and d.get(key) == value), None)
        if node:
            mounts.append((node, fields[1]))
    return sorted(mounts, key=lambda mount: mount[1])


def _mount(stack: ExitStack, *args: str) -> None:
    run_tool("mount", *args)
    stack.callback(subprocess.run, ["umount", args[-1]], capture_output=True, check=False)


@contextmanager
def mounted_disk(image: Path, read_only: bool = True) -> Iterator[tuple[Path, str]]:
    """Mount the Linux root of an attached raw disk (and its /boot and /boot/efi partitions) and yield
    (mount point, loop device); always unmount and detach. The root is the partition whose filesystem
    holds /etc/os-release."""
    mode = "ro" if read_only else "rw"
    with ExitStack() as stack:
        loop = stack.enter_context(loop_device(image))
        devices = filesystems(loop)
        mountpoint = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ami-root-")))
        for device in devices:
            if device["TYPE"] not in ("ext4", "ext3", "ext2", "xfs", "btrfs"):
                continue
            with ExitStack() as probe:
                _mount(probe, "-o", "ro", device["NAME"], str(mountpoint))
                is_root = (mountpoint / "etc" / "os-release").exists() or (mountpoint / "usr/lib/os-release").exists()
            if is_root:
                _mount(stack, "-o", mode, device["NAME"], str(mountpoint))
                for node, path in _fstab_mounts(mountpoint, devices):
                    _mount(stack, "-o", mode, node, str(mountpoint / path.lstrip("/")))
                yield mountpoint, loop
                return
        raise HardeningError(f"{image}: no partition holds a Linux root filesystem (with /etc/os-release)")


@contextmanager
def mounted_root(image: Path, read_only: bool = True) -> Iterator[Path]:
    """Mount the root filesystem of a disk image and yield its mount point; always unmount and detach.

    A qcow2 image is converted to a temporary raw copy first, so a writable mount never changes
    the original; a raw image is mounted in place.
    """
    image = Path(image)
    with ExitStack() as stack:
        raw = image if image_format(image) == "raw" else stack.enter_context(raw_copy(image))
        root, _ = stack.enter_context(mounted_disk(raw, read_only))
        yield root


@dataclass
class MountedRoot:
    """A root filesystem mounted for changes: its mount point, the loop device of its disk (None for a
    directory given as it is), and whether the changes are to be kept."""

    root: Path
    loop: str | None = None
    keep: bool = True


@contextmanager
def changed_image(image: Path) -> Iterator[MountedRoot]:
    """Mount a writable copy of `image`'s root; when the block ends without an error and `keep` is still
    true, the copy replaces `image` (a qcow2 keeps its backing file). An error, Ctrl-C or `keep=False`
    leaves `image` exactly as it was."""
    image = Path(image).resolve()
    info = image_info(image)
    fmt, backing = info["format"], info.get("full-backing-filename")
    with raw_copy(image, directory=image.parent) as raw:
        with mounted_disk(raw, read_only=False) as (root, loop):
            mounted = MountedRoot(root, loop)
            yield mounted
        if not mounted.keep:
            return
        if fmt == "raw":
            os.replace(raw, image)
            return
        written = raw.with_name("disk.qcow2")
        command = ["qemu-img", "convert", "-O", "qcow2"]
        if backing:
            command += ["-B", backing, "-F", image_format(Path(backing))]
        run_tool(*command, str(raw), str(written))
        os.replace(written, image)


@contextmanager
def chroot_environment(root: Path, devices: list[dict[str, str]] | None = None) -> Iterator[None]:
    """Bind the host's /dev, /dev/pts, /proc and /sys into `root` and give it an empty /run, as a booted
    system has them (those already mounted, as Packer's amazon-chroot builder mounts them, are left
    alone); always unmount. Given the image's `devices`, /dev/disk/by-uuid in the chroot is its own
    tmpfs holding their links, as udev would make them (grub-mkconfig boots by UUID only when the
    link exists): two images with the same UUID hardened side by side never see each other's."""
    with ExitStack() as stack:
        if devices is not None:
            BY_UUID.mkdir(parents=True, exist_ok=True)
        for name in ("dev", "dev/pts", "proc", "sys"):
            path = root / name
            if path.is_dir() and not os.path.ismount(path):
                _mount(stack, "--bind", f"/{name}", str(path))
                run_tool("mount", "--make-private", str(path))  # nothing mounted below it reaches the host
        run = root / "run"
        if run.is_dir() and not os.path.ismount(run):
            _mount(stack, "-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "ami-harden-run", str(run))
        if devices is not None:
            links = root / str(BY_UUID).lstrip("/")
            _mount(stack, "-t", "tmpfs", "-o", "mode=0755", "ami-harden-by-uuid", str(links))
            for device in devices:
                if device["UUID"]:
                    (links / device["UUID"]).symlink_to(device["NAME"])
        yield


@contextmanager
def chroot_root(path: Path) -> Iterator[MountedRoot]:
    """A root ready for chroot, with by-UUID links for its filesystems: a directory as it is, or a disk
    image's root mounted from a writable copy (see changed_image); everything undone afterwards."""
    path = Path(path)
    if path.is_dir():
        require_system_root(path, path)
        with chroot_environment(path, mounted_filesystems(path)):
            yield MountedRoot(path)
        return
    with changed_image(path) as mounted, chroot_environment(mounted.root, filesystems(mounted.loop)):
        yield mounted
