"""Benchmark the lab: image build (cold and cached), boot to SSH, and one attack probe.

Run as root: `python3 bench/bench_lab.py`; results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from hardening.attack.probe import attack
from hardening.lab import image as lab_image
from hardening.lab.vm import boot_instance

RESULTS = Path(__file__).with_name("RESULTS.md")


def timed(action) -> tuple[float, object]:
    started = time.monotonic()
    value = action()
    return time.monotonic() - started, value


def main(boots: int = 3) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ami-bench-") as cache:
        os.environ["AMI_HARDEN_CACHE"] = cache
        cold, image = timed(lab_image.ensure_image)
        cached, _ = timed(lab_image.ensure_image)
        rows += [("image build, cold", f"{cold:.1f} s"), ("image build, cached", f"{cached * 1000:.0f} ms"),
                 ("image size (qcow2)", f"{image.stat().st_size / 2**20:.0f} MiB")]
        to_ssh = []
        for _ in range(boots):
            started = time.monotonic()
            with boot_instance(image):
                to_ssh.append(time.monotonic() - started)
        rows.append((f"boot to SSH as a new instance ({boots} boots)",
                     f"median {statistics.median(to_ssh):.1f} s, range {min(to_ssh):.1f}-{max(to_ssh):.1f} s"))
        probe, report = timed(lambda: attack(image))
        rows.append(("attack probe (2 boots), vulnerable image",
                     f"{probe:.1f} s; " + ", ".join(f"{v.vector} {v.status}" for v in report.vectors)))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## Lab — {stamp}", f"Host: {os.cpu_count()} cores, {platform.machine()}, QEMU TCG, "
             "`-machine pc -smp 2 -m 1024`, virtio disk and NIC.", "", "| what | result |", "|---|---|"]
    lines += [f"| {what} | {value} |" for what, value in rows]
    with RESULTS.open("a") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
