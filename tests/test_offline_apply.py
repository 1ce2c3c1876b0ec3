"""`ami-harden apply IMAGE`: hardening a disk image offline through chroot, as a seller runs it.

No VM here: the image is mounted on the host and judged with the offline `check`. The attack on an
offline-hardened copy is in test_hardened.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import assert_one_line_error, changed_tasks

from hardening.apply import apply
from hardening.catalog import CATALOG_PATH
from hardening.disk import changed_image, overlay
from hardening.lab.image import VARIANTS
from hardening.target import Image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="an offline apply mounts the image and needs root")
ADMIN = VARIANTS["traps"]


def cli(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hardening.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def failing_controls(image, profile: str, admin: str = ADMIN) -> dict[str, str]:
    result = cli("check", str(image), "--profile", profile, "--admin-user", admin, "--format", "json")
    rows = json.loads(result.stdout)["results"]
    return {row["control"]: row["evidence"] for row in rows if row["status"] not in ("pass", "skipped")}


def leftover_mounts() -> list[str]:
    mounts = Path("/proc/mounts").read_text().splitlines()
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout.splitlines()
    return [line for line in mounts if "ami-root-" in line or "ami-harden-run" in line] + loops


def assert_a_second_apply_runs_nothing(image: Path, profile: str, admin: str) -> list[str]:
    """Checked first, every control holds: Ansible does not run and the image is left as it was.
    Returns the apply's arguments."""
    assert not failing_controls(image, profile, admin)
    before = digest(image)
    arguments = ["apply", str(image), "--profile", profile, "--admin-user", admin,
                 *(["--confirm-sealed"] if profile == "sealed" else [])]
    again = cli(*arguments)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "checked first: " in again.stdout and "; to apply: none" in again.stdout, again.stdout
    assert "PLAY RECAP" not in again.stdout and "changed=0 " in again.stdout, again.stdout
    assert digest(image) == before, "a second apply that changed nothing rewrote the image"
    return arguments


# A new version (or a seller) changes one control's setting: applied to an image hardened with the old
# one, it changes that control's task alone.
SUDO_02_SETTING = {"ami_hardening_sudo_log_file": "/var/log/sudo-commands.log"}
SUDO_02_TASK = "ami_hardening_sudo : SUDO-02 | Log sudo commands to a file and run them in a pty"


@pytest.mark.parametrize(("profile", "setting"), [("marketplace", SUDO_02_SETTING), ("sealed", None)])
def test_offline_apply_twice_then_full_then_with_a_new_setting(hardened_image, profile, setting):
    """A hardened copy: a second apply runs nothing, a second --full changes nothing, and a changed setting
    changes its own control alone."""
    image = hardened_image("traps", profile, offline=True)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image)], capture_output=True,
                                     text=True, check=True).stdout)
    assert info.get("backing-filename"), "the hardened copy lost its backing file"
    arguments = assert_a_second_apply_runs_nothing(image, profile, ADMIN)

    # The roles themselves are idempotent: with --full every concern runs, and a second --full changes nothing
    # (the first may still pin what the first check found holding, e.g. root's already locked password).
    assert cli(*arguments, "--full").returncode == 0
    pinned = digest(image)
    started = time.monotonic()
    full = cli(*arguments, "--full")
    print(f"offline apply --full on a hardened copy: {time.monotonic() - started:.0f} s")
    assert full.returncode == 0, full.stdout + full.stderr
    assert "changed=0 " in full.stdout and "PLAY RECAP" in full.stdout, full.stdout
    assert digest(image) == pinned, "an apply that changed nothing rewrote the image"
    assert not leftover_mounts()
    if setting:
        lines: list[str] = []
        changed = apply(Image(image), profile=profile, admin_user=ADMIN, extra_vars=setting, progress=lines.append)
        assert changed_tasks(lines) == [SUDO_02_TASK], changed.log_path
        assert not failing_controls(image, profile)


def test_a_second_apply_of_the_plain_lab_image_runs_nothing(hardened_image):
    """The plain lab image's admin is cloud-init's default user, in group sudo as on Debian's own cloud
    image, under a stock /etc/sudoers: SUDO-03 holds after one apply, so nothing reruns."""
    assert_a_second_apply_runs_nothing(hardened_image("debian", "marketplace", offline=True), "marketplace",
                                       VARIANTS["debian"])


