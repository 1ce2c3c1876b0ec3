"""Parsing of the facts the checks judge (outputs as Debian 12's tools print them)."""

from __future__ import annotations

import subprocess

from hardening.facts import (
    Facts,
    gather_script,
    merge_cloud_files,
    parse_sections,
    parse_sudo_list,
    polkit_order,
    polkit_services,
    sshd_origin,
)
from hardening.kernel import root_argument


def test_sections_keep_output_and_exit_code():
    sections = parse_sections("@@AMI@@ one\nline 1\nline 2\n\n@@RC@@ 0\n@@AMI@@ two\n\n@@RC@@ 127\n")
    assert sections["one"].lines == ["line 1", "line 2"] and sections["one"].rc == 0
    assert sections["two"].text == "" and sections["two"].rc == 127


def test_gather_script_is_valid_posix_shell():
    for offline in (True, False):
        result = subprocess.run(["sh", "-n", "-c", gather_script(offline, "ad'min")], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert "ADMIN='ad'\"'\"'min'" in gather_script(False, "ad'min")


def test_sudo_list_with_wrapped_defaults_and_grants():
    listing = parse_sudo_list([
        "Matching Defaults entries for admin on ami-lab:",
        "    env_reset, mail_badpass,",
        "    secure_path=/usr/local/sbin\\:/usr/bin\\:/bin, use_pty,",
        "    logfile=/var/log/sudo.log",
        "",
        "User admin may run the following commands on ami-lab:",
        "    (ALL : ALL) NOPASSWD: ALL",
        "    (ALL) NOPASSWD: ALL",
    ])
    assert listing.defaults == ("env_reset", "mail_badpass", "secure_path=/usr/local/sbin\\:/usr/bin\\:/bin",
                                "use_pty", "logfile=/var/log/sudo.log")
    assert listing.grants == ("(ALL : ALL) NOPASSWD: ALL", "(ALL) NOPASSWD: ALL")
    assert listing.error is None


def test_sudo_list_without_grants_and_errors():
    assert parse_sudo_list(["User nobody is not allowed to run sudo on ami-lab."]).grants == ()
    assert parse_sudo_list(["sudo: unknown user admin"]).error == "sudo: unknown user admin"
    broken = parse_sudo_list([">>> /etc/sudoers: syntax error near line 50 <<<", "sudo: parse error"])
    assert broken.error.startswith(">>> /etc/sudoers: syntax error")


def test_sshd_origin_follows_include_order_and_stops_at_match():
    files = {
        "/etc/ssh/sshd_config": ["Include /etc/ssh/sshd_config.d/*.conf", "PermitRootLogin no",
                                 "Match User backup", "  PasswordAuthentication yes"],
        "/etc/ssh/sshd_config.d/50-cloud-init.conf": ["PermitRootLogin yes"],
        "/etc/ssh/sshd_config.d/00-ami-hardening.conf": ["# first", "permitrootlogin no"],
        "/etc/ssh/sshd_config.d/notes.txt": ["PasswordAuthentication yes"],
    }
    assert sshd_origin(files, "PermitRootLogin") == "/etc/ssh/sshd_config.d/00-ami-hardening.conf:2"
    assert sshd_origin(files, "PasswordAuthentication") is None


def test_cloud_files_merge_later_wins_and_dicts_merge():
    files = {
        "/etc/cloud/cloud.cfg.d/99-ami.cfg": "allow_userdata: false\nsystem_info:\n  default_user:\n    sudo: false\n",
        "/etc/cloud/cloud.cfg": "allow_userdata: true\ncloud_final_modules: [scripts_user, runcmd]\n"
                                "system_info:\n  default_user:\n    name: admin\n    sudo: ['ALL=(ALL) ALL']\n",
        "/etc/cloud/cloud.cfg.d/05-modules.cfg": "cloud_final_modules: [final_message]\n",
        "/etc/cloud/cloud.cfg.d/10-broken.cfg": "key: [unclosed\n",
    }
    merged, origin = merge_cloud_files(files)
    assert merged["allow_userdata"] is False
    assert merged["cloud_final_modules"] == ["final_message"]
    assert merged["system_info"]["default_user"] == {"name": "admin", "sudo": False}
    assert origin[("system_info", "default_user", "sudo")] == "/etc/cloud/cloud.cfg.d/99-ami.cfg"
    assert origin[("cloud_final_modules",)] == "/etc/cloud/cloud.cfg.d/05-modules.cfg"


def test_cloud_config_from_gathered_files():
    output = ("@@AMI@@ cloud-files\n@@FILE@@ /run/cloud-init/cloud.cfg\ndatasource_list: [ Ec2 ]\n\n"
              "@@FILE@@ /etc/cloud/cloud.cfg\ndisable_root: false\ndatasource_list: [ NoCloud ]\n\n\n@@RC@@ 0\n")
    facts = Facts.from_output(output, offline=False, admin_user="admin")
    assert facts.cloud == {"disable_root": False, "datasource_list": ["Ec2"]}
    assert facts.cloud_origin("datasource_list") == "from /run/cloud-init/cloud.cfg"
    assert facts.cloud_origin("allow_userdata") == "set nowhere"
    assert Facts.from_output("", offline=True, admin_user=None).cloud_source is None


def test_polkit_runs_files_by_name_and_etc_first_for_a_name_in_both():
    rules = dict.fromkeys([
        "/usr/share/polkit-1/rules.d/50-default.rules",
        "/usr/share/polkit-1/rules.d/10-vendor.rules",
        "/usr/share/polkit-1/rules.d/40-ami.rules",
        "/etc/polkit-1/rules.d/40-ami.rules",
    ], "")
    assert polkit_order(rules) == [
        "/usr/share/polkit-1/rules.d/10-vendor.rules",
        "/etc/polkit-1/rules.d/40-ami.rules",
        "/usr/share/polkit-1/rules.d/40-ami.rules",
        "/usr/share/polkit-1/rules.d/50-default.rules",
    ]
    assert polkit_order({}) == []


def test_polkit_services_list():
    assert polkit_services('    var services = ["_apt", "polkitd"];\n') == ["_apt", "polkitd"]
    assert polkit_services("    var services = [];") == []
    assert polkit_services('    var services = ["a", 1];') is None
    assert polkit_services("    var services = [oops];") is None
    assert polkit_services("polkit.addRule(function() {});") is None


def test_boot_and_account_facts():
    output = "\n".join([
        "@@AMI@@ grub-cfg", "@@FILE@@ /boot/grub/grub.cfg",
        "92:\tsearch --no-floppy --fs-uuid --set=root 59d7", "94:\tlinux /boot/vmlinuz root=LABEL=cloudimg-rootfs ro",
        "@@RC@@ 0",
        "@@AMI@@ bls", "@@FILE@@ /boot/loader/entries/a.conf", "3:options $kernelopts", "kernelopts=root=UUID=1 ro",
        "@@RC@@ 0",
        "@@AMI@@ shadow", "root:locked", "admin:hash", "@@RC@@ 0",
        "@@AMI@@ passwd", "admin:x:1000:1000::/home/admin:/bin/bash", "@@RC@@ 0",
        "@@AMI@@ group", "sudo:x:27:", "admin:x:1000:", "@@RC@@ 0",
        "@@AMI@@ initramfs", "@@IMAGE@@ /boot/initrd.img-6.1.0", "usr/lib/ami/ami-root-unique", "@@RC@@ 0",
        "@@AMI@@ pkexec", "4755 root /usr/bin/pkexec", "@@RC@@ 0",
        "@@AMI@@ ssm", "@@UNIT@@ amazon-ssm-agent.service enabled",
        "@@FILE@@ /etc/sudoers.d/ssm-agent-users", "@@RC@@ 0",
        "@@AMI@@ sudoers-groups", "/etc/sudoers:50:%sudo\tALL=(ALL:ALL) ALL", "@@RC@@ 0",
    ]) + "\n"
    facts = Facts.from_output(output, offline=False, admin_user="admin")
    assert facts.grub_cfg["/boot/grub/grub.cfg"][1].endswith("root=LABEL=cloudimg-rootfs ro")
    assert facts.bls_options == {"/boot/loader/entries/a.conf": ["3:options root=UUID=1 ro"]}
    assert facts.password_states == {"root": "locked", "admin": "hash"}
    assert facts.groups["admin"] == ("1000", {"admin"})
    assert facts.initramfs.matches == ("usr/lib/ami/ami-root-unique",)
    assert facts.pkexec == ("4755", "root", "/usr/bin/pkexec")
    assert facts.ssm_units == {"amazon-ssm-agent.service": "enabled"}
    assert facts.ssm_sudoers == ["/etc/sudoers.d/ssm-agent-users"]
    assert facts.sudoers_group_rules == {"sudo": ["/etc/sudoers:50: %sudo ALL=(ALL:ALL) ALL"]}
    assert facts.cmdline is None and facts.sshd_installed is False


def test_the_kernel_uses_the_last_root_argument():
    assert root_argument("BOOT_IMAGE=/vmlinuz root=LABEL=cloudimg-rootfs ro root=UUID=1 quiet") == "UUID=1"
    assert root_argument("BOOT_IMAGE=/vmlinuz ro initroot=x") is None
