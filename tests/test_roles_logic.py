"""Role logic that runs here for real: the initramfs guard script against a fake blkid, the preflight
OS matrix, the cloud-init module filter, the judgement of emergency and rescue mode, and the
RHEL/Amazon Linux branch of the label-boot role in check mode (real ansible-playbook runs on
localhost, with facts set per host)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLES = ROOT / "playbooks" / "roles"
GUARD = ROLES / "ami_hardening_label_boot" / "files" / "ami-root-unique"
FATAL = "fatal: ["


def fake_bin(directory: Path, name: str, script: str) -> None:
    """An executable shell script `name` in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


# --- LABEL-03: the initramfs guard ---------------------------------------------------------------

BLKID = """\
case "$*" in
  *"-t UUID=1111"*) echo /dev/vda1 ;;
  *"-t UUID=2222"*) printf '/dev/vda1\\n/dev/vdb1\\n' ;;
  *"-t PARTUUID=3333-01"*) printf '/dev/vda1\\n/dev/vdc\\n/dev/vdd1\\n' ;;
  *"-t LABEL=cloudimg-rootfs"*) printf '/dev/vda1\\n/dev/vdb1\\n' ;;
  *"-t UUID=5555"*) exit 4 ;;
  *) exit 2 ;;
esac
"""


def run_guard(tmp_path: Path, cmdline: str, *args: str) -> tuple[int | None, Path, Path]:
    """Run the guard with a fake /proc and /dev; (exit code or None if it had to be killed, proc, dev)."""
    proc, dev, bin_dir = tmp_path / "proc", tmp_path / "dev", tmp_path / "bin"
    proc.mkdir()
    dev.mkdir()
    (proc / "cmdline").write_text(cmdline + "\n")
    fake_bin(bin_dir, "blkid", BLKID)
    fake_bin(bin_dir, "udevadm", "exit 0\n")
    fake_bin(bin_dir, "sleep", "exec /bin/sleep 0.2\n")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "AMI_ROOT_UNIQUE_PROC": str(proc), "AMI_ROOT_UNIQUE_DEV": str(dev)}
    process = subprocess.Popen(["sh", str(GUARD), *args], env=env, start_new_session=True,
                               stdout=subprocess.PIPE, text=True)
    try:
        process.wait(timeout=3)
        return process.returncode, proc, dev
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None, proc, dev


@pytest.mark.parametrize("cmdline", [
    "BOOT_IMAGE=/vmlinuz root=UUID=1111 ro",
    "ro quiet",
    "root=UUID=9999 ro",
])
def test_guard_boots_an_unambiguous_root(tmp_path, cmdline):
    code, proc, dev = run_guard(tmp_path, cmdline)
    assert code == 0
    assert not (proc / "sysrq-trigger").exists()
    assert not (dev / "console").exists()


@pytest.mark.parametrize(("cmdline", "identifier", "devices"), [
    ("root=UUID=2222 ro console=ttyS0", "UUID=2222", "2 devices: /dev/vda1 /dev/vdb1"),
    ("root=PARTUUID=3333-01 ro", "PARTUUID=3333-01", "3 devices: /dev/vda1 /dev/vdc /dev/vdd1"),
    ("root=LABEL=cloudimg-rootfs ro", "LABEL=cloudimg-rootfs", "2 devices: /dev/vda1 /dev/vdb1"),
    ("root=/dev/disk/by-uuid/2222 ro", "UUID=2222", "2 devices: /dev/vda1 /dev/vdb1"),
])
def test_guard_powers_off_on_an_ambiguous_root(tmp_path, cmdline, identifier, devices):
    assert_refused(tmp_path, cmdline, f"root {identifier} is ambiguous ({devices})")


def assert_refused(tmp_path, cmdline: str, reason: str) -> None:
    tmp_path.mkdir(exist_ok=True)
    code, proc, dev = run_guard(tmp_path, cmdline)
    assert code is None, "the guard must never return (no initramfs shell)"
    assert (proc / "sysrq-trigger").read_text() == "o\n"
    message = f"ami-hardening: refusing to boot: {reason}"
    assert (dev / "console").read_text() == message + "\n"
    assert (dev / "kmsg").read_text() == f"<2>{message}\n"


