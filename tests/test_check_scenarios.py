"""Checks fed known states, without a VM: gathered output as the gather script prints it, then the
check's verdict. Admin names other than `admin` come through as data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hardening.facts import Facts

CHECKS = Path(__file__).resolve().parents[1] / "checks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"scenario_{name}", CHECKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


root_login = _load("test_root_login")


def facts(*sections: tuple[str, list[str]], admin: str | None = "admin", offline: bool = False) -> Facts:
    output = "".join(f"@@AMI@@ {name}\n" + "".join(f"{line}\n" for line in lines) + "@@RC@@ 0\n"
                     for name, lines in sections)
    return Facts.from_output(output, offline=offline, admin_user=admin)


def verdict(check, *args) -> tuple[str, str]:
    """('pass' or 'fail', the evidence) of one check."""
    said: list[str] = []

    def evidence(text: str) -> str:
        said.append(text)
        return text

    try:
        check(*args, evidence=evidence)
    except (AssertionError, pytest.fail.Exception):
        return "fail", said[-1] if said else ""
    return "pass", said[-1] if said else ""


KEYS_ONLY = ["passwordauthentication no", "kbdinteractiveauthentication no", "permitemptypasswords no"]


@pytest.mark.parametrize("admin", ["ubuntu", "ec2-user", "debian"])
def test_root_02_judges_the_admin_by_name(admin):
    good = facts(("sshd", KEYS_ONLY), ("sshd-root", KEYS_ONLY), ("sshd-admin", KEYS_ONLY), admin=admin)
    assert verdict(root_login.test_sshd_refuses_passwords, good)[0] == "pass"
    opened = ["passwordauthentication yes", *KEYS_ONLY[1:]]
    bad = facts(("sshd", KEYS_ONLY), ("sshd-root", KEYS_ONLY), ("sshd-admin", opened), admin=admin)
    status, evidence = verdict(root_login.test_sshd_refuses_passwords, bad)
    assert status == "fail" and "passwordauthentication yes" in evidence


def test_root_06_finds_gettys_that_skip_the_login():
    packaged = "/usr/lib/systemd/system/serial-getty@.service:34:ExecStart=-/sbin/agetty -o '-p -- \\\\u' " \
               "--keep-baud 115200,57600,38400,9600 - $TERM"
    fine = facts(("gettys", [packaged, "@@DEBUG_SHELL@@ masked"]))
    assert verdict(root_login.test_no_getty_without_login, fine)[0] == "pass"
    for line in ("/etc/systemd/system/getty@tty1.service.d/override.conf:3:ExecStart=-/sbin/agetty -n -l /bin/bash "
                 "%I $TERM",
                 "/etc/systemd/system/serial-getty@ttyS0.service.d/a.conf:3:ExecStart=-/sbin/agetty --autologin root "
                 "%I $TERM",
                 "/etc/systemd/system/console-getty.service.d/x.conf:2:ExecStart=-/bin/sh"):
        status, evidence = verdict(root_login.test_no_getty_without_login, facts(("gettys", [packaged, line])))
        assert status == "fail" and line in evidence
    debug = facts(("gettys", [packaged, "@@DEBUG_SHELL@@ enabled"]))
    assert verdict(root_login.test_no_getty_without_login, debug) == (
        "fail", "debug-shell.service is enabled (a root shell on tty9)")


LOCKED_MENU = [
    "@@FILE@@ /boot/grub/grub.cfg",
    "12:set superusers=\"ami-hardening\"", "13:password_pbkdf2 ami-hardening (hash)",
    "40:  set timeout=0", "43:    set timeout=0",
    "90:menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class os --unrestricted $menuentry_id_option "
    "'gnulinux-simple' {",
    "101:\tlinux\t/boot/vmlinuz-6.1.0 root=UUID=1 ro console=ttyS0",
]


def test_root_08_and_09_on_a_locked_hidden_menu_and_a_waiting_open_one():
    locked = facts(("grub-cfg", LOCKED_MENU))
    assert verdict(root_login.test_boot_loader_editor_needs_a_superuser, locked)[0] == "pass"
    assert verdict(root_login.test_boot_menu_hidden_without_timeout, locked)[0] == "pass"
    waiting = facts(("grub-cfg", [line.replace("timeout=0", "timeout=30") if "43:" in line else line
                                  for line in LOCKED_MENU if "superusers" not in line and "password" not in line]))
    status, evidence = verdict(root_login.test_boot_loader_editor_needs_a_superuser, waiting)
    assert status == "fail" and "no superuser 'ami-hardening'" in evidence
    status, evidence = verdict(root_login.test_boot_menu_hidden_without_timeout, waiting)
    assert status == "fail" and "the menu waits (set timeout=30)" in evidence
    stranded = facts(("grub-cfg", [line.replace(" --unrestricted", "") for line in LOCKED_MENU]))
    status, evidence = verdict(root_login.test_boot_loader_editor_needs_a_superuser, stranded)
    assert status == "fail" and "every boot waits for a password" in evidence


def test_root_10_allows_only_the_admins_keys():
    keys = [f"@@FILE@@ {user} /home/{user}/.ssh/authorized_keys" for user in ("ec2-user", "deploy")]
    gathered = ("account-keys", [keys[0], "ssh-ed25519 AAAA launch", keys[1], "ssh-ed25519 AAAA deploy@build",
                                 "@@FILE@@ root /root/.ssh/authorized_keys"])
    status, evidence = verdict(root_login.test_no_other_account_has_authorized_keys, facts(gathered, admin="ec2-user"))
    assert status == "fail" and evidence == ("pre-seeded keys of other accounts: deploy: "
                                             "/home/deploy/.ssh/authorized_keys (1 key(s))")
    only_admin = ("account-keys", gathered[1][:2])
    assert verdict(root_login.test_no_other_account_has_authorized_keys,
                   facts(only_admin, admin="ec2-user"))[0] == "pass"
    assert verdict(root_login.test_no_other_account_has_authorized_keys, facts(only_admin, admin=None))[0] == "fail"


sudo = _load("test_sudo")


def test_sudo_06_finds_members_of_root_equivalent_groups():
    gathered = (("group", ["disk:x:6:deploy", "docker:x:999:ec2-user", "sudo:x:27:ec2-user"]),
                ("passwd", ["root:x:0:0::/root:/bin/bash", "ec2-user:x:1000:1000::/home/ec2-user:/bin/bash"]))
    status, evidence = verdict(sudo.test_no_account_in_root_equivalent_groups, facts(*gathered), "ec2-user")
    assert (status, evidence) == ("fail", "root by another name: disk: deploy")
    status, evidence = verdict(sudo.test_no_account_in_root_equivalent_groups, facts(*gathered), None)
    assert (status, evidence) == ("fail", "root by another name: docker: ec2-user; disk: deploy")
    clean = (("group", ["disk:x:6:", "docker:x:999:"]),)
    assert verdict(sudo.test_no_account_in_root_equivalent_groups, facts(*clean), None) == (
        "pass", "no account but root in docker, disk")


user_data = _load("test_user_data")


def test_user_06_wants_only_the_platforms_datasources_in_etc_cloud():
    def cloud(*files: tuple[str, str]) -> tuple[str, list[str]]:
        return "cloud-files", [line for path, text in files for line in (f"@@FILE@@ {path}", *text.splitlines())]

    packaged = ("/etc/cloud/cloud.cfg", "datasource_list: [ NoCloud, ConfigDrive, Ec2 ]")
    ours = ("/etc/cloud/cloud.cfg.d/99-ami-hardening.cfg", "datasource_list: [ Ec2, None ]")
    assert verdict(user_data.test_datasource_list_pinned, facts(cloud(packaged, ours))) == (
        "pass", "datasource_list ['Ec2', 'None'] (from /etc/cloud/cloud.cfg.d/99-ami-hardening.cfg)")
    # This boot's ds-identify answer in /run says nothing of what the next instance's finds.
    this_boot = ("/run/cloud-init/cloud.cfg", "datasource_list: [ Ec2, None ]")
    status, evidence = verdict(user_data.test_datasource_list_pinned,
                               facts(cloud(("/etc/cloud/cloud.cfg", "disable_root: true"), this_boot)))
    assert status == "fail" and evidence.startswith("datasource_list is set nowhere in /etc/cloud")
    later = ("/etc/cloud/cloud.cfg.d/99-zz-leftover.cfg", "datasource_list: [ ConfigDrive, Ec2, None ]")
    status, evidence = verdict(user_data.test_datasource_list_pinned, facts(cloud(packaged, ours, later)))
    assert status == "fail" and "reads ConfigDrive, not only the platform's ['Ec2', 'None']" in evidence
    entry = ["@@FILE@@ /boot/grub/grub.cfg", "101:\tlinux\t/boot/vmlinuz root=UUID=1 ds=nocloud;s=/dev/vdb/"]
    status, evidence = verdict(user_data.test_datasource_list_pinned, facts(cloud(packaged, ours), ("grub-cfg", entry)))
    assert status == "fail" and "a datasource chosen on the kernel command line: /boot/grub/grub.cfg" in evidence
