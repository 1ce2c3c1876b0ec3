"""Apply the hardening playbook to a target with ansible-playbook, and read back what it did.

The playbooks are found through hardening.resources: in the checkout, or inside an installed wheel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import yaml

from hardening import ssh
from hardening.catalog import require_profile, select
from hardening.check import run_checks
from hardening.disk import chroot_root
from hardening.errors import HardeningError
from hardening.resources import shipped
from hardening.target import Image, Target

PLAYBOOKS = shipped("playbooks")
PLAYBOOK = PLAYBOOKS / "harden.yml"
LOCAL = "local"
SEALED_WARNING = (
    "the sealed profile leaves nobody with sudo and breaks these AWS Marketplace policy lines: "
    '"AMIs must allow operating system (OS)-level administration capabilities" and '
    '"Linux-based AMIs must ... allow only sudo access through a user account"; '
    "pass --confirm-sealed to build it anyway"
)
_RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)")
_FATAL = re.compile(r"^fatal: \[(?P<host>[^\]]+)\]: (?P<kind>FAILED|UNREACHABLE)! => (?P<data>.*)$")
_TASK = re.compile(r"^TASK \[(?P<name>.*)\]")


@dataclass
class ApplyResult:
    """What one ansible-playbook run did, summed over its hosts (from the PLAY RECAP)."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    hosts: list[str] = field(default_factory=list)
    check: bool = False
    log_path: Path | None = None
    returncode: int = 0
    holding: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: task counts, mode, the controls left alone because they already held, and the log."""
        mode = " (check mode: nothing changed)" if self.check else ""
        held = f"; {len(self.holding)} controls already held and were not re-applied" if self.holding else ""
        return (f"tasks ok={self.ok} changed={self.changed} failed={self.failed} "
                f"unreachable={self.unreachable} skipped={self.skipped}{mode}{held}; log: {self.log_path}")


def selection(skip: Iterable[str] = (), only: Iterable[str] = (),
              profile: str | None = None) -> tuple[list[str], dict[str, bool]]:
    """Tags to run and switches to turn off for `skip`/`only` control ids and, given a `profile`, for the
    controls the catalog leaves out of it; HardeningError for an unknown id.

    A skipped control is switched off through its variable rather than --skip-tags: tasks shared by
    several controls (reading grub.cfg, regenerating it) carry all their tags and must still run.
    """
    only = list(only)
    chosen, off = select(only, skip, profile)
    tags = list(dict.fromkeys(item.tag for item in chosen)) if only else []
    return tags, {item.variable: False for item in off}


def inventory_for(target: Target | str | Path) -> dict | Path:
    """An inventory for `target`: a Target, "local", or the path of an existing inventory file."""
    if isinstance(target, Target):
        return target.ansible_inventory()
    if str(target) == LOCAL:
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        if os.geteuid() == 0:
            local["ansible_become"] = False
        return {"all": {"hosts": {"localhost": local}}}
    path = Path(target)
    if not path.is_file():
        raise HardeningError(f"inventory {path} does not exist (TARGET is ssh://USER@HOST:PORT, local, or a file)")
    if not inventory_hosts(path):
        raise HardeningError(f"inventory {path} names no host")
    return path


def inventory_hosts(path: Path) -> list[str]:
    """The hosts the inventory file `path` names, as Ansible reads it; HardeningError when it does not parse
    (ansible-playbook would warn, run nothing and succeed)."""
    require_ansible()
    result = subprocess.run(["ansible-inventory", "-i", str(path), "--list"], capture_output=True, text=True,
                            env={**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_NOCOLOR": "1"},
                            timeout=120, check=False)
    if result.returncode != 0:
        lines = [line.removeprefix("[WARNING]:").strip() for line in result.stderr.splitlines() if line.strip()]
        reason = next((line for line in lines if line.startswith("Failed to parse")), lines[-1] if lines else "")
        raise HardeningError(f"inventory {path} does not parse ({reason or 'ansible-inventory failed'})")
    groups = json.loads(result.stdout)
    return sorted({host for name, group in groups.items() if name != "_meta" for host in group.get("hosts", [])})


def ansible_strategy_env() -> dict[str, str]:
    """Run plays with Mitogen's strategy: one Python interpreter per host kept across tasks, instead of a
    new one for each (a task costs a second or two less; several seconds on an emulated instance)."""
    import ansible_mitogen

    plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"}


def default_log_path() -> Path:
    """A fresh log file under ~/.cache/ami-harden/logs."""
    directory = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ami-harden" / "logs"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"apply-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def require_ansible() -> None:
    """HardeningError unless ansible-playbook is on PATH."""
    if shutil.which("ansible-playbook") is None:
        raise HardeningError("ansible-playbook is missing; run scripts/install.sh (it installs ansible-core)")


def _preflight(target: Target | str | Path) -> None:
    """Fail before Ansible starts when the target cannot be reached as given."""
    require_ansible()
    if isinstance(target, Target):
        ssh.connect(target).close()
    elif str(target) == LOCAL and os.geteuid() != 0 and shutil.which("sudo") is None:
        raise HardeningError("a local run needs root or sudo")


def _failure_message(task: str, host: str, kind: str, data: str, log_path: Path) -> str:
    """One line for a failed or unreachable task; the preflight's refusals and the lockout guard's stop
    are shown as they are."""
    try:
        message = str(json.loads(data).get("msg", data))
    except (ValueError, AttributeError):
        message = data
    message = " ".join(message.split())
    if task.startswith(("ami_hardening_preflight", "ami_hardening_lockout_guard")) and kind == "FAILED":
        return message
    what = "unreachable during" if kind == "UNREACHABLE" else "failed in task"
    return f"{host}: {what} '{task}': {message} (log: {log_path})"


def apply(target: Target | Image | str | Path, profile: str = "marketplace", admin_user: str | None = None,
          skip: Iterable[str] = (), only: Iterable[str] = (), check: bool = False, diff: bool = False,
          extra_vars: dict | None = None, log_path: Path | None = None, sealed_confirmed: bool = False,
          progress: Callable[[str], None] | None = None, full: bool = False) -> ApplyResult:
    """Run playbooks/harden.yml against `target`; raise HardeningError when it cannot run or a task fails.

    An Image (a disk image file or a mounted root directory) is hardened offline through chroot, on
    the host's CPU; an image file is changed only when the whole run succeeds, and never with `check`.
    `skip`/`only` take control ids (ROOT-01 ...); the preflight role always runs. `progress` receives
    ansible-playbook's output line by line (changed and failed tasks; ok and skipped ones are hidden).

    An SSH target or an Image is checked first (`hardening.check`, one gathering of its state, judged as
    the image must be), and only the controls that do not hold are applied; when all hold,
    ansible-playbook does not run.
    `full`, or any `extra_vars` (they can change a goal the checks do not know), runs every selected
    control instead.
    """
    require_profile(profile)
    if profile == "sealed" and not sealed_confirmed:
        raise HardeningError(SEALED_WARNING)
    selection(skip, only)  # an unknown or doubly named control id is refused before anything runs
    variables = {"ami_hardening_profile": profile, "ami_hardening_sealed_confirmed": sealed_confirmed,
                 **({"ami_hardening_admin_user": admin_user} if admin_user else {}), **(extra_vars or {})}
    log_path = Path(log_path) if log_path else default_log_path()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run = partial(_pending_only, profile=profile, admin_user=admin_user, skip=skip, only=only,
                  every=full or bool(extra_vars), check=check, diff=diff, log_path=log_path, progress=progress)
    if isinstance(target, Image):
        require_ansible()
        if os.geteuid() != 0:
            raise HardeningError("an offline apply mounts the image and chroots into it: run it as root")
        if profile == "marketplace" and not admin_user:
            raise HardeningError("--admin-user is required for an offline marketplace apply")
        with chroot_root(target.path) as mounted:
            result = run(mounted.root, Image.chroot_inventory(mounted.root),
                         {**variables, "ami_hardening_offline": True}, strategy={})
            mounted.keep = result.changed > 0 and not check
            return result
    inventory = inventory_for(target)
    _preflight(target)
    return run(target if isinstance(target, Target) else None, inventory, variables,
               strategy=ansible_strategy_env())


def _pending_only(checked: Target | Path | None, inventory: dict | Path, variables: dict, *, profile: str,
                  admin_user: str | None, skip: Iterable[str], only: Iterable[str], every: bool, check: bool,
                  diff: bool, log_path: Path, progress: Callable[[str], None] | None,
                  strategy: dict[str, str]) -> ApplyResult:
    """Run the playbook for the selected controls that do not hold on `checked` (an SSH target or a
    mounted root), as one check judges them first; for every selected control when `every` is set or
    there is nothing to check."""
    holding: list[str] = []
    notes: list[str] = []
    if checked is not None and not every:
        report = run_checks(checked, profile, admin_user, controls=only, skip=skip, as_image=True)
        failing = report.failing()
        holding = [result.control for result in report.results if result.control not in failing]
        notes = [f"ami-harden: checked first: {len(holding)} controls hold; to apply: {' '.join(failing) or 'none'}",
                 *(f"  {r.control:<9} {r.status:<7} {r.evidence}" for r in report.results)]
        skip, only = (), failing
    with log_path.open("w") as log:
        log.writelines(line + "\n" for line in notes)
    if progress and notes:
        progress(notes[0])
    if holding and not only:
        return ApplyResult(check=check, log_path=log_path, holding=holding)
    tags, switched_off = selection(skip, only, profile)
    result = _playbook(inventory, {**variables, **switched_off}, tags, check, diff, log_path, progress, strategy)
    result.holding = holding
    return result


def _playbook(inventory: dict | Path, variables: dict, tags: list[str], check: bool, diff: bool,
              log_path: Path, progress: Callable[[str], None] | None, strategy: dict[str, str]) -> ApplyResult:
    with tempfile.TemporaryDirectory(prefix="ami-harden-apply-") as work:
        if isinstance(inventory, dict):
            inventory_file = Path(work) / "inventory.yml"
            inventory_file.write_text(yaml.safe_dump(inventory))
        else:
            inventory_file = inventory
        vars_file = Path(work) / "vars.json"
        vars_file.write_text(json.dumps(variables))
        command = ["ansible-playbook", "-i", str(inventory_file), "-e", f"@{vars_file}", str(PLAYBOOK)]
        command += ["--check"] * check + ["--diff"] * diff
        command += [f"--tags={','.join(tags)}"] * bool(tags)
        return _run(command, log_path, check, progress, strategy)


def _run(command: list[str], log_path: Path, check: bool, progress: Callable[[str], None] | None,
         strategy: dict[str, str]) -> ApplyResult:
    """Run ansible-playbook, tee its output to the log, and parse the recap and failures; stop it when
    interrupted."""
    # ansible-playbook never flushes its output: unbuffered, each line reaches `progress` as it is printed.
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
           "ANSIBLE_DISPLAY_OK_HOSTS": "False", "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "False",
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_PIPELINING": "True",
           "PYTHONUNBUFFERED": "1", **strategy}
    result = ApplyResult(check=check, log_path=log_path)
    failures: list[str] = []
    task = ""
    with log_path.open("a") as log:
        log.write("$ " + " ".join(command) + "\n")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=env, cwd=PLAYBOOKS)
        assert process.stdout is not None
        try:
            for raw in process.stdout:
                line = raw.rstrip("\n")
                log.write(raw)
                log.flush()
                if progress and line.strip():
                    progress(line)
                if match := _TASK.match(line):
                    task = match["name"]
                elif match := _FATAL.match(line):
                    failures.append(_failure_message(task, match["host"], match["kind"], match["data"], log_path))
                elif line == "...ignoring" and failures:  # the task ignores that failure
                    failures.pop()
                elif match := _RECAP.match(line):
                    result.hosts.append(match["host"])
                    for name in ("ok", "changed", "unreachable", "failed", "skipped"):
                        setattr(result, name, getattr(result, name) + int(match[name]))
        except BaseException:
            process.terminate()
            process.wait()
            raise
        result.returncode = process.wait()
    if failures:
        raise HardeningError(failures[0])
    if result.returncode != 0:
        raise HardeningError(f"ansible-playbook exited with {result.returncode}; see {log_path}")
    return result