def test_a_mounted_root_directory_is_hardened_in_place(tmp_path, traps_image):
    """What Packer's amazon-chroot build hands over: a directory holding the mounted root."""
    with changed_image(overlay(traps_image, tmp_path / "copy.qcow2")) as mounted:
        mounted.keep = False
        result = cli("apply", str(mounted.root), "--admin-user", ADMIN)
        assert result.returncode == 0, result.stdout + result.stderr
        assert not [line for line in Path("/proc/mounts").read_text().splitlines() if f"{mounted.root}/" in line]
        assert not failing_controls(mounted.root, "marketplace")


def test_check_mode_leaves_the_image_untouched(tmp_path, traps_image):
    image = overlay(traps_image, tmp_path / "copy.qcow2")
    before = digest(image)
    result = cli("apply", str(image), "--admin-user", ADMIN, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check mode: nothing changed" in result.stdout
    assert digest(image) == before
    assert not leftover_mounts()


def test_a_controls_profiles_decide_what_check_judges_and_apply_applies(tmp_path, traps_image):
    """ROOT-01 moved out of the sealed profile in a catalog of one's own ($AMI_HARDEN_CATALOG): `check`
    skips it and `apply --check` leaves it out, where the shipped catalog judges it failing."""
    catalog = yaml.safe_load(CATALOG_PATH.read_text())
    for entry in catalog["controls"]:
        if entry["id"] == "ROOT-01":
            entry["profiles"] = ["marketplace"]
    own = tmp_path / "catalog.yml"
    own.write_text(yaml.safe_dump(catalog, sort_keys=False))
    env = {**os.environ, "AMI_HARDEN_CATALOG": str(own)}
    image = overlay(traps_image, tmp_path / "copy.qcow2")
    before = digest(image)

    def root_01(environment: dict[str, str] | None) -> dict:
        result = cli("check", str(image), "--profile", "sealed", "--only", "ROOT-01", "--format", "json",
                     env=environment)
        return json.loads(result.stdout)["results"][0]

    assert root_01(None)["status"] == "fail"
    skipped = root_01(env)
    assert skipped["status"] == "skipped" and "not a control of the sealed profile" in skipped["evidence"]
    result = cli("apply", str(image), "--profile", "sealed", "--confirm-sealed", "--admin-user", ADMIN, "--check",
                 env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    to_apply = next(line for line in result.stdout.splitlines() if "checked first: " in line).split("to apply: ")[1]
    assert "ROOT-01" not in to_apply.split() and "ROOT-02" in to_apply.split(), to_apply
    assert digest(image) == before


def test_an_admin_that_is_neither_an_account_nor_cloud_inits_default_user_is_refused(tmp_path, traps_image):
    image = overlay(traps_image, tmp_path / "copy.qcow2")
    before = digest(image)
    assert_one_line_error(cli("apply", str(image), "--admin-user", "nobody-here"),
                          "admin user nobody-here does not exist on the instance and is not the default user")
    assert_one_line_error(cli("apply", str(image)), "--admin-user is required for an offline marketplace apply")
    assert digest(image) == before
    assert not leftover_mounts()


# A SHA-512 crypt hash, as an account keeps one when a password was set while the image was built.
BUILD_PASSWORD_HASH = ("$6$amihardening$HXYs5lhbOxVNejNG2DnNyjCgEFNewYkC9D8z/2yMFqjl"
                       "YA0pzR/qWudbbP8IwBiWIF9iA.AQT26686Efo8UP0.")


def test_a_password_hash_left_in_the_image_is_taken_out_and_roots_is_locked(tmp_path, traps_image):
    """ROOT-03 on an image where root and another account kept a password hash from the build: the other
    account's hash is replaced by `*` (no password matches it, no hash is left to crack, and sshd, also with
    `UsePAM no`, does not take the account for a locked one, as it does a `!` prefix); root's is locked."""
    with changed_image(overlay(traps_image, tmp_path / "copy.qcow2")) as mounted:
        mounted.keep = False
        shadow = mounted.root / "etc" / "shadow"
        rows = [line.split(":") for line in shadow.read_text().splitlines()]
        for row in rows:
            if row[0] in ("root", "daemon"):
                row[1] = BUILD_PASSWORD_HASH
        shadow.write_text("".join(":".join(row) + "\n" for row in rows))
        assert "ROOT-03" in failing_controls(mounted.root, "marketplace", ADMIN)
        result = cli("apply", str(mounted.root), "--admin-user", ADMIN, "--only", "ROOT-03")
        assert result.returncode == 0, result.stdout + result.stderr
        fields = {line.split(":")[0]: line.split(":")[1] for line in shadow.read_text().splitlines()}
        assert fields["daemon"] == "*"
        assert fields["root"] == f"!{BUILD_PASSWORD_HASH}"
        assert "ROOT-03" not in failing_controls(mounted.root, "marketplace", ADMIN)
    assert not leftover_mounts()


def tree_digest(directory: Path) -> str:
    """One hash of every file's path, mode and content (a link's target) under `directory`."""
    total = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        total.update(f"{path.relative_to(directory)} {path.lstat().st_mode:o}".encode())
        if path.is_symlink():
            total.update(os.readlink(path).encode())
        elif path.is_file():
            total.update(path.read_bytes())
    return total.hexdigest()


@pytest.mark.parametrize(("files", "expected"), [
    ({"etc/ssh/sshd_config.d/zz-broken.conf": "NoSuchOption yes\n"},
     "sshd's configuration on the target fails its own test (sshd -t: "),
    ({"etc/sudoers.d/zz-broken": "this is not sudoers\n"},
     "the sudo policy on the target fails its own test (visudo -c: "),
    ({"usr/lib/os-release": 'PRETTY_NAME="Debian GNU/Linux 10 (buster)"\nNAME="Debian GNU/Linux"\nVERSION_ID="10"\n'
                            'VERSION="10 (buster)"\nVERSION_CODENAME=buster\nID=debian\n',
      "etc/debian_version": "10.13\n"}, "unsupported OS Debian 10"),
], ids=["broken-sshd", "broken-sudoers", "debian-10"])
def test_a_root_the_roles_cannot_harden_is_refused_before_any_change(tmp_path, traps_image, files, expected):
    """A mounted root is changed in place: the refusal must come before the first change."""
    with changed_image(overlay(traps_image, tmp_path / "copy.qcow2")) as mounted:
        mounted.keep = False
        for path, text in files.items():
            (mounted.root / path).write_text(text)
        before = tree_digest(mounted.root / "etc"), tree_digest(mounted.root / "boot")
        assert_one_line_error(cli("apply", str(mounted.root), "--admin-user", ADMIN), expected)
        assert (tree_digest(mounted.root / "etc"), tree_digest(mounted.root / "boot")) == before
    assert not leftover_mounts()


def test_what_is_not_a_system_image_is_refused_untouched(tmp_path):
    blank = tmp_path / "blank.raw"
    blank.write_bytes(b"\0" * (4 * 1024 * 1024))
    assert_one_line_error(cli("apply", str(blank), "--admin-user", ADMIN),
                          "no partition holds a Linux root filesystem")
    assert blank.read_bytes() == b"\0" * (4 * 1024 * 1024)

    empty = tmp_path / "empty-root"
    empty.mkdir()
    assert_one_line_error(cli("apply", str(empty), "--admin-user", ADMIN), "holds no system root (no /bin/sh)")
    assert not any(empty.iterdir())
    assert not leftover_mounts()


def test_an_image_in_use_is_refused_untouched(tmp_path, traps_image):
    image = overlay(traps_image, tmp_path / "copy.qcow2")
    before = digest(image)
    # qemu-storage-daemon opens the image for writing and locks it, as a running VM does.
    holder = subprocess.Popen(["qemu-storage-daemon", "--blockdev", f"driver=file,filename={image},node-name=f",
                               "--blockdev", "driver=qcow2,file=f,node-name=q"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        assert_one_line_error(cli("apply", str(image), "--admin-user", ADMIN), "is in use")
    finally:
        holder.terminate()
        holder.wait(timeout=30)
    assert digest(image) == before
