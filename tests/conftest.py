"""Shared fixtures: the lab images, built once per run from the recipe cache."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest

from hardening.lab.image import VARIANTS, ensure_image


@pytest.fixture(scope="session")
def lab_image():
    """The vulnerable Debian 12 lab image (qcow2)."""
    return ensure_image("debian")


@pytest.fixture(scope="session")
def traps_image():
    """The lab image with leftovers that override by drop-in order, a waiting boot menu and admin `ec2-user`."""
    return ensure_image("traps")


LAB_INSTANCE_ID = "i-0abcdef1234567890"
LAB_USER_DATA = "#cloud-config\nbootcmd: [touch /run/from-imds]\n"


@pytest.fixture(scope="session")
def lab_instance(lab_image, tmp_path_factory):
    """The lab image booted once as a new instance (instance id LAB_INSTANCE_ID, user-data LAB_USER_DATA,
    QEMU's files beside `vm.console_log`) for the tests that only read it: a boot costs a minute or more under TCG.
    A test must leave it as it found it."""
    from hardening.lab.vm import boot_instance

    workdir = tmp_path_factory.mktemp("lab-instance")
    with boot_instance(lab_image, workdir=workdir, user_data=LAB_USER_DATA, instance_id=LAB_INSTANCE_ID) as vm:
        vm.wait_for_cloud_init()
        yield vm


# The OASIS standard's SARIF 2.1.0 schema (errata 01), from github.com/oasis-tcs/sarif-spec, sarif-2.1/schema/.
SARIF_SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())


def valid_sarif(text: str) -> dict:
    """`text` parsed, after validating it against the SARIF 2.1.0 schema."""
    data = json.loads(text)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(data)
    return data


def run_ok(vm, command: str) -> str:
    """`command`'s output on the lab instance `vm`, as the default user; it must exit 0."""
    rc, out, err = vm.run(command, timeout=300)
    assert rc == 0, out + err
    return out


def changed_tasks(lines: list[str]) -> list[str]:
    """The tasks that reported `changed` in ansible-playbook's output (ok and skipped hosts are hidden)."""
    tasks, task = [], ""
    for line in lines:
        if match := re.match(r"^TASK \[(.+)\] \**$", line):
            task = match[1]
        elif line.startswith("changed:") and task not in tasks:
            tasks.append(task)
    return tasks


def assert_one_line_error(run: subprocess.CompletedProcess, expected: str) -> None:
    """`run` refused its input as the CLI promises: exit 2 and one line naming `expected`, no traceback."""
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ami-harden: error: "), run.stderr
    assert expected in lines[0]
    assert "Traceback" not in run.stdout + run.stderr


def qemu_processes() -> set[str]:
    """PIDs of running qemu-system processes."""
    result = subprocess.run(["pgrep", "-f", "qemu-system-x86_64"], capture_output=True, text=True, check=False)
    return set(result.stdout.split())


@pytest.fixture
def no_orphan_qemu():
    """Fail the test when a qemu process it started outlives it."""
    before = qemu_processes()
    yield
    left = qemu_processes() - before
    assert not left, f"qemu processes left running: {sorted(left)}"


@pytest.fixture(scope="session")
def demo(tmp_path_factory, traps_image):
    """One run of `ami-harden demo --variant traps`, as a user runs it: attack the traps image, harden a copy
    over SSH (marketplace), attack the copy. Its hardened copy serves the session's other tests."""
    workdir = tmp_path_factory.mktemp("demo")
    result = subprocess.run(["ami-harden", "demo", "--variant", "traps", "--workdir", str(workdir)],
                            capture_output=True, text=True, timeout=3600, check=False)
    print(result.stderr)
    print(result.stdout)
    return result, workdir


@pytest.fixture(scope="session")
def hardened_image(request, tmp_path_factory, lab_image, traps_image):
    """A factory of hardened copies of the lab images, one per (variant, profile, offline), kept for the
    session: offline ones through `apply IMAGE` (chroot, needs root), the others over SSH on a booted
    copy; the traps image's marketplace copy over SSH is the demo's."""
    from hardening.apply import apply
    from hardening.disk import overlay
    from hardening.lab.hardened import harden_copy
    from hardening.target import Image

    made = {}
    directory = tmp_path_factory.mktemp("hardened")
    sources = {"debian": lab_image, "traps": traps_image}

    def make(variant: str = "debian", profile: str = "marketplace", offline: bool = False):
        key = (variant, profile, offline)
        if key == ("traps", "marketplace", False) and key not in made:
            result, workdir = request.getfixturevalue("demo")
            made[key] = workdir / "hardened-marketplace.qcow2"
            log = workdir / "apply.log"
            assert made[key].is_file(), f"the demo made no hardened copy; see {log}\n{result.stderr}"
            assert "failed=0" in log.read_text(), f"hardening traps failed; see {log}"
        if key not in made:
            name = f"{variant}-{profile}{'-offline' * offline}"
            dest, log = directory / f"{name}.qcow2", directory / f"{name}.log"
            if offline:
                result = apply(Image(overlay(sources[variant], dest)), profile=profile, admin_user=VARIANTS[variant],
                               log_path=log, sealed_confirmed=profile == "sealed")
            else:
                result = harden_copy(sources[variant], dest, profile=profile, log_path=log, user=VARIANTS[variant])
            assert result.failed == 0 and result.unreachable == 0, f"hardening {variant} failed; see {log}"
            assert result.changed > 0, f"hardening {variant} changed nothing; see {log}"
            made[key] = dest
        return made[key]

    return make
