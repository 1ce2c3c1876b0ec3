"""The gather script's choice of accounts to ask sudo about, run against crafted files in a private mount
namespace (no VM; needs root for the bind mounts)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from hardening.facts import _SCRIPT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bind-mounts crafted files over /etc")
PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
admin:x:1000:1000::/home/admin:/bin/bash
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:27::/home/bob:/usr/sbin/nologin
carol:x:1003:1003::/home/carol:/bin/bash
"""
GROUP = """root:x:0:
sudo:x:27:
ops:x:1004:carol
admin:x:1000:
alice:x:1001:
carol:x:1003:
"""
BASE = "root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n"


def reach(tmp_path, sudoers: str, dropin: str = "", nsswitch: str = "passwd: files\ngroup: files\n") -> list[str]:
    function = re.search(r"^sudo_reach\(\) \{\n.*?^\}\n", _SCRIPT, re.MULTILINE | re.DOTALL)[0]
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))
    (tmp_path / "upper").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "upper" / "sudoers.d").mkdir()
    files = {"sudoers": sudoers, "passwd": PASSWD, "group": GROUP, "nsswitch.conf": nsswitch,
             "sudoers.d/50-test": dropin}
    for name, text in files.items():
        (tmp_path / "upper" / name).write_text(text)
    # /etc seen through an overlay that holds the crafted files, in a mount namespace of the test's own.
    script = (f"mount -t overlay ami-test -o lowerdir=/etc,upperdir={tmp_path / 'upper'},"
              f"workdir={tmp_path / 'work'} /etc || exit 3\nADMIN=admin\n{function}sudo_reach")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_only_the_accounts_a_rule_names_or_reaches_through_a_group_are_asked_about(tmp_path):
    dropin = "alice, daemon  ALL = (ALL) NOPASSWD: /usr/bin/ls\n%ops ALL=(ALL) ALL\nDefaults:www-data !use_pty\n"
    # bob through his primary group (sudo), carol as a member of ops; www-data only has Defaults.
    assert reach(tmp_path, BASE, dropin) == ["root", "daemon", "admin", "alice", "bob", "carol"]
    assert reach(tmp_path, "root ALL=(ALL:ALL) ALL\n# alice ALL=(ALL) ALL\n") == ["root", "admin"]
    # A continuation at the end of one file does not swallow the first rule of the next.
    assert reach(tmp_path, "root ALL=(ALL:ALL) ALL \\", "carol ALL=(ALL) ALL\n") == ["root", "admin", "carol"]
    assert reach(tmp_path, BASE, "alice ALL=(ALL) ALL \\") == ["root", "admin", "alice", "bob"]


@pytest.mark.parametrize("rule", [
    "ALL ALL=(ALL) NOPASSWD: ALL",
    "User_Alias WEB = www-data\nWEB ALL=(ALL) ALL",
    "#33 ALL=(ALL) ALL",
    "%#33 ALL=(ALL) ALL",
    "+netgroup ALL=(ALL) ALL",
    '"www-data" ALL=(ALL) ALL',
    "alice,\\\n  ALL ALL=(ALL) ALL",
    "@include /etc/sudoers.local",
])
def test_a_rule_that_can_reach_an_account_without_naming_it_lists_every_account(tmp_path, rule):
    assert len(reach(tmp_path, BASE, rule + "\n")) == len(PASSWD.splitlines())


def test_rules_from_a_directory_service_list_every_account(tmp_path):
    listed = reach(tmp_path, BASE, nsswitch="passwd: files\nsudoers: files sss\n")
    assert len(listed) == len(PASSWD.splitlines())
