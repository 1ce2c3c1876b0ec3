"""`ami-harden demo --variant traps` end to end (the session's `demo` fixture), as a user runs it: every
vector OPEN on the traps image, then every vector CLOSED on its hardened copy, admin `ec2-user`."""

from __future__ import annotations

import json
import re

import pytest

from hardening.catalog import VECTORS


def evidence(workdir, name: str) -> dict[str, str]:
    report = json.loads((workdir / f"attack-{name}.json").read_text())
    assert tuple(v["vector"] for v in report["vectors"]) == VECTORS
    return {v["vector"]: (v["status"], "\n".join(v["evidence"])) for v in report["vectors"]}


@pytest.mark.vm
def test_demo_ends_with_every_vector_open_then_closed(demo):
    result, workdir = demo
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in ([v] for v in VECTORS)]
    assert rows == [[vector, "OPEN", "CLOSED"] for vector in VECTORS], result.stdout
    named = dict(re.findall(r"^([a-zA-Z ]+):\s+(.+)$", result.stdout, re.MULTILINE))
    assert named["HTML report"] == str(workdir / "report.html") and (workdir / "report.html").stat().st_size
    assert named["apply log"] == str(workdir / "apply.log") and "PLAY RECAP" in (workdir / "apply.log").read_text()
    for when in ("before", "after"):
        assert (workdir / f"consoles-{when}" / "boot1-console.log").stat().st_size > 0


@pytest.mark.vm
def test_demo_shows_progress_instead_of_silence(demo):
    result, _ = demo
    stages = re.findall(r"^\[\s*\d+s\] ([a-z ]+): ", result.stderr, re.MULTILINE)
    assert list(dict.fromkeys(stages)) == ["lab image", "attack before", "apply", "attack after"]
    assert re.search(r"still working \(\d+ s in stage\); waiting for: ", result.stderr)


@pytest.mark.vm
def test_demo_evidence_before_proves_each_vector_open(demo):
    found = evidence(demo[1], "before")
    assert all(status == "OPEN" for status, _ in found.values())
    assert "ssh root@ with the injected key: uid 0 shell" in found["root-login"][1]
    assert "amiprobe: sudo -n gives root" in found["sudo"][1]
    assert "ec2-user: sudo -n gives root (expected: the marketplace admin)" in found["sudo"][1]
    # The traps image's polkit rule answers YES to the adm group, the default user's.
    for tool in ("systemd-run", "pkexec"):
        assert f"ec2-user: {tool} through polkit gives root (expected: the marketplace admin)" in found["sudo"][1]
    assert "boot menu: GRUB command line opened without a superuser; `linux ... init=/bin/sh` gave a uid-0 shell" \
        in found["root-login"][1]
    assert "initramfs: root not found; it opened a shell on the serial console that answered as uid 0" \
        in found["root-login"][1]
    # The traps image's drop-in sets sulogin's force switch; the probe's command line sets it as well.
    assert "a uid-0 shell on the serial console without a password" in found["root-login"][1]
    for channel in ("script", "boothook", "bootcmd", "runcmd", "write_files"):
        assert f"{channel} ran as root" in found["user-data"][1]
    # The traps image lists ConfigDrive first: the buyer's volume passes for the datasource.
    assert "the volume labelled config-2 was read as the datasource: it left volume-config-2 as root" \
        in found["user-data"][1]
    assert "cloud-init took the instance's metadata from DataSourceConfigDrive" in found["user-data"][1]
    assert "root=LABEL=cloudimg-rootfs also matches the decoy" in found["label-boot"][1]


@pytest.mark.vm
def test_demo_evidence_after_proves_each_vector_closed(demo):
    found = evidence(demo[1], "after")
    assert all(status == "CLOSED" for status, _ in found.values()), found
    assert "ec2-user: sudo -n gives root (expected: the marketplace admin)" in found["sudo"][1]
    assert "ec2-user: systemd-run refused" in found["sudo"][1]
    assert "ec2-user: pkexec refused" in found["sudo"][1]
    assert "boot menu: " in found["root-login"][1]
    assert "initramfs: root not found; it rebooted instead of opening a shell" in found["root-login"][1]
    assert "emergency mode (systemd.unit=emergency.target systemd.setenv=SYSTEMD_SULOGIN_FORCE=1): sulogin refused" \
        in found["root-login"][1]
    assert "refused to boot" in found["label-boot"][1]
    assert "no user-data channel ran" in found["user-data"][1]
    # The metadata service answered (the Ec2 datasource found it) and the attached volumes were ignored.
    assert "cloud-init used DataSourceEc2Local; the volumes labelled config-2 and cidata were not read" \
        in found["user-data"][1]
