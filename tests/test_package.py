"""The package as a user installs it: a wheel built from the checkout, installed with its dependencies
into a fresh virtual environment outside the checkout, carries the playbooks, checks and Packer
templates, and its CLI works from there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str | Path, cwd: Path, codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=cwd,
                            env=env, timeout=600, check=False)
    assert result.returncode in codes, f"{command}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment holding the wheel of this checkout (built from a copy of its files)."""
    work = tmp_path_factory.mktemp("package")
    source = work / "source"
    files = subprocess.run(["git", "ls-files", "-z"], capture_output=True, cwd=ROOT, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist", source, cwd=work)
    wheel = next((work / "dist").glob("ami_hardening-*.whl"))
    run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    run(work / "venv" / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel,
        cwd=work)
    return work / "venv"


def test_the_wheel_carries_what_the_cli_reads(venv, tmp_path):
    where = run(venv / "bin" / "python", "-c", "import json, hardening.apply as a, hardening.check as c, "
                "hardening.packer as p; print(json.dumps([str(a.PLAYBOOKS), str(c.CHECKS_DIR), str(p.TEMPLATE_DIR)]))",
                cwd=tmp_path)
    paths = [Path(path) for path in json.loads(where.stdout)]
    assert all(venv in path.parents and "_shipped" in path.parts for path in paths), paths
    assert (paths[0] / "harden.yml").is_file() and (paths[1] / "conftest.py").is_file()
    assert (paths[2] / "sources.pkr.hcl").is_file() or any(paths[2].glob("*.pkr.hcl"))
    listed = run(venv / "bin" / "ami-harden", "controls", "--format", "json", cwd=tmp_path)
    assert len(json.loads(listed.stdout)) == len(json.loads(run(sys.executable, "-m", "hardening.cli", "controls",
                                                                "--format", "json", cwd=ROOT).stdout))


@pytest.mark.vm
@pytest.mark.skipif(os.geteuid() != 0, reason="an offline check chroots into the image and needs root")
def test_the_installed_cli_checks_an_image_file(venv, lab_image, tmp_path):
    result = run(venv / "bin" / "ami-harden", "check", lab_image, "--admin-user", "admin", "--format", "json",
                 cwd=tmp_path, codes=(1,))
    statuses = {row["control"]: row["status"] for row in json.loads(result.stdout)["results"]}
    assert statuses["ROOT-01"] == "fail" and statuses["SUDO-05"] == "pass"
