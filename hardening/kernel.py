"""The kernel command line as the kernel reads it."""

from __future__ import annotations

import re

_ROOT = re.compile(r"(?:^|\s)root=(\S+)")


def root_argument(cmdline: str) -> str | None:
    """The value of the last `root=` argument, the one the kernel uses; None when there is none."""
    found = _ROOT.findall(cmdline)
    return found[-1] if found else None
