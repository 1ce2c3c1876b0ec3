"""Run the Packer template's local QEMU build, and check the sealed image it leaves."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hardening.apply import PLAYBOOKS, ansible_strategy_env, selection
from hardening.catalog import control, require_profile
from hardening.disk import image_format, mounted_root
from hardening.errors import HardeningError
from hardening.resources import shipped
from hardening.seed import seed_files

# The directory that holds the hardening package: the checkout, or site-packages.
REPO = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = shipped("packer")
PLUGINS_FILE = "plugins.pkr.hcl"
LOCAL_SOURCE = "qemu.hardened"
BUILD_TIMEOUT = float(os.environ.get("AMI_HARDEN_BUILD_TIMEOUT", "1800"))
TIMED_OUT = 124
# No update check (it would call out to the network) and no colour codes in the output Packer prints.
PACKER_ENV = {"CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"}
CHECK_COMMAND = shlex.join([sys.executable, "-m", "hardening.cli"])
HISTORY_FILES = (".bash_history", ".zsh_history", ".sh_history", ".ash_history", ".history",
                 ".python_history")


class BuildFailed(Exception):
    """The build ran and failed: `reason` says why (the failing controls when verification failed)."""

    def __init__(self, reason: str, controls: Sequence[str] = ()):
        super().__init__(reason)
        self.reason = reason
        self.controls = list(controls)


@dataclass(frozen=True)
class LocalBuild:
    """A finished local build: the hardened image and the public half of the build's key."""

    image: Path
    build_public_key: str
    seconds: float


