"""The Packer template with the installed Packer, and the local QEMU build of the lab image end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from hardening import ami_template, packer
from hardening.apply import PLAYBOOKS
from hardening.catalog import control
from hardening.check import CheckReport, ControlResult
from hardening.errors import HardeningError
from hardening.lab.vm import boot_instance
from hardening.report import render
from hardening.seed import seed_files

POWEROFF_TRIGGER = "/dev/shm/ami-hardening-poweroff"  # local.poweroff_trigger in packer/locals.pkr.hcl


def run_packer(*args: str, cwd) -> subprocess.CompletedProcess:
    env = os.environ | packer.PACKER_ENV
    return subprocess.run(["packer", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
                          check=False)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hardening.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def version():
    return packer.packer_version()


@pytest.fixture
def staged(tmp_path, version):
    """The template as the local build stages it for the installed Packer."""
    return packer.stage_template(tmp_path / "template", version)


@pytest.fixture
def qemu_vars(tmp_path):
    """-var arguments for validating the qemu source against files that exist."""
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    key, public = packer.make_build_key(tmp_path)
    seed = seed_files(tmp_path / "seed", public, "ami-build")
    values = {"base_image": str(base), "ssh_private_key_file": str(key), "seed_files": [str(p) for p in seed],
              "output_directory": str(tmp_path / "out"), "playbook_dir": str(PLAYBOOKS)}
    return [arg for name, value in values.items()
            for arg in ("-var", f"{name}={value if isinstance(value, str) else json.dumps(value)}")]


def test_template_is_formatted(version):
    recursive = ["-recursive"] if version >= (1, 7) else []
    result = run_packer("fmt", "-check", *recursive, str(packer.TEMPLATE_DIR), cwd=packer.REPO)
    assert result.returncode == 0, f"files packer fmt would rewrite:\n{result.stdout}{result.stderr}"


def test_staging_leaves_out_the_plugin_block_only_for_packer_1_6(tmp_path):
    old = {p.name for p in packer.stage_template(tmp_path / "old", (1, 6, 6)).iterdir()}
    new = {p.name for p in packer.stage_template(tmp_path / "new", (1, 11, 2)).iterdir()}
    assert packer.PLUGINS_FILE not in old
    assert new == old | {packer.PLUGINS_FILE}
    assert {"build.pkr.hcl", "sources.pkr.hcl", "variables.pkr.hcl", "scripts"} <= old


def test_qemu_source_validates(staged, qemu_vars, tmp_path):
    result = run_packer("validate", "-only=qemu.hardened", *qemu_vars, str(staged), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("builder", list(ami_template.ARGUMENTS_OF))
def test_packer_1_6_lacks_exactly_the_arguments_the_validation_cuts(staged, tmp_path, version, builder):
    """Uncut, Packer 1.6 rejects the amazon plugin's newer arguments and nothing else."""
    if version >= (1, 7):
        pytest.skip("Packer >= 1.7 validates the whole template")
    result = run_packer("validate", f"-only={ami_template.SOURCE_OF[builder]}", "-var",
                        f"playbook_dir={PLAYBOOKS}", str(staged), cwd=tmp_path)
    output = result.stdout + result.stderr
    rejected = set(re.findall(r'(?:argument named|Blocks of type) "(\w+)"', output))
    assert rejected == set(ami_template.ARGUMENTS_OF[builder]) and output.count("Error:") == len(rejected), output


@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
@pytest.mark.parametrize("base_os", ["debian-12", "ubuntu-22.04", "ubuntu-24.04", "al2023"])
def test_amazon_source_validates_offline(base_os, architecture):
    """`ami-harden build validate`, as README tells a seller, with no AWS credentials."""
    result = run_cli("build", "validate", "--var-file", str(packer.TEMPLATE_DIR / "example.pkrvars.hcl"),
                     "--var", f"base_os={base_os}", "--var", f"architecture={architecture}",
                     "--var", 'ami_org_arns=["arn:aws:organizations::123456789012:organization/o-abcdefghij"]',
                     "--var", "admin_user=")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("amazon-ebs.hardened: valid (packer ")
    assert "\noffline.amazon-chroot.hardened: valid (packer " in result.stdout