def test_guard_fails_closed_on_a_device_path_or_a_blkid_error(tmp_path):
    assert_refused(tmp_path / "a", "root=/dev/vda1 ro",
                   "root /dev/vda1 is a device path: the order of the disks, which the launcher chooses, decides")
    assert_refused(tmp_path / "b", "root=UUID=5555 ro",
                   "cannot count the devices carrying root UUID=5555 (blkid exit 4)")


def test_guard_answers_initramfs_tools_prereqs(tmp_path):
    code, proc, _ = run_guard(tmp_path, "root=UUID=2222", "prereqs")
    assert code == 0
    assert not (proc / "sysrq-trigger").exists()


def test_guard_is_posix_sh():
    for shell in ("sh", "bash"):
        assert subprocess.run([shell, "-n", str(GUARD)], check=False).returncode == 0


# --- ansible-playbook on localhost with per-host facts --------------------------------------------

SET_FACTS = {
    "name": "Pretend to be another system",
    "ansible.builtin.set_fact": {
        "cacheable": True,
        "distribution": "{{ fake_os[0] }}",
        "distribution_version": "{{ fake_os[1] }}",
        "distribution_major_version": "{{ fake_os[1].split('.')[0] }}",
        "os_family": "{{ fake_os[2] }}",
        "kernel": "5.14.0-fake",
    },
}


def run_play(tmp_path: Path, hosts: dict, tasks: list, *args: str, path: str | None = None,
             env: dict | None = None) -> tuple[int, str]:
    """Run one play over local hosts; return (exit code, output)."""
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                         "hosts": hosts}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False,
                                                        "tasks": tasks}]))
    env = {**os.environ, **(env or {}), "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False",
           "PATH": f"{path}:{os.environ['PATH']}" if path else os.environ["PATH"]}
    run = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml"),
                          *args], capture_output=True, text=True, env=env, check=False, timeout=600)
    return run.returncode, run.stdout + run.stderr


