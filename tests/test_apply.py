"""`ami-harden apply` against real lab instances: check mode, the state after apply, re-apply, reboot; bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
from conftest import assert_one_line_error, changed_tasks, run_ok

from hardening.apply import _failure_message, apply, selection
from hardening.catalog import control, controls
from hardening.check import run_checks
from hardening.lab.hardened import harden_copy
from hardening.lab.image import VARIANTS
from hardening.lab.vm import boot_instance, free_port

SNAPSHOT = (
    "sudo -n sh -c 'sha256sum /etc/sudoers /etc/ssh/sshd_config /etc/fstab /etc/default/grub /boot/grub/grub.cfg "
    "/etc/shadow /root/.ssh/authorized_keys /boot/initrd.img-$(uname -r) 2>&1; "
    "ls -la --time-style=full-iso /etc/sudoers.d /etc/ssh/sshd_config.d /etc/cloud/cloud.cfg.d /etc/default/grub.d "
    "/etc/initramfs-tools/scripts/local-premount 2>&1'"
)
GRANTS = ("for u in $(getent passwd | cut -d: -f1); do sudo -n -l -U $u 2>/dev/null | grep -q 'may run' "
          "&& echo \"$u: $(sudo -n -l -U $u | sed -n '/may run/,$p' | tail -n +2 | xargs)\"; done")
MERGED = ("sudo -n cloud-init query merged_cfg | python3 -c 'import json,sys; c=json.load(sys.stdin); "
          "print(json.dumps({k: c.get(k) for k in (\"allow_userdata\", \"disable_root\", \"ssh_pwauth\", "
          "\"vendor_data\", \"vendor_data2\", \"cloud_final_modules\")}))'")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ami-harden", "apply", *args], capture_output=True, text=True, timeout=900, check=False)


def test_skip_switches_a_control_off_and_only_selects_its_tags():
    tags, off = selection(skip=["label-03"])
    assert tags == [] and off == {"ami_hardening_label_boot_initramfs_guard_enabled": False}
    tags, off = selection(only=["ROOT-01", "SUDO-01"])
    assert tags == ["root_01", "sudo_01"]
    assert len(off) == len(controls()) - 2 and not any(off.values())
    assert control("ROOT-01").variable not in off and control("SUDO-01").variable not in off


def test_a_profile_switches_off_the_controls_the_catalog_leaves_out_of_it():
    tags, off = selection(profile="sealed")
    assert tags == [] and off == {item.variable: False for item in controls() if "sealed" not in item.profiles}
    assert off == {control("SUDO-02").variable: False}
    assert selection(profile="marketplace") == ([], {})


def test_preflight_refusal_and_lockout_guard_stop_are_shown_verbatim(tmp_path):
    message = "unsupported OS Fedora 40: ami-hardening supports Debian 12"
    data = json.dumps({"changed": False, "msg": message})
    task = "ami_hardening_preflight : Refuse an unsupported operating system"
    assert _failure_message(task, "t", "FAILED", data, tmp_path) == message
    task = "ami_hardening_lockout_guard : Stop unless the admin logged in afresh and ran sudo"
    assert _failure_message(task, "t", "FAILED", data, tmp_path) == message
    other = _failure_message("ami_hardening_sudo : Check the whole sudo policy", "t", "FAILED", data, tmp_path)
    assert other.startswith("t: failed in task 'ami_hardening_sudo : Check the whole sudo policy': unsupported")
    assert other.endswith(f"(log: {tmp_path})")


def test_unknown_or_doubly_named_control_id_is_refused(tmp_path):
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    run = cli(f"ssh://admin@127.0.0.1:{free_port()}", "--key", str(key), "--skip", "ROOT-99")
    assert_one_line_error(run, "unknown control id 'ROOT-99'; see `ami-harden controls`")
    run = cli(f"ssh://admin@127.0.0.1:{free_port()}", "--key", str(key), "--only", "ROOT-01", "--skip", "root-01")
    assert_one_line_error(run, "ROOT-01 named by both --only and --skip; name each control once")


def test_sealed_needs_confirmation():
    run = cli("local", "--profile", "sealed", "--admin-user", "admin")
    assert_one_line_error(run, "breaks these AWS Marketplace policy lines")
    assert "allow only sudo access through a user account" in run.stderr
    assert "--confirm-sealed" in run.stderr


def test_unreachable_port_is_refused(tmp_path):
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    assert_one_line_error(cli(f"ssh://admin@127.0.0.1:{free_port()}", "--key", str(key)), "host unreachable")


def test_missing_key_and_bad_target_are_refused(tmp_path):
    assert_one_line_error(cli("ssh://admin@127.0.0.1:22", "--key", str(tmp_path / "nope")), "does not exist")
    (tmp_path / "notes").write_text("not a key\n")
    assert_one_line_error(cli("ssh://admin@127.0.0.1:22", "--key", str(tmp_path / "notes")),
                          f"SSH key {tmp_path / 'notes'} is not a private key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(tmp_path / "locked")], check=True)
    assert_one_line_error(cli("ssh://admin@127.0.0.1:22", "--key", str(tmp_path / "locked")), "needs a passphrase")
    assert_one_line_error(cli("ssh://admin@@x:y"), "is not of the form ssh://USER@HOST:PORT")


def test_an_inventory_that_does_not_parse_names_no_host_or_cannot_be_reached_is_refused(tmp_path):
    broken, empty, unreachable = tmp_path / "broken.yml", tmp_path / "empty.yml", tmp_path / "web.yml"
    broken.write_text("all: [hosts\n")
    empty.write_text("all:\n  hosts: {}\n")
    unreachable.write_text(f"all:\n  hosts:\n    web1: {{ansible_host: 127.0.0.1, ansible_port: {free_port()}}}\n")
    assert_one_line_error(cli(str(broken)), f"inventory {broken} does not parse (Failed to parse inventory with")
    assert_one_line_error(cli(str(empty)), f"inventory {empty} names no host")
    assert_one_line_error(cli(str(unreachable)), "web1: unreachable during 'Gathering Facts': ")


@pytest.mark.vm
def test_wrong_key_is_refused(lab_instance, tmp_path):
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    assert_one_line_error(cli(lab_instance.target.url, "--key", str(key)), "SSH login refused for 'admin'")


@pytest.mark.vm
def test_an_admin_without_sudo_is_refused_before_any_change(lab_instance):
    """An account that logs in with the key pair but has no sudo: refused at the check that comes first."""
    run_ok(lab_instance, "sudo useradd -m -s /bin/bash nosudo && sudo install -d -o nosudo -m 700 ~nosudo/.ssh && "
                         "sudo install -o nosudo -m 600 ~/.ssh/authorized_keys ~nosudo/.ssh/authorized_keys")
    try:
        before = run_ok(lab_instance, "sudo find /etc -newer /etc/hostname -type f | sort")
        target = lab_instance.target.url.replace(f"//{lab_instance.target.user}@", "//nosudo@")
        assert_one_line_error(cli(target, "--key", str(lab_instance.target.key), "--admin-user", "nosudo"),
                              "nosudo cannot use sudo")
        assert run_ok(lab_instance, "sudo find /etc -newer /etc/hostname -type f | sort") == before
    finally:
        run_ok(lab_instance, "sudo userdel -r nosudo")


@pytest.mark.vm
def test_check_mode_changes_nothing_on_a_fresh_instance(lab_instance):
    before = run_ok(lab_instance, SNAPSHOT)
    result = apply(lab_instance.target, check=True, progress=print)
    assert result.failed == 0 and result.unreachable == 0
    assert result.changed > 0, "a fresh lab instance has everything left to harden"
    assert run_ok(lab_instance, SNAPSHOT) == before


@pytest.fixture(scope="module")
def hardened(hardened_image):
    """The marketplace copy of the traps image (first applied by the session's fixture), booted as a new instance."""
    with boot_instance(hardened_image("traps", "marketplace"), user=VARIANTS["traps"]) as vm:
        vm.wait_for_cloud_init()
        yield vm


@pytest.mark.vm
def test_effective_state_after_apply_and_a_new_instance(hardened):
    grants = run_ok(hardened, GRANTS).strip().splitlines()
    assert grants == ["root: (ALL : ALL) ALL", "ec2-user: (ALL) NOPASSWD: ALL"]
    for user in ("root", "deploy"):  # the traps' 00-access.conf sorts first and has a Match User deploy
        sshd = run_ok(hardened, f"sudo -n sshd -T -C user={user},host=x,addr=192.0.2.1").splitlines()
        for line in ("permitrootlogin no", "passwordauthentication no", "kbdinteractiveauthentication no",
                     "permitemptypasswords no", "authorizedkeyscommand none"):
            assert line in sshd
    assert "# ami-hardening ROOT-01: set elsewhere by ami-hardening: PermitRootLogin yes" in run_ok(
        hardened, "cat /etc/ssh/sshd_config.d/00-access.conf")
    grub = run_ok(hardened, "sudo -n grep -E '^(set superusers|password_pbkdf2|menuentry)|set timeout=' "
                            "/boot/grub/grub.cfg")
    assert 'set superusers="ami-hardening"' in grub and "password_pbkdf2 ami-hardening grub.pbkdf2.sha512." in grub
    assert set(re.findall(r"set timeout=(\S+)", grub)) == {"0"}
    assert all("--unrestricted" in line for line in grub.splitlines() if line.startswith("menuentry "))
    assert run_ok(hardened, "getent group disk").strip().endswith(":")
    assert run_ok(hardened, "sudo -n sh -c 'ls -A /home/deploy/.ssh; systemctl is-enabled debug-shell.service || "
                            "true'").split() == ["masked"]
    assert "root=UUID=" in run_ok(hardened, "sudo -n grep -m1 -E '^\\s+linux\\s' /boot/grub/grub.cfg")
    assert run_ok(hardened, "findmnt --fstab -no SOURCE /").startswith("UUID=")
    cmdline = run_ok(hardened, "cat /proc/cmdline")
    assert f"root=UUID={run_ok(hardened, 'findmnt -no UUID /').strip()}" in cmdline
    merged = json.loads(run_ok(hardened, MERGED))
    assert merged["allow_userdata"] is False and merged["disable_root"] is True and merged["ssh_pwauth"] is False
    assert merged["vendor_data"]["enabled"] is False and merged["vendor_data2"]["enabled"] is False
    assert not {"scripts_user", "scripts-user", "runcmd"} & {str(m) for m in merged["cloud_final_modules"]}
    assert run_ok(hardened, "sudo -n lsinitramfs /boot/initrd.img-$(uname -r) | grep -c ami-root-unique").strip() != "0"


@pytest.mark.vm
def test_reapply_on_the_new_instance_applies_root_04_alone(hardened):
    """A new instance's cloud-init writes the key pair for root behind disable_root's refusal (ROOT-04
    accepts it in `check`). apply's first check judges as the image must be, so ROOT-04 alone fails it:
    the play runs for it only, empties that file and changes nothing else."""
    root_keys = run_ok(hardened, "sudo -n cat /root/.ssh/authorized_keys").strip().splitlines()
    assert root_keys and all('command="echo \'Please login as the user \\"ec2-user\\"' in key for key in root_keys)
    lines: list[str] = []
    started = time.monotonic()
    again = apply(hardened.target, admin_user=VARIANTS["traps"], progress=lines.append)
    print(f"second live apply on a new instance: {time.monotonic() - started:.1f} s")
    assert again.failed == 0
    assert sorted(again.holding) == sorted(c.id for c in controls() if c.id != "ROOT-04"), again.log_path
    assert lines[0] == f"ami-harden: checked first: {len(controls()) - 1} controls hold; to apply: ROOT-04"
    assert changed_tasks(lines) == ["ami_hardening_root_login : ROOT-04 | Empty root's authorized keys files"], \
        again.log_path


@pytest.mark.vm
@pytest.mark.skipif(os.geteuid() != 0, reason="the copy is hardened and checked offline, which needs root")
def test_live_sealed_apply_takes_the_admins_sudo_last(hardened_image, tmp_path):
    """The sealed profile over SSH, on a new instance of the traps image's marketplace copy (hardened
    offline): the first check finds what sealed adds failing, the play takes the admin's sudo as its last
    task, and the copy then passes every sealed control."""
    admin = VARIANTS["traps"]
    log = tmp_path / "apply.log"
    source = hardened_image("traps", "marketplace", offline=True)
    result = harden_copy(source, tmp_path / "sealed.qcow2", profile="sealed", log_path=log, user=admin)
    assert result.failed == 0 and result.changed > 0, log
    assert "SUDO-01" not in result.holding and "ROOT-01" in result.holding, log.read_text()[:3000]
    report = run_checks(tmp_path / "sealed.qcow2", profile="sealed", admin_user=admin)
    assert report.passed, report.failing()
    assert "nobody" in next(r.evidence for r in report.results if r.control == "SUDO-01")


@pytest.mark.vm
@pytest.mark.heavy
def test_unique_fs_uuid_gives_root_a_new_uuid_online(lab_image):
    switch = {"ami_hardening_label_boot_unique_fs_uuid": True}
    with boot_instance(lab_image) as vm:
        vm.wait_for_cloud_init()
        base = run_ok(vm, "sudo -n blkid -p -s UUID -o value /dev/vda1").strip()
        first = apply(vm.target, only=["LABEL-01", "LABEL-02"], extra_vars=switch, progress=print)
        assert first.failed == 0 and first.changed > 0
        new = run_ok(vm, "sudo -n blkid -p -s UUID -o value /dev/vda1").strip()
        assert new and new != base
        assert run_ok(vm, "findmnt --fstab -no SOURCE /").strip() == f"UUID={new}"
        assert apply(vm.target, only=["LABEL-01", "LABEL-02"], extra_vars=switch).changed == 0
        vm.reboot()
        assert f"root=UUID={new}" in run_ok(vm, "cat /proc/cmdline")
        assert run_ok(vm, "findmnt -no UUID /").strip() == new
