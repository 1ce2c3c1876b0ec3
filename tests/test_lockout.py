"""Hardening that never strands an instance: the lockout guard on a real lab instance.

`apply` arms a timer on the target before it changes sshd or sudo; after those roles a fresh SSH
login with sudo must succeed before the play goes on. When it does not, or when the run stops
before it, the target puts sshd's and sudo's configuration back as found.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import run_ok

from hardening.apply import apply
from hardening.check import run_checks
from hardening.errors import HardeningError
from hardening.lab.vm import boot_instance

pytestmark = pytest.mark.vm

GUARD = "/var/lib/ami-hardening/lockout-guard"
TIMER = "ami-hardening-lockout-guard.timer"
# How EC2 Instance Connect lets a seller in: a key pushed for the moment, served by sshd's
# AuthorizedKeysCommand, and no authorized_keys file. ROOT-07 removes that command.
PUSHED_KEYS = r"""sudo -n sh -e -c '
printf "#!/bin/sh\n[ \"\$1\" = admin ] && cat /etc/ssh/pushed-key.pub\n" > /usr/local/sbin/pushed-keys
chmod 0755 /usr/local/sbin/pushed-keys
mv /home/admin/.ssh/authorized_keys /etc/ssh/pushed-key.pub
chmod 0644 /etc/ssh/pushed-key.pub
printf "AuthorizedKeysCommand /usr/local/sbin/pushed-keys %%u\nAuthorizedKeysCommandUser nobody\n" \
  > /etc/ssh/sshd_config.d/60-pushed-keys.conf
systemctl reload ssh'"""
SUDO_POLICY = "sudo -n sh -c 'sha256sum /etc/sudoers /etc/sudoers.d/*'"
KEYS_FILE_AGAIN = ("sudo -n sh -e -c 'install -o admin -g admin -m 0600 /etc/ssh/pushed-key.pub "
                   "/home/admin/.ssh/authorized_keys; rm /etc/ssh/sshd_config.d/60-pushed-keys.conf; "
                   "systemctl reload ssh'")


def fresh_login_with_sudo(vm, within: float) -> float:
    """Seconds until a new SSH connection as the admin runs sudo -n (the kept session is dropped first)."""
    started = time.monotonic()
    vm.close_ssh()
    vm.wait_for_ssh(timeout=within)
    run_ok(vm, "sudo -n true")
    return time.monotonic() - started


def kill_playbook_at(task: str):
    """A progress callback that SIGKILLs this process's ansible-playbook once `task` reports changed."""
    current = {"task": ""}

    def progress(line: str) -> None:
        if line.startswith("TASK ["):
            current["task"] = line[6:].split("]", 1)[0]
        elif line.startswith("changed:") and current["task"] == task:
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(row.split(":\t", 1) for row in status.read_text().splitlines() if ":\t" in row)
                    command = (status.parent / "cmdline").read_bytes()
                except OSError:
                    continue
                if int(fields.get("PPid", "0")) == os.getpid() and b"ansible-playbook" in command:
                    os.kill(int(status.parent.name), signal.SIGKILL)
                    print(f"killed ansible-playbook (pid {status.parent.name}) after {task!r}")
    return progress


def test_a_lost_login_or_a_killed_run_puts_sshd_and_sudo_back_and_a_rerun_converges(lab_image, tmp_path):
    with boot_instance(lab_image, workdir=tmp_path) as vm:
        vm.wait_for_cloud_init()

        # 1. The admin logs in through an AuthorizedKeysCommand that ROOT-07 takes away.
        run_ok(vm, PUSHED_KEYS)
        fresh_login_with_sudo(vm, within=60)
        with pytest.raises(HardeningError) as stopped:
            apply(vm.target, only=["ROOT-07"], extra_vars={"ami_hardening_lockout_guard_seconds": 45})
        message = str(stopped.value)
        print(f"apply stopped: {message}")
        assert "\n" not in message
        assert message.startswith("after the sshd and sudo changes admin cannot log in over a fresh SSH "
                                  "connection ("), message
        assert f"what the run wrote is kept in {GUARD}/replaced" in message, message
        waited = fresh_login_with_sudo(vm, within=240)
        print(f"login: fresh SSH login with sudo again {waited:.0f} s after apply stopped")
        effective = run_ok(vm, "sudo -n sshd -T -C user=admin,host=x,addr=192.0.2.1 | grep '^authorizedkeyscommand '")
        assert effective.strip() == "authorizedkeyscommand /usr/local/sbin/pushed-keys %u", effective
        assert "00-ami-hardening.conf" not in run_ok(vm, "ls /etc/ssh/sshd_config.d")
        assert "00-ami-hardening.conf" in run_ok(vm, f"sudo -n ls {GUARD}/replaced/etc/ssh/sshd_config.d")
        run_ok(vm, KEYS_FILE_AGAIN)

        # 2. The build host dies right after sudo's policy was rewritten: nothing proves a fresh login.
        sudoers = run_ok(vm, SUDO_POLICY)
        task = "ami_hardening_sudo : SUDO-01, SUDO-03 | Write a sudoers that grants only root and reads /etc/sudoers.d"
        with pytest.raises(HardeningError):
            apply(vm.target, only=["ROOT-01", "SUDO-01"], extra_vars={"ami_hardening_lockout_guard_seconds": 45},
                  progress=kill_playbook_at(task))
        assert run_ok(vm, SUDO_POLICY) != sudoers, "the kill came too early"
        deadline = time.monotonic() + 180
        while vm.run(SUDO_POLICY)[1] != sudoers:
            assert time.monotonic() < deadline, "the guard did not put sudo's policy back"
            time.sleep(5)
        assert run_ok(vm, f"sudo -n systemctl show --property=SubState --value {TIMER}").strip() == "dead"
        assert "00-ami-hardening.conf" not in run_ok(vm, "ls /etc/ssh/sshd_config.d"), "ROOT-01's drop-in stayed"
        print(f"login: fresh SSH login with sudo after the restore in {fresh_login_with_sudo(vm, within=60):.0f} s")

        # 3. A rerun converges: the guard is proven and disarmed; after a reboot (the new kernel command
        # line is the running one) every control holds. The check runs in the process whose apply
        # checked the instance before the reboot, so it must not reuse that SSH connection.
        rerun = apply(vm.target)
        assert rerun.failed == 0, rerun.log_path
        assert run_ok(vm, f"sudo -n sh -c 'test -e {GUARD} || echo gone'").strip() == "gone"
        vm.reboot()
        report = run_checks(vm.target)
        failing = [(r.control, r.status, r.evidence) for r in report.results if r.control in report.failing()]
        print(f"rerun: {rerun.changed} tasks changed; after a reboot, check: {failing or 'every control holds'}")
        assert report.passed, failing