def failures(output: str) -> dict[str, str]:
    """host -> message of its first failed task."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith(FATAL) and "=> " in line:
            host = line[len(FATAL):line.index("]")]
            found.setdefault(host, json.loads(line.split("=> ", 1)[1]).get("msg", ""))
    return found


PREFLIGHT_CASES = {
    # host: (distribution, version, family, extra host vars, expected failure or None)
    "debian12": ("Debian", "12.5", "Debian", {}, None),
    "ubuntu2204": ("Ubuntu", "22.04", "Debian", {}, None),
    "ubuntu2404": ("Ubuntu", "24.04", "Debian", {}, None),
    "amazon2023": ("Amazon", "2023", "RedHat", {}, None),
    "rhel9": ("RedHat", "9.4", "RedHat", {}, None),
    "centos9": ("CentOS", "9", "RedHat", {}, "unsupported OS CentOS 9: ami-hardening supports Debian 12"),
    "debian11": ("Debian", "11.9", "Debian", {}, "unsupported OS Debian 11"),
    "ubuntu2004": ("Ubuntu", "20.04", "Debian", {}, "unsupported OS Ubuntu 20.04"),
    "amazon2": ("Amazon", "2", "RedHat", {}, "unsupported OS Amazon 2"),
    "bad_profile": ("Debian", "12", "Debian", {"ami_hardening_profile": "gold"}, "ami_hardening_profile"),
    "sealed_unconfirmed": ("Debian", "12", "Debian", {"ami_hardening_profile": "sealed"},
                           "the sealed profile leaves nobody with sudo"),
    "sealed_confirmed": ("Debian", "12", "Debian", {"ami_hardening_profile": "sealed",
                                                    "ami_hardening_sealed_confirmed": True,
                                                    "ami_hardening_admin_user": "ami-no-such-user"}, None),
    "root_admin": ("Debian", "12", "Debian", {"ami_hardening_admin_user": "root"}, "(not root)"),
    "no_admin": ("Debian", "12", "Debian", {"ami_hardening_admin_user": ""}, "set ami_hardening_admin_user"),
    "ghost_admin": ("Debian", "12", "Debian", {"ami_hardening_admin_user": "ami-no-such-user"},
                    "admin user ami-no-such-user does not exist on the instance"),
    "ssh_as_root": ("Debian", "12", "Debian", {"ansible_connection": "ssh", "ansible_host": "127.0.0.1",
                                               "ansible_port": 9, "ansible_user": "root"},
                    "connect as the admin user nobody, not root"),
}


def test_preflight_matrix(tmp_path):
    hosts = {name: {"fake_os": [dist, version, family], "ami_hardening_admin_user": "nobody", **extra}
             for name, (dist, version, family, extra, _) in PREFLIGHT_CASES.items()}
    tasks = [SET_FACTS, {"name": "Preflight", "ansible.builtin.include_role": {"name": "ami_hardening_preflight"}}]
    _, output = run_play(tmp_path, hosts, tasks, "--forks", "8")
    failed = failures(output)
    for name, (*_, expected) in PREFLIGHT_CASES.items():
        if expected is None:
            assert name not in failed, f"{name}: {failed.get(name)}"
        else:
            assert expected in failed.get(name, ""), f"{name}: {failed.get(name)}"


def test_module_filter_keeps_the_distribution_modules(tmp_path):
    base = {"cloud_init_modules": ["migrator", "seed_random", "bootcmd", "write-files", "growpart", "users-groups",
                                   "ssh"],
            "cloud_config_modules": ["ssh-import-id", "locale", "set-passwords", "runcmd", "timezone"],
            "cloud_final_modules": ["scripts-user", "final-message"]}
    override = {"cloud_final_modules": [["scripts_user", "always"], "cc_ssh_authkey_fingerprints",
                                        "keys_to_console", "power_state_change", "final_message"]}
    out = tmp_path / "lists.json"
    task = {"name": "Filter", "ansible.builtin.copy": {
        "dest": str(out), "mode": "0644",
        "content": "{{ [base, empty, override] | ami_hardening_module_lists(deny) | to_json }}"},
        "vars": {"base": base, "override": override, "empty": None,
                 "deny": yaml.safe_load((ROLES / "ami_hardening_user_data" / "defaults" / "main.yml").read_text())[
                     "ami_hardening_user_data_module_denylist"]}}
    plugins = {"ANSIBLE_FILTER_PLUGINS": str(ROLES / "ami_hardening_user_data" / "filter_plugins")}
    code, output = run_play(tmp_path, {"localhost": {}}, [task], env=plugins)
    assert code == 0, output
    assert json.loads(out.read_text()) == {
        "cloud_init_modules": ["migrator", "growpart", "users-groups", "ssh"],
        "cloud_config_modules": ["locale", "set-passwords", "timezone"],
        "cloud_final_modules": ["cc_ssh_authkey_fingerprints", "keys_to_console", "final_message"],
    }


def test_label_boot_bls_branch_in_check_mode(tmp_path):
    """RHEL 9 / Amazon Linux 2023: grubby, grub2-mkconfig and dracut are chosen; check mode writes nothing."""
    bin_dir = tmp_path / "bin"
    fake_bin(bin_dir, "findmnt", 'echo "/dev/nvme0n1p1 xfs"\n')
    fake_bin(bin_dir, "blkid", 'echo "1c419d6c-5064-4a2b-953c-05b2c67edb15"\n')
    fake_bin(bin_dir, "grubby", "printf 'index=0\\nargs=\"ro root=LABEL=/ console=ttyS0\"\\n'\n")
    fake_bin(bin_dir, "lsinitrd", "echo usr/lib/dracut/hooks/pre-mount/10-other.sh\n")
    grub_cfg = tmp_path / "grub.cfg"
    grub_cfg.write_text("search --no-floppy --fs-uuid --set=root 1234\nblscfg\n")
    module_dir = Path("/usr/lib/dracut/modules.d/95ami-root-unique")
    existed = module_dir.exists()
    hosts = {"localhost": {"fake_os": ["RedHat", "9.4", "RedHat"]}}
    tasks = [SET_FACTS, {"name": "Label boot", "ansible.builtin.include_role": {"name": "ami_hardening_label_boot"}}]
    code, output = run_play(tmp_path, hosts, tasks, "--check", "-v", "-e",
                            f"ami_hardening_label_boot_grub_cfg={grub_cfg}", path=str(bin_dir))
    assert code == 0, output
    would_run = [json.loads(line.split("=> ", 1)[1])["cmd"] for line in output.splitlines()
                 if "Command would have run if not in check mode" in line]
    assert ["grubby", "--update-kernel=ALL", "--args=root=UUID=1c419d6c-5064-4a2b-953c-05b2c67edb15"] in would_run
    assert ["grub2-mkconfig", "-o", str(grub_cfg)] in would_run
    assert ["dracut", "-f", "--regenerate-all"] in would_run
    assert "update-grub" not in output and "update-initramfs" not in output
    assert "Install the guard as a dracut module" in output
    assert module_dir.exists() == existed
    assert grub_cfg.read_text().startswith("search --no-floppy")


# --- ROOT-06: emergency and rescue mode ------------------------------------------------------------

def sulogin_filters():
    spec = importlib.util.spec_from_file_location("sulogin", ROLES / "ami_hardening_root_login" / "filter_plugins"
                                                  / "sulogin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VENDOR = {f"/usr/lib/systemd/system/{mode}.service":
          f"[Service]\nExecStart=-/lib/systemd/systemd-sulogin-shell {mode}\n" for mode in ("emergency", "rescue")}
UNITS = ["emergency.service", "rescue.service"]
UNSET = "[Service]\nUnsetEnvironment=SYSTEMD_SULOGIN_FORCE\n"


def test_sulogin_role_moves_aside_what_changes_the_units_and_judges_what_it_leaves():
    sulogin = sulogin_filters()
    files = {**VENDOR,
             "/etc/systemd/system/emergency.service.d/sulogin.conf": "[Service]\nEnvironment=SYSTEMD_SULOGIN_FORCE=1\n",
             "/etc/systemd/system/rescue.service": "[Service]\nExecStart=-/bin/sh\n",
             "/etc/systemd/system/rescue.service.d/zz-unset.conf": "[Service]\nUnsetEnvironment=\n",
             "/etc/systemd/system/rescue.service.d/memory.conf": "[Service]\nEnvironment=LANG=C\n",
             "/usr/lib/systemd/system/service.d/10-timeout.conf": "[Service]\nTimeoutStartSec=90\n"}
    assert sulogin.overrides(files, UNITS, "ami-hardening.conf") == [
        "/etc/systemd/system/emergency.service.d/sulogin.conf", "/etc/systemd/system/rescue.service",
        "/etc/systemd/system/rescue.service.d/zz-unset.conf"]
    assert sulogin.problems_after(files, UNITS, "ami-hardening.conf", UNSET) == []
    assert len(sulogin.sulogin_problems(files, UNITS)) == 3
    # A drop-in for every service is not the role's to move: what it leaves open fails the role.
    files["/run/systemd/system/service.d/zz-reset.conf"] = "[Service]\nUnsetEnvironment=\n"
    assert sulogin.problems_after(files, UNITS, "ami-hardening.conf", UNSET) == [
        f"{unit} does not unset SYSTEMD_SULOGIN_FORCE: with it (also from systemd.setenv= on the kernel command line) "
        "sulogin opens a root shell without a password" for unit in UNITS]
    # A masked unit starts nothing; a same-named drop-in in /etc hides the packaged one.
    masked = {**VENDOR, "/etc/systemd/system/emergency.service": "",
              "/usr/lib/systemd/system/rescue.service.d/x.conf": "[Service]\nExecStart=\nExecStart=/bin/bash\n",
              "/etc/systemd/system/rescue.service.d/x.conf": UNSET}
    assert sulogin.sulogin_problems(masked, UNITS) == []
