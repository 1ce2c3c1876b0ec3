"""Benchmark hardening: offline on a copy of the lab image (apply twice, check), then on a fresh lab
instance (apply, a reboot so that the new kernel command line is the running one, a second apply,
which checks first and finds every control holding, and live checks).

Run as root: `python3 bench/bench_hardening.py`; results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from hardening.apply import ApplyResult, apply
from hardening.check import run_checks
from hardening.disk import overlay
from hardening.lab.image import ensure_image
from hardening.lab.vm import DEFAULT_USER, boot_instance
from hardening.target import Image

RESULTS = Path(__file__).with_name("RESULTS.md")


def outcome(result: ApplyResult) -> str:
    """Task counts, and how many controls the first check found holding (they were not applied)."""
    return (f"tasks ok={result.ok} changed={result.changed}; "
            f"{len(result.holding)} controls held at the first check and were not applied")


def offline_rows(image: Path) -> list[tuple[str, str]]:
    """Offline apply of a copy of `image`, twice, and the offline check of the result."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ami-bench-", dir="/var/tmp") as work:
        copy = overlay(image, Path(work) / "copy.qcow2")
        for label in ("offline apply of a copy of the lab image", "offline apply again"):
            started = time.monotonic()
            result = apply(Image(copy), admin_user=DEFAULT_USER)
            rows.append((label, f"{time.monotonic() - started:.0f} s; {outcome(result)}"))
        started = time.monotonic()
        report = run_checks(copy, admin_user=DEFAULT_USER)
        rows.append(("offline check of that copy", f"{time.monotonic() - started:.1f} s; passed: {report.passed}"))
    return rows


def main(checks: int = 5) -> None:
    rows = offline_rows(ensure_image())
    with boot_instance(ensure_image()) as vm:
        vm.wait_for_cloud_init()
        started = time.monotonic()
        before = run_checks(vm.target)
        rows.append(("check of the vulnerable instance (live, over SSH)",
                     f"{time.monotonic() - started:.1f} s; failing: {len(before.failing())} controls"))
        for label in ("apply, fresh instance", "apply again, after a reboot (the new command line is live)"):
            if label.startswith("apply again"):
                vm.reboot()  # LABEL-01 judges the running kernel's command line
            started = time.monotonic()
            result = apply(vm.target, admin_user=vm.target.user)
            rows.append((label, f"{time.monotonic() - started:.1f} s; {outcome(result)}"))
        times = []
        for _ in range(checks):
            started = time.monotonic()
            after = run_checks(vm.target)
            times.append(time.monotonic() - started)
        rows.append((f"check of the hardened instance ({checks} runs)",
                     f"median {statistics.median(times):.1f} s, range {min(times):.1f}-{max(times):.1f} s; "
                     f"passed: {after.passed}"))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## Hardening — {stamp}", f"Host: {os.cpu_count()} cores; target: a lab instance under QEMU TCG.",
             "", "| what | result |", "|---|---|", *(f"| {what} | {value} |" for what, value in rows)]
    with RESULTS.open("a") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
