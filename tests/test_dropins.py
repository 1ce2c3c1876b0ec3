"""ami_hardening_dropins, the module that owns settings in drop-in directories, run by real Ansible on
files made here: a later-sorting (or, for sshd, earlier-sorting) override in each kind of directory."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "playbooks" / "roles" / "ami_hardening_common" / "library"


def dropins(args: dict, check: bool = False) -> dict:
    """Run the module once on localhost and return its result."""
    command = ["ansible", "localhost", "-c", "local", "-m", "ami_hardening_dropins", "-a", json.dumps(args),
               "-o", *(["--check"] if check else [])]
    env = {**os.environ, "ANSIBLE_LIBRARY": str(LIBRARY), "ANSIBLE_LOCALHOST_WARNING": "False"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    result = json.loads(run.stdout.split(" => ", 1)[1])
    return {**result, "failed": "FAILED!" in run.stdout.split(" => ", 1)[0]}


def test_sshd_keywords_are_commented_out_everywhere_but_ours(tmp_path):
    main = tmp_path / "sshd_config"
    main.write_text("Include d/*.conf\nPasswordAuthentication no\nMatch User deploy\n  PasswordAuthentication yes\n")
    (tmp_path / "d").mkdir()
    ours = tmp_path / "d" / "00-ami-hardening.conf"
    ours.write_text("PasswordAuthentication no\n")
    earlier = tmp_path / "d" / "00-access.conf"
    earlier.write_text("passwordauthentication=yes\nPermitRootLogin yes\n")
    agreeing = tmp_path / "d" / "50-cloud-init.conf"
    agreeing.write_text("PasswordAuthentication no\n")
    earlier.chmod(0o600)
    args = {"kind": "sshd", "paths": [str(main), f"{tmp_path}/d/*.conf"], "ours": str(ours),
            "owned": ["PasswordAuthentication"], "control": "ROOT-02"}

    before = {path: path.read_text() for path in (main, ours, earlier)}
    checked = dropins(args, check=True)
    assert checked["changed"] and sorted(checked["neutralised"]) == sorted([str(main), str(earlier)])
    assert {path: path.read_text() for path in before} == before

    result = dropins(args)
    assert result["changed"]
    assert earlier.read_text().splitlines() == [
        "# ami-hardening ROOT-02: set elsewhere by ami-hardening: passwordauthentication=yes", "PermitRootLogin yes"]
    assert oct(earlier.stat().st_mode & 0o777) == "0o600"
    assert "  # ami-hardening ROOT-02: set elsewhere by ami-hardening: PasswordAuthentication yes" in main.read_text()
    assert ours.read_text() == before[ours]
    assert agreeing.read_text() == "PasswordAuthentication no\n", "a line that agrees with ours is no override"
    assert dropins(args)["changed"] is False


def test_shell_assignments_in_a_later_file_are_neutralised_and_the_sourced_value_checked(tmp_path):
    (tmp_path / "grub").write_text('GRUB_TIMEOUT=5\nGRUB_DEVICE=LABEL=cloudimg-rootfs\n')
    (tmp_path / "grub.d").mkdir()
    ours = tmp_path / "grub.d" / "99-ami-hardening.cfg"
    ours.write_text("GRUB_TIMEOUT=0\n")
    later = tmp_path / "grub.d" / "zz-leftover.cfg"
    later.write_text("export GRUB_TIMEOUT=30\nGRUB_CMDLINE_LINUX=quiet\n")
    args = {"kind": "shell", "paths": [str(tmp_path / "grub"), f"{tmp_path}/grub.d/*.cfg"], "ours": str(ours),
            "owned": ["GRUB_TIMEOUT", "GRUB_DEVICE"], "control": "ROOT-09",
            "expect": {"GRUB_TIMEOUT": "0", "GRUB_DEVICE": ""}}

    result = dropins(args)
    assert result["changed"] and result["effective"] == {"GRUB_TIMEOUT": "0", "GRUB_DEVICE": ""}
    assert later.read_text().splitlines() == [
        "# ami-hardening ROOT-09: set elsewhere by ami-hardening: export GRUB_TIMEOUT=30", "GRUB_CMDLINE_LINUX=quiet"]
    assert dropins(args)["changed"] is False

    ours.write_text("GRUB_TIMEOUT=7\n")
    failed = dropins(args)
    assert failed["failed"] and "GRUB_TIMEOUT is '7', not '0'" in failed["msg"]


def test_cloud_init_keys_leave_later_files_with_their_other_settings(tmp_path):
    ours = tmp_path / "99-ami-hardening.cfg"
    ours.write_text("allow_userdata: false\n")
    earlier = tmp_path / "01-lab.cfg"
    earlier.write_text("allow_userdata: true\n")
    later = tmp_path / "99-zz-leftover.cfg"
    later.write_text("# a vendor's leftovers\nallow_userdata: true\nmanage_etc_hosts: true\n"
                     "system_info:\n  default_user:\n    sudo: [ALL]\n")
    args = {"kind": "cloud_init", "paths": [f"{tmp_path}/*.cfg"], "ours": str(ours), "control": "USER-01",
            "owned": ["allow_userdata", "system_info.default_user.sudo"]}

    result = dropins(args)
    assert result["changed"] and list(result["neutralised"]) == [str(later)]
    text = later.read_text()
    assert yaml.safe_load(text) == {"manage_etc_hosts": True}
    assert "#| allow_userdata: true" in text and "#| # a vendor's leftovers" in text
    assert text.startswith("# ami-hardening USER-01: took out allow_userdata, system_info.default_user.sudo")
    assert earlier.read_text() == "allow_userdata: true\n"
    assert dropins(args)["changed"] is False
    again = dropins({**args, "owned": ["manage_etc_hosts"], "control": "USER-09"})
    assert again["changed"] and yaml.safe_load(later.read_text()) is None
    assert later.read_text().count("#| allow_userdata: true") == 1
