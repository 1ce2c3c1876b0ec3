"""Derived lab images: boot a copy-on-write copy, change it over SSH, power off, keep the disk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hardening.apply import ApplyResult, apply
from hardening.disk import overlay
from hardening.lab.vm import DEFAULT_USER, Instance, boot_instance


@contextmanager
def writable_copy(image: Path, dest: Path, user: str = DEFAULT_USER) -> Iterator[Instance]:
    """Boot `dest`, a new qcow2 overlay of `image`, as a new instance logged into as `user` (the image's
    default user); power it off cleanly at the end.

    `image` itself is never modified; `dest` keeps what was done inside the block.
    """
    dest = overlay(image, dest)
    with boot_instance(dest, overlay=False, user=user) as vm:
        vm.wait_for_cloud_init()
        yield vm
        vm.shutdown()


def harden_copy(image: Path, dest: Path, profile: str = "marketplace", log_path: Path | None = None,
                progress: Callable[[str], None] | None = None, extra_vars: dict | None = None,
                user: str = DEFAULT_USER) -> ApplyResult:
    """Write `dest`, a copy of `image` hardened with `profile` through `apply` over SSH as its admin `user`."""
    with writable_copy(image, dest, user) as vm:
        return apply(vm.target, profile=profile, admin_user=vm.target.user, log_path=log_path,
                     sealed_confirmed=profile == "sealed", progress=progress, extra_vars=extra_vars)
