"""The attack probe: bad input, and every vector OPEN on the vulnerable lab image from a real boot."""

from __future__ import annotations

import json
import os
import subprocess

import pytest


def run_cli(*args: str, env: dict | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(["ami-harden", *args], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ami-harden: error:") and needle in lines[0]
    assert "Traceback" not in result.stderr


def test_help_documents_the_probe():
    result = run_cli("attack", "--help")
    assert result.returncode == 0
    for word in ("--profile", "--admin-user", "--format", "Example", "OPEN"):
        assert word in result.stdout


def test_missing_image_is_one_clear_line():
    assert_one_line_error(run_cli("attack", "/nonexistent/disk.qcow2"), "does not exist")


def test_a_file_that_is_not_a_disk_image_is_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a disk\n")
    assert_one_line_error(run_cli("attack", str(notes)), "not a disk image")


def test_unknown_profile_is_refused(tmp_path):
    assert_one_line_error(run_cli("attack", str(tmp_path), "--profile", "open"), "--profile")


def test_qemu_absent_is_one_clear_line(lab_image, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("qemu-img", "python3", "genisoimage", "ssh-keygen", "e2image", "blkid", "losetup", "partx",
                 "tune2fs", "debugfs", "cp"):
        path = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if path:
            (bin_dir / tool).symlink_to(path)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.path.dirname(subprocess.sys.executable)}")
    result = subprocess.run([subprocess.sys.executable, "-m", "hardening.cli", "attack", str(lab_image)],
                            capture_output=True, text=True, env=env, timeout=600, check=False)
    assert_one_line_error(result, "qemu-system-x86_64 is missing")


@pytest.mark.vm
def test_every_vector_is_open_on_the_vulnerable_image(lab_image, no_orphan_qemu):
    result = run_cli("attack", str(lab_image), "--format", "json")
    print(result.stderr)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    verdicts = {v["vector"]: v for v in report["vectors"]}
    print(json.dumps(verdicts, indent=2))
    assert list(verdicts) == ["root-login", "sudo", "user-data", "label-boot"]
    assert all(v["status"] == "OPEN" for v in verdicts.values())
    evidence = {name: "\n".join(v["evidence"]) for name, v in verdicts.items()}
    assert "ssh root@ with the injected key: uid 0 shell" in evidence["root-login"]
    assert "amiprobe: sudo -n gives root" in evidence["sudo"]
    assert "admin: sudo -n gives root (expected: the marketplace admin)" in evidence["sudo"]
    for channel in ("script", "boothook", "bootcmd", "runcmd", "write_files"):
        assert f"{channel} ran as root" in evidence["user-data"]
    assert "root=LABEL=cloudimg-rootfs also matches the decoy" in evidence["label-boot"]