def packer_version() -> tuple[int, ...]:
    """The installed Packer's version, e.g. (1, 6, 6); HardeningError when Packer is missing."""
    if shutil.which("packer") is None:
        raise HardeningError("packer is missing; install it (Debian: apt-get install packer)")
    out = subprocess.run(["packer", "version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise HardeningError(f"cannot read the Packer version from {out.strip()!r}")
    return tuple(int(part) for part in match.groups())


def stage_template(dest: Path, version: tuple[int, ...]) -> Path:
    """Link the template into `dest`, leaving out the plugin block that Packer 1.6 rejects."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in TEMPLATE_DIR.iterdir():
        if entry.name == PLUGINS_FILE and version < (1, 7):
            continue
        (dest / entry.name).symlink_to(entry)
    return dest


def make_build_key(directory: Path) -> tuple[Path, str]:
    """A fresh ed25519 key pair for one build; returns the private key path and the public line."""
    key = directory / "build-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ami-harden-build-{uuid.uuid4().hex[:8]}",
                    "-f", str(key)], check=True)
    return key, Path(f"{key}.pub").read_text().strip()


def packer_command(stage: Path, variables: dict[str, object], only: str = LOCAL_SOURCE) -> list[str]:
    """The `packer build` command for one source of the staged template."""
    command = ["packer", "build", "-color=false", f"-only={only}"]
    for name, value in variables.items():
        text = value if isinstance(value, str) else json.dumps(value)
        command += ["-var", f"{name}={text}"]
    return [*command, str(stage)]


def _require_tools() -> None:
    missing = [tool for tool in ("ansible-playbook", "qemu-system-x86_64", "qemu-img", "ssh-keygen")
               if shutil.which(tool) is None]
    if shutil.which("xorriso") is None and shutil.which("mkisofs") is None:
        missing.append("xorriso or mkisofs")
    if missing:
        raise HardeningError(f"the local build needs {', '.join(missing)}; run scripts/install.sh first")


def run_bounded(command: Sequence[str], cwd: Path, env: dict[str, str], timeout: float,
                log: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run a command in its own process group, streaming its lines to `log`.

    On timeout or interruption the whole group (Packer, its QEMU and Ansible) is stopped.
    """
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill_group(process)

    timer = threading.Timer(timeout, expire)
    timer.start()
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            log(lines[-1])
        process.wait()
    finally:
        timer.cancel()
        _kill_group(process)
    if expired.is_set():
        lines.append(f"ami-harden: packer ran longer than {timeout:.0f} s and was stopped")
        return TIMED_OUT, lines
    return process.returncode, lines


def _kill_group(process: subprocess.Popen) -> None:
    """Stop the process group led by `process` (TERM, then KILL) if anything in it still runs."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.5)


def crashed_before_verdict(code: int, lines: Sequence[str]) -> bool:
    """Whether Packer panicked (a fault of the tool) before verification said anything."""
    return (code not in (0, TIMED_OUT) and any("PACKER CRASH" in line for line in lines)
            and not any("VERIFICATION FAILED" in line for line in lines))


def failure_reason(lines: Sequence[str], report_dir: Path) -> BuildFailed:
    """A BuildFailed naming the controls the verification's JSON reports (`report_dir`/verify-*.json)
    give as failing, or Packer's last error when verification did not fail."""
    controls = sorted({row["control"] for path in report_dir.glob("verify-*.json")
                       for row in json.loads(path.read_text())["results"] if row["status"] in ("fail", "error")})
    if controls or any("VERIFICATION FAILED" in line for line in lines):
        named = ", ".join(controls) if controls else "see the check output above"
        return BuildFailed(f"verification failed: {named}", controls)
    errors = [line.strip() for line in lines if "errored" in line or line.lstrip().startswith(("Error", "* "))]
    return BuildFailed(errors[-1] if errors else (lines[-1] if lines else "packer printed nothing"))


def build_local(base: Path, output_dir: Path, profile: str = "marketplace", admin_user: str = "admin",
                ansible_args: Sequence[str] = (), sealed_confirmed: bool = False, skip: Sequence[str] = (),
                timeout: float = BUILD_TIMEOUT, log: Callable[[str], None] = print) -> LocalBuild:
    """Harden, verify and seal `base` with the template's QEMU source; return the hardened qcow2.

    `skip` takes control ids: each is switched off in the hardening run and left out of verification.
    The image lands in `output_dir` as BASE-hardened-PROFILE.qcow2 only after the offline seal check
    passes. Raises HardeningError on bad input and BuildFailed when the build or the check fails.
    """
    base = Path(base).resolve()
    require_profile(profile)
    if profile == "sealed" and not sealed_confirmed:
        raise HardeningError("the sealed profile leaves nobody with sudo and breaks AWS Marketplace policy; "
                             "confirm it (--confirm-sealed)")
    _, switched_off = selection(skip, profile=profile)
    image_format(base)
    version = packer_version()
    _require_tools()
    if os.geteuid() != 0:
        raise HardeningError("the local build mounts its image to check the seal, which needs root")
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    name = f"{base.name.removesuffix('.qcow2').removesuffix('.raw')}-hardened-{profile}.qcow2"
    started = time.monotonic()
    # Packer's plugin sockets and ISO staging go to TMPDIR: a short path of its own (a socket path
    # longer than 107 bytes fails), removed with everything else the build leaves.
    with (tempfile.TemporaryDirectory(prefix=".ami-harden-build-", dir=output_dir) as tmp,
          tempfile.TemporaryDirectory(prefix="ami-harden-packer-") as scratch):
        work = Path(tmp)
        key, public_key = make_build_key(work)
        variables: dict[str, object] = {
            "base_image": str(base),
            "output_directory": str(work / "output"),
            "image_name": name,
            "ssh_private_key_file": str(key),
            "seed_files": [str(path) for path in seed_files(work / "seed", public_key, "ami-build")],
            "admin_user": admin_user,
            "profile": profile,
            "sealed_confirmed": sealed_confirmed,
            "ansible_extra_args": [*(["--extra-vars", json.dumps(switched_off)] if switched_off else []),
                                   *ansible_args],
            "skip_controls": [control(control_id).id for control_id in skip],
            "playbook_dir": str(PLAYBOOKS),
            "check_command": CHECK_COMMAND,
            "report_dir": str(work / "reports"),
        }
        (work / "reports").mkdir()
        # PYTHONPATH: the verification step runs this ami-harden, whatever else is installed.
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = os.environ | PACKER_ENV | ansible_strategy_env() | {
            "TMPDIR": scratch, "PACKER_CACHE_DIR": str(work / "packer_cache"), "PYTHONPATH": python_path}
        command = packer_command(stage_template(work / "template", version), variables)
        code, lines = run_bounded(command, work, env, timeout, log)
        if crashed_before_verdict(code, lines):
            log("ami-harden: packer itself crashed before any verdict; running the build once more")
            shutil.rmtree(work / "output", ignore_errors=True)
            (work / "crash.log").unlink(missing_ok=True)
            code, lines = run_bounded(command, work, env, timeout, log)
        if code != 0:
            failed = BuildFailed(lines[-1]) if code == TIMED_OUT else failure_reason(lines, work / "reports")
            if (work / "crash.log").exists():
                kept = output_dir / f"{name}.packer-crash.log"
                shutil.copyfile(work / "crash.log", kept)
                failed = BuildFailed(f"packer crashed (log: {kept})")
            raise failed
        built = find_image(work / "output", name)
        left = seal_leftovers(built, public_key)
        if left:
            raise BuildFailed("the seal left instance state in the image: " + "; ".join(left))
        final = output_dir / name
        os.replace(built, final)
    return LocalBuild(final, public_key, time.monotonic() - started)


def find_image(directory: Path, name: str) -> Path:
    """The image Packer wrote into `directory`; HardeningError when it is not there."""
    path = Path(directory) / name
    if not path.is_file():
        found = sorted(p.name for p in Path(directory).glob("*")) if Path(directory).is_dir() else []
        raise HardeningError(f"packer finished but {path} is missing (found: {', '.join(found) or 'nothing'})")
    return path


def seal_leftovers(image: Path, build_public_key: str | None = None) -> list[str]:
    """What the seal should have removed but is still in `image` (mounted read-only); empty when sealed."""
    with mounted_root(Path(image)) as root:
        return _leftovers(root, build_public_key)


def _homes(root: Path) -> list[Path]:
    homes = {root / "root"}
    passwd = root / "etc" / "passwd"
    for line in passwd.read_text().splitlines() if passwd.exists() else []:
        fields = line.split(":")
        if len(fields) > 5 and fields[5].startswith("/"):
            homes.add(root / fields[5].lstrip("/"))
    return sorted(home for home in homes if home.is_dir() and not home.is_symlink())


def _leftovers(root: Path, build_public_key: str | None) -> list[str]:
    found: list[str] = []
    key_body = build_public_key.split()[1] if build_public_key else None
    for home in _homes(root):
        for name in ("authorized_keys", "authorized_keys2"):
            path = home / ".ssh" / name
            if path.exists():
                text = path.read_text(errors="replace")
                has_key = key_body is not None and key_body in text
                found.append(f"/{path.relative_to(root)}" + (" holds the build key" if has_key else " exists"))
        found += [f"/{(home / h).relative_to(root)}" for h in HISTORY_FILES if (home / h).exists()]
    found += [f"/{p.relative_to(root)}" for p in sorted((root / "etc" / "ssh").glob("ssh_host_*"))]
    if (root / "var/lib/cloud/instance").exists() or (root / "var/lib/cloud/instances").exists():
        found.append("/var/lib/cloud/instance (cloud-init instance state)")
    found += [f"/{p.relative_to(root)}" for p in sorted((root / "var/log").glob("cloud-init*.log"))]
    machine_id = root / "etc/machine-id"
    if machine_id.exists() and machine_id.read_text().strip():
        found.append("/etc/machine-id is not empty")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() and not dbus_id.is_symlink():
        found.append("/var/lib/dbus/machine-id")
    return found
