"""The attack probe's command line: help and bad input (the demo test runs it on real boots)."""

from __future__ import annotations

import os
import subprocess


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