def test_validation_finds_ansible_beside_python_when_path_lacks_it():
    """A virtual-environment install puts only ami-harden on PATH; ansible-playbook sits beside its Python."""
    env = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    result = subprocess.run([sys.executable, "-m", "hardening.cli", "build", "validate"], capture_output=True,
                            text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_validation_refuses_a_bad_variable_with_packers_words():
    result = run_cli("build", "validate", "--var", "base_os=fedora-40")
    assert result.returncode == 1
    assert "The base_os must be one of" in result.stderr
    assert result.stderr.strip().endswith(
        "amazon-ebs.hardened, offline.amazon-chroot.hardened: packer validate exited 1")


def test_cut_arguments_are_checked_against_the_plugin_and_imdsv2():
    source = (packer.TEMPLATE_DIR / ami_template.SOURCES_FILE).read_text()
    kept, cut = ami_template.split_newer_arguments(source)
    assert set(cut) == set(ami_template.NEWER_ARGUMENTS) and ami_template.argument_problems(cut) == []
    assert kept.count("\n") == source.count("\n") - 7
    kept, chroot = ami_template.split_newer_arguments(kept, "amazon-chroot")
    assert not any(name in kept for name in ami_template.NEWER_ARGUMENTS)
    assert kept.count("\n") == source.count("\n") - 9
    weakened = source.replace('http_tokens                 = "required"', 'http_tokens = "optional"')
    assert ami_template.argument_problems(ami_template.split_newer_arguments(weakened)[1]) == [
        'metadata_options.http_tokens must be "required" (IMDSv2 only), found "optional"']
    typo = source.replace("http_endpoint  ", "http_endpoints ")
    assert ami_template.argument_problems(ami_template.split_newer_arguments(typo)[1]) == [
        "metadata_options.http_endpoints is not an argument of the amazon plugin"]
    dropped = source.replace('imds_support = "v2.0"', "")
    assert ami_template.argument_problems(ami_template.split_newer_arguments(dropped)[1]) == [
        'imds_support must be "v2.0" (IMDSv2 only), found nothing']
    assert set(chroot) == set(ami_template.ARGUMENTS_OF["amazon-chroot"])
    assert ami_template.argument_problems(chroot, "amazon-chroot") == []
    chroot_dropped = ami_template.split_newer_arguments(source.replace('imds_support            = "v2.0"', ""),
                                                        "amazon-chroot")[1]
    assert ami_template.argument_problems(chroot_dropped, "amazon-chroot") == [
        'imds_support must be "v2.0" (IMDSv2 only), found nothing']


def test_validation_bad_input_is_one_line(tmp_path):
    for args, expected in ((["--var", "base_os"], "--var 'base_os' is not of the form NAME=VALUE"),
                           (["--var-file", str(tmp_path / "none.pkrvars.hcl")], "does not exist")):
        result = run_cli("build", "validate", *args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert expected in result.stderr


def test_unknown_profile_is_refused_by_the_template(staged, qemu_vars, tmp_path):
    result = run_packer("validate", "-only=qemu.hardened", *qemu_vars, "-var", "profile=open", str(staged),
                        cwd=tmp_path)
    assert result.returncode != 0
    assert "The profile must be" in result.stdout + result.stderr


def test_verification_failure_names_the_failing_controls_from_the_json_reports(tmp_path):
    def report(name: str, verdicts: dict[str, str]) -> None:
        results = tuple(ControlResult(control_id, control(control_id).vector, control(control_id).title, status, "")
                        for control_id, status in verdicts.items())
        checked = CheckReport("ssh://admin@127.0.0.1:2222", "sealed", "Debian 12", "2026-12-01T00:00:00Z", results)
        (tmp_path / f"{name}.json").write_text(render(checked.document(), "json"))

    report("verify-sealed", {"SUDO-03": "fail", "LABEL-01": "error", "ROOT-01": "pass", "SUDO-02": "skipped"})
    report("verify-sudo-01", {"SUDO-01": "fail"})
    lines = ["==> qemu.hardened: ami-hardening: VERIFICATION FAILED (ami-harden check exit 1): ..."]
    failed = packer.failure_reason(lines, tmp_path)
    assert failed.controls == ["LABEL-01", "SUDO-01", "SUDO-03"]
    assert failed.reason == "verification failed: LABEL-01, SUDO-01, SUDO-03"
    other = packer.failure_reason(["Build 'qemu.hardened' errored after 3 seconds: boom"], tmp_path / "none")
    assert other.controls == [] and other.reason == "Build 'qemu.hardened' errored after 3 seconds: boom"


def test_missing_base_image_is_one_clear_line(tmp_path):
    result = run_cli("build", "local", "--base", str(tmp_path / "none.qcow2"), "--output", str(tmp_path))
    assert result.returncode == 2, result
    assert result.stderr.strip().splitlines() == [
        f"ami-harden: error: disk image {tmp_path / 'none.qcow2'} does not exist"]


def test_build_refuses_an_unknown_profile(tmp_path):
    with pytest.raises(HardeningError, match="profile must be one of"):
        packer.build_local(tmp_path / "base.qcow2", tmp_path, profile="open")


def test_sealed_build_needs_confirmation(tmp_path):
    result = run_cli("build", "local", "--base", str(tmp_path / "none.qcow2"), "--profile", "sealed")
    assert result.returncode == 2, result
    assert "--confirm-sealed" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.vm
def test_build_past_its_timeout_stops_packer_and_its_qemu(lab_image, tmp_path, no_orphan_qemu):
    with pytest.raises(packer.BuildFailed, match="packer ran longer than 20 s and was stopped"):
        packer.build_local(lab_image, tmp_path, timeout=20, log=lambda line: None)
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def local_build(lab_image, tmp_path_factory):
    """The lab image hardened, verified and sealed by the template's qemu source (one build per module)."""
    return packer.build_local(lab_image, tmp_path_factory.mktemp("packer-build"), profile="marketplace",
                              admin_user="admin", log=lambda line: None)


@pytest.mark.vm
@pytest.mark.heavy
def test_local_build_produces_a_sealed_hardened_image(local_build, no_orphan_qemu):
    image = local_build.image
    assert image.is_file() and image.name.endswith("-hardened-marketplace.qcow2")
    assert not list(image.parent.glob(".ami-harden-build-*")), "the build's work directory was left behind"
    assert packer.seal_leftovers(image, local_build.build_public_key) == []


@pytest.mark.vm
@pytest.mark.heavy
def test_local_build_passes_the_offline_check(local_build):
    result = run_cli("check", str(local_build.image), "--profile", "marketplace", "--admin-user", "admin",
                     "--format", "json", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert {row["status"] for row in json.loads(result.stdout)["results"]} <= {"pass", "skip"}


@pytest.mark.vm
@pytest.mark.heavy
def test_attack_probe_finds_every_vector_closed_on_the_built_image(local_build, no_orphan_qemu):
    result = run_cli("attack", str(local_build.image), "--profile", "marketplace", "--admin-user", "admin",
                     "--format", "json", timeout=1800)
    report = json.loads(result.stdout)
    statuses = {item["vector"]: item["status"] for item in report["vectors"]}
    assert result.returncode == 0 and set(statuses.values()) == {"CLOSED"}, statuses


@pytest.mark.vm
def test_a_build_that_hardens_one_control_fails_at_verification(lab_image, tmp_path, no_orphan_qemu):
    lines: list[str] = []
    with pytest.raises(packer.BuildFailed) as failed:
        packer.build_local(lab_image, tmp_path, ansible_args=["--tags", "root_01"], log=lines.append)
    # Only ROOT-01 was applied: verification names the controls left open, and not ROOT-01.
    assert failed.value.reason.startswith("verification failed: "), failed.value
    assert {"SUDO-02", "USER-01", "LABEL-01", "ROOT-08"} <= set(failed.value.controls)
    assert "ROOT-01" not in failed.value.controls
    assert any("VERIFICATION FAILED" in line for line in lines)
    assert not any("PLAY [Seal the instance" in line for line in lines), "the seal ran after a failed verification"
    assert not list(tmp_path.glob("*.qcow2")) and not list(tmp_path.glob(".ami-harden-build-*"))


@pytest.mark.vm
def test_seal_under_the_sealed_profile_leaves_no_sudo_and_no_access(lab_image, tmp_path, no_orphan_qemu):
    """seal.yml alone on the vulnerable lab instance: the admin's grants (cloud-init rule, sudo group) go last."""
    with boot_instance(lab_image, workdir=tmp_path / "vm") as vm:
        vm.wait_for_cloud_init()
        inventory = tmp_path / "inventory.json"
        inventory.write_text(json.dumps(vm.target.ansible_inventory()))
        extra = {"ami_hardening_profile": "sealed", "ami_hardening_admin_user": "admin",
                 "ami_hardening_seal_poweroff_trigger": POWEROFF_TRIGGER}
        env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="True",
                   ANSIBLE_TIMEOUT="60", ANSIBLE_PYTHON_INTERPRETER="auto_silent")
        result = subprocess.run(["ansible-playbook", "-i", str(inventory), "-e", json.dumps(extra),
                                 str(PLAYBOOKS / "seal.yml")], capture_output=True, text=True,
                                env=env, timeout=900, check=False)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr
        _, out, _ = vm.run("sudo -n true; echo sudo=$?", timeout=30)
        assert "sudo=1" in out, out
        vm.run(f"touch {POWEROFF_TRIGGER}", timeout=30)
        assert vm.wait_for_exit(300), "the seal's power-off watcher did not power the instance off"
    overlay = tmp_path / "vm" / "overlay.qcow2"
    public_key = vm.target.key.with_name(vm.target.key.name + ".pub").read_text()
    assert packer.seal_leftovers(overlay, public_key) == []
    check = run_cli("check", str(overlay), "--profile", "sealed", "--only", "SUDO-01", timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr
