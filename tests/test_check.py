"""`ami-harden check`: bad input, the lab image offline (chroot) and a booted lab instance over SSH."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xmlschema
from conftest import valid_sarif

from hardening import catalog
from hardening.check import CHECKS_DIR
from hardening.disk import mounted_root
from hardening.lab.image import VARIANTS

XSD = Path(__file__).parent / "data" / "junit-jenkins.xsd"
# What the vulnerable lab image (Debian's cloud defaults, root found by LABEL) fails and passes.
LAB_FAILS = {"ROOT-01", "ROOT-02", "ROOT-06", "ROOT-08", "ROOT-09", "ROOT-11", "SUDO-02", "USER-01", "USER-02",
             "USER-03", "USER-04", "USER-06", "LABEL-01", "LABEL-02", "LABEL-03", "LABEL-04"}
LAB_PASSES = {"ROOT-03", "ROOT-04", "ROOT-05", "ROOT-07", "ROOT-10", "SUDO-01", "SUDO-03", "SUDO-04",
              "SUDO-05", "SUDO-06", "USER-05"}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="offline checks chroot into the image and need root")


def check(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `ami-harden check ARGS` as a user would."""
    return subprocess.run([sys.executable, "-m", "hardening.cli", "check", *args],
                          capture_output=True, text=True, timeout=timeout)


def verdicts(result: subprocess.CompletedProcess) -> dict[str, dict]:
    return {row["control"]: row for row in json.loads(result.stdout)["results"]}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
def test_every_control_has_exactly_one_check():
    marked: dict[str, list[str]] = {}
    for path in sorted(CHECKS_DIR.glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"checks_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, function in vars(module).items():
            if name.startswith("test_"):
                ids = [mark.args[0] for mark in getattr(function, "pytestmark", []) if mark.name == "control"]
                assert ids, f"{path.name}::{name} has no control marker"
                for control in ids:
                    marked.setdefault(control, []).append(f"{path.name}::{name}")
    assert sorted(marked) == sorted(control.id for control in catalog.controls())
    assert all(len(tests) == 1 for tests in marked.values()), marked


@pytest.mark.parametrize(("args", "expected"), [
    (["/nonexistent/root"], "neither ssh://USER@HOST:PORT nor an existing directory or image file"),
    (["ssh://admin@127.0.0.1:1", "--key", "{key}"], "host unreachable"),
    (["ssh://admin@127.0.0.1:2222", "--key", "/nonexistent/key"], "does not exist"),
    (["ssh://admin@127.0.0.1:2222", "--key", "{tmp}/not-an-image"], "is not a private key"),
    (["{tmp}", "--admin-user", "admin"], "holds no system root"),
    (["{tmp}"], "--admin-user is required"),
    (["{tmp}/not-an-image", "--admin-user", "admin"], "not a disk image"),
    (["{tmp}", "--admin-user", "admin", "--only", "ROOT-99"], "unknown control id"),
    (["{tmp}", "--admin-user", "admin", "--only", "ROOT-01", "--skip", "ROOT-01"], "named by both --only and --skip"),
    (["{tmp}", "--profile", "loose"], "loose"),
])
@needs_root
def test_bad_input_exits_2_with_one_line(tmp_path, args, expected):
    (tmp_path / "not-an-image").write_text("hello\n")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    args = [arg.format(tmp=tmp_path, key=tmp_path / "key") for arg in args]
    result = check(*args, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


@needs_root
def test_every_control_gets_a_verdict_and_evidence():
    """The whole path (pytest, collector, report) on this machine's own root, read through chroot."""
    from hardening.check import run_checks

    report = run_checks("/", profile="sealed")
    assert [result.control for result in report.results] == [control.id for control in catalog.controls()]
    assert all(result.status in ("pass", "fail", "skipped") and result.evidence for result in report.results)
    assert report.os != "unknown" and report.checked_at.endswith("Z")
    only = run_checks("/", profile="sealed", controls=["label-02", "ROOT-03"])
    assert [result.control for result in only.results] == ["ROOT-03", "LABEL-02"]
    rest = run_checks("/", profile="sealed", skip=["root-03", "LABEL-02"])
    assert [result.control for result in rest.results] == [
        control.id for control in catalog.controls() if control.id not in ("ROOT-03", "LABEL-02")]


@pytest.mark.vm
@needs_root
def test_offline_check_of_the_lab_image(lab_image, tmp_path):
    started = time.monotonic()
    result = check(str(lab_image), "--admin-user", "admin", "--format", "json")
    print(f"offline check of {lab_image}: {time.monotonic() - started:.1f} s")
    assert result.returncode == 1, result.stderr
    found = verdicts(result)
    assert {c for c, row in found.items() if row["status"] == "fail"} == LAB_FAILS
    assert {c for c, row in found.items() if row["status"] == "pass"} == LAB_PASSES
    assert "root=LABEL=cloudimg-rootfs" in found["LABEL-01"]["evidence"]
    assert "offline" in found["LABEL-01"]["evidence"]
    assert "search --no-floppy --fs-uuid" in found["LABEL-04"]["evidence"]

    sarif = check(str(lab_image), "--admin-user", "admin", "--format", "sarif", "--only", "ROOT-01",
                  "--only", "SUDO-05")
    assert sarif.returncode == 1, sarif.stderr
    results = valid_sarif(sarif.stdout)["runs"][0]["results"]
    assert {r["ruleId"]: r["kind"] for r in results} == {"ROOT-01": "fail", "SUDO-05": "pass"}

    # --report: the JSON report beside the table, as the Packer build's verification writes it.
    table = check(str(lab_image), "--admin-user", "admin", "--only", "ROOT-01", "--report", str(tmp_path / "r.json"))
    assert table.returncode == 1 and "ROOT-01" in table.stdout and "FAIL" in table.stdout, table.stdout
    assert [(r["control"], r["status"]) for r in json.loads((tmp_path / "r.json").read_text())["results"]] == [
        ("ROOT-01", "fail")]


@pytest.mark.vm
@needs_root
def test_offline_check_of_the_traps_image_names_the_culprits(traps_image):
    result = check(str(traps_image), "--admin-user", "ec2-user", "--format", "json",
                   "--only", "ROOT-01", "--only", "ROOT-06", "--only", "SUDO-03", "--profile", "marketplace")
    found = verdicts(result)
    assert list(found) == ["ROOT-01", "ROOT-06", "SUDO-03"]
    assert found["ROOT-01"]["status"] == "fail"
    assert "permitrootlogin yes (set by /etc/ssh/sshd_config.d/00-access.conf:1)" in found["ROOT-01"]["evidence"]
    assert found["ROOT-06"]["status"] == "fail" and "--autologin root" in found["ROOT-06"]["evidence"]
    assert found["SUDO-03"]["status"] == "pass"
    sealed = verdicts(check(str(traps_image), "--profile", "sealed", "--format", "json", "--only", "SUDO-03",
                            "--only", "SUDO-02"))
    assert sealed["SUDO-03"]["status"] == "fail" and "%sudo" in sealed["SUDO-03"]["evidence"]
    assert sealed["SUDO-02"]["status"] == "skipped"


@pytest.mark.vm
@needs_root
def test_own_cloud_init_merge_matches_cloud_init(traps_image):
    """The checks merge /etc/cloud on the host; cloud-init's own fetch_base_config must agree."""
    from hardening.facts import Facts, gather_script

    keys = ("allow_userdata", "disable_root", "ssh_pwauth", "system_info", "users", "vendor_data",
            "datasource_list", "cloud_init_modules", "cloud_config_modules", "cloud_final_modules")
    script = ("DEBUG_PROC_CMDLINE= python3 -c 'import json; from cloudinit.stages import fetch_base_config; "
              "print(json.dumps(fetch_base_config()))'")
    with mounted_root(traps_image) as root:
        theirs = json.loads(subprocess.run(["chroot", str(root), "/bin/sh", "-c", script], capture_output=True,
                                           text=True, check=True).stdout.splitlines()[-1])
        gathered = subprocess.run(["chroot", str(root), "/bin/sh", "-c", gather_script(True, "admin")],
                                  capture_output=True, text=True, check=True).stdout
    ours = Facts.from_output(gathered, offline=True, admin_user="admin").cloud
    ours["system_info"] = ours["system_info"]["default_user"]
    theirs["system_info"] = theirs["system_info"]["default_user"]
    # cloud-init's own merge adds its built-in defaults (vendor_data's prefix): compare what the files set.
    theirs = {key: {part: value.get(part) for part in ours[key]} if isinstance(ours.get(key), dict)
              and isinstance(value, dict) and key != "system_info" else value for key, value in theirs.items()}
    assert {key: ours.get(key) for key in keys if key in ours} == {key: theirs.get(key) for key in keys if key in ours}
    assert {"datasource_list", "cloud_final_modules", "system_info"} <= set(ours)


@pytest.mark.vm
def test_live_check_of_a_lab_instance(lab_instance, tmp_path):
    target, key = lab_instance.target.url, str(lab_instance.target.key)
    started = time.monotonic()
    result = check(target, "--key", key)
    elapsed = time.monotonic() - started
    print(f"live check of {target}: {elapsed:.1f} s")
    assert result.returncode == 1, result.stderr
    failing = {line.split()[0] for line in result.stdout.splitlines() if line[:1].isupper() and " FAIL " in line}
    assert failing == LAB_FAILS

    report = tmp_path / "report.xml"
    result = check(target, "--key", key, "--only", "ROOT-01", "--only", "ROOT-04", "--format", "junit",
                   "--output", str(report))
    assert result.returncode == 1 and "failing: ROOT-01" in result.stderr
    xmlschema.XMLSchema(XSD).validate(report.read_text())

    found = verdicts(check(target, "--key", key, "--format", "json", "--only", "LABEL-01", "--only", "ROOT-04"))
    assert "/proc/cmdline: root=LABEL=cloudimg-rootfs" in found["LABEL-01"]["evidence"]
    assert found["ROOT-04"]["status"] == "pass" and "forced command" in found["ROOT-04"]["evidence"]

    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    refused = check(target, "--key", str(other_key), timeout=120)
    assert refused.returncode == 2 and "SSH login refused" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.vm
@needs_root
@pytest.mark.parametrize("profile", ["marketplace", "sealed"])
def test_hardened_image_passes_every_control(hardened_image, profile):
    image = hardened_image("traps", profile, offline=profile == "sealed")
    args = ["--admin-user", VARIANTS["traps"]]
    result = check(str(image), "--profile", profile, "--format", "json", *args)
    found = verdicts(result)
    failing = {control: row["evidence"] for control, row in found.items() if row["status"] not in ("pass", "skipped")}
    assert not failing, failing
    assert result.returncode == 0
