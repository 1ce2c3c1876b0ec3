"""Attack an image as a buyer would and judge each vector OPEN, CLOSED or INCONCLUSIVE on evidence."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paramiko

from hardening import ssh
from hardening.attack import payloads
from hardening.attack.bootmenu import default_entry, probe_boot_menu
from hardening.attack.console import Finding, SerialConsole, is_initramfs_root_shell, try_root_shell
from hardening.attack.decoy import DECOY_MARKER, RootIdentity, make_decoys
from hardening.attack.emergency import emergency_boot, probe_emergency
from hardening.catalog import VECTORS, require_profile
from hardening.disk import image_format
from hardening.errors import HardeningError
from hardening.kernel import root_argument
from hardening.lab.vm import BOOT_TIMEOUT, Disk, Instance, KernelBoot, boot_instance, lab_key, require_qemu, stop_all
from hardening.report import Document
from hardening.target import Target

OPEN, CLOSED, INCONCLUSIVE = "OPEN", "CLOSED", "INCONCLUSIVE"
ATTACKS = {
    "root-login": "SSH as root with the key pair and a user-data password; the serial console; the boot menu "
                  "from power-on (command line and editor, init=/bin/sh); the initramfs's shell when the root "
                  "disk sits on a controller it has no driver for; emergency mode with sulogin's force switch "
                  "(SYSTEMD_SULOGIN_FORCE=1)",
    "sudo": "sudo -n as the default user and as an account user-data created; polkit as the default user "
            "(systemd-run and pkexec without a password)",
    "user-data": "MIME battery: #! script, boothook, bootcmd, runcmd, write_files, users, chpasswd, ssh_pwauth; "
                 "volumes labelled config-2 and cidata attached at launch to pass for the datasource",
    "label-boot": "decoy volumes carrying the root's LABEL (before the disk) and LABEL+UUID (after it)",
}
OUTCOMES = {CLOSED: "pass", OPEN: "fail", INCONCLUSIVE: "error"}
REFUSAL = re.compile(r"refus\w* to boot.*", re.IGNORECASE)
INITRAMFS_PROMPT = "(initramfs)"
PANIC_REBOOT = "Rebooting automatically due to panic= boot argument"
INITRAMFS_SECONDS = 300
# Boots run at once: two instances share a 2-core machine better than one alone (one instance with
# two vCPUs under TCG is only 25-30 % faster than with one); each boot's waits overlap the other's work.
LANES = 2

GATHER = f"""
echo '== uid'; id -u
echo '== sudo'; sudo -n id -u 2>&1 | tail -1
echo '== systemd-run'; timeout 60 systemd-run --no-ask-password --wait --pipe --quiet id -u 2>&1 </dev/null | tail -1
echo '== pkexec'; timeout 60 pkexec --disable-internal-agent id -u 2>&1 </dev/null | tail -1
echo '== markers'; for f in {payloads.MARKER_DIR}/*; do [ -e "$f" ] && echo "$(basename "$f") $(stat -c %U "$f")"; done
echo '== probe-user'; getent passwd {payloads.PROBE_USER}
echo '== cmdline'; cat /proc/cmdline
echo '== root'; findmnt -no SOURCE,UUID,LABEL /
echo '== decoy'; cat {DECOY_MARKER} 2>/dev/null
echo '== datasource'; cat /run/cloud-init/result.json 2>/dev/null | tr -d '\n'; echo
echo '== end'
"""


@dataclass
class Verdict:
    """One vector's outcome and the evidence behind it."""

    vector: str
    status: str
    evidence: list[str] = field(default_factory=list)


def fold(finding: Finding, root: Verdict) -> None:
    """Add a serial-console boot's finding to the root-login verdict: OPEN wins; a finding that cannot
    tell makes a CLOSED verdict INCONCLUSIVE."""
    root.evidence += finding.evidence
    if finding.open_:
        root.status = OPEN
    elif not finding.known and root.status == CLOSED:
        root.status = INCONCLUSIVE


@dataclass
class AttackReport:
    """The probe's verdicts for one image."""

    image: str
    profile: str
    admin_user: str
    vectors: list[Verdict]
    checked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def exit_code(self) -> int:
        """0 when every vector is CLOSED, 1 otherwise."""
        return 0 if all(v.status == CLOSED for v in self.vectors) else 1

    def as_dict(self) -> dict:
        """A JSON-ready record."""
        return asdict(self)

    def document(self, before: AttackReport | None = None) -> Document:
        """The verdicts as a report document (table, JUnit, HTML); with `before`, each row says what it was."""
        earlier = {v.vector: v for v in before.vectors} if before else {}
        rows = []
        for verdict in self.vectors:
            evidence = verdict.evidence
            if verdict.vector in earlier:
                was = earlier[verdict.vector]
                evidence = [*evidence, f"before hardening: {was.status}", *(f"  {item}" for item in was.evidence)]
            rows.append({"control": verdict.vector, "vector": verdict.vector, "title": ATTACKS[verdict.vector],
                         "status": verdict.status, "evidence": "\n".join(evidence)})
        meta = {"target": self.image, "profile": self.profile, "admin user": self.admin_user,
                "checked_at": self.checked_at}
        return Document("ami-harden attack", meta, rows, unit="vectors", outcomes=OUTCOMES)


def sections(output: str) -> dict[str, list[str]]:
    """Split the output of GATHER into its `== name` sections."""
    found: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("== "):
            current = line[3:].strip()
            found[current] = []
        elif current:
            found[current].append(line.strip())
    return found


def first_line(facts: dict[str, list[str]], name: str) -> str:
    """The first line of a GATHER section ('' when the section is missing or empty)."""
    return (facts.get(name) or [""])[0]


def spec_matches_decoy(spec: str, identity: RootIdentity, decoy_uuid: str) -> bool:
    """Whether a root specification could also select a decoy carrying the label and `decoy_uuid`."""
    key, _, value = spec.partition("=")
    if spec.startswith("/dev/"):
        return True  # a device path follows disk order, which the buyer controls
    return (key == "LABEL" and value == identity.label) or (key == "UUID" and value == decoy_uuid)


def _login(target: Target, password: str | None = None) -> tuple[bool, str]:
    """Try one SSH login and `id -u`; report whether it gave a uid-0 shell and what happened."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(target.host, port=target.port, username=target.user, password=password,
                       key_filename=None if password else str(target.key), look_for_keys=False,
                       allow_agent=False, timeout=15, banner_timeout=15, auth_timeout=15)
        rc, out, _ = ssh.run(client, "id -u", timeout=30)
        if rc == 0 and out.strip() == "0":
            return True, "uid 0 shell"
        return False, f"login accepted but no shell (exit {rc}: {out.strip()[:80]!r})"
    except paramiko.AuthenticationException:
        return False, "refused"
    except (paramiko.SSHException, OSError) as error:
        return False, f"failed ({error})"
    finally:
        client.close()


def _password_allowed(target: Target, user: str) -> bool:
    """Whether sshd offers password authentication to `user`."""
    transport = paramiko.Transport((target.host, target.port))
    try:
        transport.start_client(timeout=15)
        transport.auth_none(user)
    except paramiko.BadAuthenticationType as error:
        return "password" in error.allowed_types or "keyboard-interactive" in error.allowed_types
    except (paramiko.SSHException, OSError):
        return False
    finally:
        transport.close()
    return True


class Probe:
    """Runs the boots of one attack and turns their evidence into verdicts."""

    def __init__(self, image: Path, profile: str, admin_user: str, log: Callable[[str], None],
                 console_dir: Path | None = None):
        self.image, self.profile, self.admin_user, self.log = image, profile, admin_user, log
        self.console_dir = console_dir
        self.public_key = Path(f"{lab_key()}.pub").read_text().strip()

    def run(self) -> AttackReport:
        """Boot five times (hostile user-data with a same-label decoy; a same-UUID decoy; keys on the serial
        console from power-on; the root disk on a controller the initramfs lacks; the image's kernel into
        emergency mode with sulogin's force switch), LANES at a time, and judge."""
        with tempfile.TemporaryDirectory(prefix="ami-attack-", dir="/var/tmp") as tmp:
            work = Path(tmp)
            self.log("making decoy volumes from the image's root filesystem")
            identity, same_label, same_uuid = make_decoys(self.image, work)
            # Read before any boot: an instance that mounts the decoy leaves it with an unreplayed journal.
            grub_cfg = _grub_cfg(same_uuid)
            emergency = _emergency_boot(same_uuid, grub_cfg, work)
            with ThreadPoolExecutor(max_workers=LANES, thread_name_prefix="ami-attack") as pool:
                boots = [pool.submit(self._hostile_boot, identity, same_label, work / "boot1"),
                         pool.submit(self._decoy_boot, identity, same_uuid, work / "boot2"),
                         pool.submit(self._boot_menu, grub_cfg, work / "boot3"),
                         pool.submit(self._initramfs_shell, work / "boot4"),
                         pool.submit(self._emergency, emergency, work / "boot5")]
                try:
                    results = [boot.result() for boot in boots]
                except BaseException:
                    for boot in boots:
                        boot.cancel()
                    stop_all()
                    raise
            self._keep_consoles(work)
        (root, sudo, user_data, label_first), label_second, *findings = results
        for finding in findings:
            fold(finding, root)
        label = Verdict("label-boot", CLOSED, label_first.evidence + label_second.evidence)
        statuses = {label_first.status, label_second.status}
        label.status = OPEN if OPEN in statuses else INCONCLUSIVE if INCONCLUSIVE in statuses else CLOSED
        return AttackReport(str(self.image), self.profile, self.admin_user, [root, sudo, user_data, label])

    def _keep_consoles(self, work: Path) -> None:
        """Copy each boot's serial console log to `console_dir` (as boot1-console.log, boot2-console.log)."""
        if self.console_dir is None:
            return
        self.console_dir.mkdir(parents=True, exist_ok=True)
        for boot in ("boot1", "boot2", "boot3", "boot4", "boot5"):
            if (work / boot / "console.log").exists():
                shutil.copyfile(work / boot / "console.log", self.console_dir / f"{boot}-console.log")

    def _hostile_boot(self, identity: RootIdentity, decoy: Path, work: Path) -> tuple[Verdict, ...]:
        self.log("boot 1: hostile user-data battery, same-label decoy attached before the real disk, "
                 "volumes labelled config-2 and cidata after it")
        started = time.monotonic()
        work.mkdir(parents=True, exist_ok=True)
        volumes = [Disk(path) for path in payloads.impersonating_volumes(work, self.public_key)]
        with boot_instance(self.image, user_data=payloads.battery(self.public_key), allow_reboot=False,
                           extra_disks=[Disk(decoy, before=True), *volumes], wait=False, workdir=work,
                           user=self.admin_user) as vm:
            if not self._wait_or_refuse(vm):
                reason = self._refusal(vm)
                evidence = [f"boot 1 never reached SSH; console ends: {vm.tail(3)!r}"]
                status = CLOSED if reason else INCONCLUSIVE
                lost = Verdict("label-boot", status, [f"boot 1 refused: {reason}"] if reason else evidence)
                return (*(Verdict(v, INCONCLUSIVE, evidence) for v in VECTORS[:3]), lost)
            self.log(f"boot 1: SSH up after {time.monotonic() - started:.0f} s; waiting for cloud-init")
            vm.wait_for_cloud_init()
            _, out, _ = vm.run(GATHER)
            facts = sections(out)
            self.log("boot 1: trying root over SSH (key, password), the probe user, the serial console")
            root = self._root_login(vm)
            sudo = self._sudo(vm, facts)
            user_data = self._user_data(vm.target, facts)
            label = self._label(facts, identity, decoy_uuid="(a new one)", boot="boot 1 (same-label decoy)")
        return root, sudo, user_data, label

    @contextmanager
    def _console_boot(self, what: str, work: Path, root_bus: str = "virtio",
                      kernel: KernelBoot | None = None) -> Iterator[tuple[Instance, SerialConsole] | Finding]:
        """Boot without waiting for SSH and connect to the serial console; a Finding that cannot tell
        when the console cannot be reached."""
        with boot_instance(self.image, allow_reboot=False, wait=False, workdir=work, user=self.admin_user,
                           root_bus=root_bus, kernel=kernel) as vm:
            try:
                console = SerialConsole(vm.serial_socket)
            except OSError as error:
                yield Finding(False, False, [f"{what}: serial console not reachable ({error})"])
                return
            try:
                yield vm, console
            finally:
                console.close()

    def _boot_menu(self, grub_cfg: str, work: Path) -> Finding:
        """Boot 3: keys on the serial console from power-on."""
        self.log("boot 3: pressing ESC on the serial console from power-on, then the boot menu's command line")
        with self._console_boot("boot menu", work) as booted:
            if isinstance(booted, Finding):
                return booted
            menu = probe_boot_menu(booted[1], default_entry(grub_cfg))
        return Finding(menu.open_, menu.known, [f"boot menu: {line}" for line in menu.evidence])

    def _initramfs_shell(self, work: Path) -> Finding:
        """Boot 4: the root disk on a SATA controller, which the initramfs has no driver for, as on an
        instance type the image was not built for; a shell on the serial console is OPEN."""
        self.log("boot 4: the root disk on a controller the initramfs has no driver for; watching the serial console")
        with self._console_boot("initramfs", work, root_bus="ahci") as booted:
            if isinstance(booted, Finding):
                return booted
            vm, console = booted
            screen = console.read_until((INITRAMFS_PROMPT, PANIC_REBOOT), INITRAMFS_SECONDS)
            shell = INITRAMFS_PROMPT in screen and is_initramfs_root_shell(console)
            ended = vm.wait_for_exit(30) if PANIC_REBOOT in screen else False
            last = vm.tail(3)
        if shell:
            return Finding(True, True, ["initramfs: root not found; it opened a shell on the serial console that "
                                        "answered as uid 0"])
        if PANIC_REBOOT in screen:
            return Finding(False, True, ["initramfs: root not found; it rebooted instead of opening a shell"
                                         + ("" if ended else " (the instance had not stopped 30 s later)")])
        return Finding(False, False, [f"initramfs: no shell and no reboot within {INITRAMFS_SECONDS} s; console "
                                      f"ends: {last!r}"])

    def _emergency(self, boot: KernelBoot | str, work: Path) -> Finding:
        """Boot 5: QEMU starts the image's kernel into emergency mode with SYSTEMD_SULOGIN_FORCE=1 on its
        command line, standing in for any boot that fails into emergency mode with the switch set
        anywhere; a shell on the serial console is OPEN."""
        if isinstance(boot, str):
            return Finding(False, False, [f"emergency mode: not tried ({boot})"])
        self.log("boot 5: the image's kernel into emergency mode with SYSTEMD_SULOGIN_FORCE=1; watching the "
                 "serial console")
        with self._console_boot("emergency mode", work, kernel=boot) as booted:
            if isinstance(booted, Finding):
                return booted
            return probe_emergency(booted[1])

    def _decoy_boot(self, identity: RootIdentity, decoy: Path, work: Path) -> Verdict:
        self.log("boot 2: decoy with the same label and UUID attached after the real disk")
        with boot_instance(self.image, allow_reboot=False, extra_disks=[Disk(decoy)], wait=False,
                           workdir=work, user=self.admin_user) as vm:
            if not self._wait_or_refuse(vm):
                reason = self._refusal(vm)
                if reason:
                    return Verdict("label-boot", CLOSED, [f"boot 2 (same-UUID decoy) refused to boot: {reason}"])
                return Verdict("label-boot", INCONCLUSIVE,
                               [f"boot 2 never answered and its console gives no reason; last lines: {vm.tail(5)!r}"])
            _, out, _ = vm.run(GATHER)
        return self._label(sections(out), identity, decoy_uuid=identity.uuid, boot="boot 2 (same-UUID decoy)")

    def _wait_or_refuse(self, vm: Instance) -> bool:
        """Wait for SSH; False when the instance stopped or never answered."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if not vm.alive() or self._refusal(vm):
                vm.wait_for_exit(5)
                return False
            try:
                vm.wait_for_ssh(timeout=10)
                return True
            except HardeningError:
                continue
        return False

    @staticmethod
    def _refusal(vm: Instance) -> str:
        match = REFUSAL.search(vm.console())
        return match.group(0).strip() if match else ""

    def _root_login(self, vm: Instance) -> Verdict:
        root = Target(vm.target.host, vm.target.port, "root", vm.target.key)
        key_shell, key_note = _login(root)
        password_shell, password_note = _login(root, password=payloads.ROOT_PASSWORD)
        console_shell, console_note = try_root_shell(vm.serial_socket, payloads.ROOT_PASSWORD)
        evidence = [f"ssh root@ with the injected key: {key_note}",
                    f"ssh root@ with the password user-data set: {password_note}",
                    f"serial console: {console_note}"]
        return Verdict("root-login", OPEN if key_shell or password_shell or console_shell else CLOSED, evidence)

    def _sudo(self, vm: Instance, facts: dict[str, list[str]]) -> Verdict:
        evidence, open_ = [], False
        accounts = {vm.target.user: facts.get("sudo", [""])[-1:] == ["0"]}
        if first_line(facts, "probe-user"):
            probe = Target(vm.target.host, vm.target.port, payloads.PROBE_USER, vm.target.key)
            try:
                with ssh.session(probe) as client:
                    rc, out, _ = ssh.run(client, "sudo -n id -u", timeout=30)
                accounts[payloads.PROBE_USER] = rc == 0 and out.strip() == "0"
            except HardeningError as error:
                evidence.append(f"{payloads.PROBE_USER} (created by user-data) could not log in: {error}")
        tries = {f"{account}: sudo -n": has_root for account, has_root in accounts.items()}
        for tool in ("systemd-run", "pkexec"):
            said = first_line(facts, tool)
            tries[f"{vm.target.user}: {tool} through polkit"] = said == "0"
            if said != "0":
                evidence.append(f"{vm.target.user}: {tool} refused ({said or 'no output'})")
        for attempt, has_root in tries.items():
            account = attempt.split(":", 1)[0]
            if has_root and self.profile == "marketplace" and account == self.admin_user:
                evidence.append(f"{attempt} gives root (expected: the marketplace admin)")
            elif has_root:
                open_ = True
                evidence.append(f"{attempt} gives root")
            elif attempt.endswith("sudo -n"):
                evidence.append(f"{attempt} refused")
        if self.profile == "marketplace" and not accounts.get(self.admin_user):
            evidence.append(f"note: the admin {self.admin_user!r} has no sudo (Marketplace expects one admin)")
        return Verdict("sudo", OPEN if open_ else CLOSED, evidence)

    def _user_data(self, target: Target, facts: dict[str, list[str]]) -> Verdict:
        ran = []
        for line in facts.get("markers", []):
            name, _, owner = line.partition(" ")
            if name.startswith(payloads.VOLUME_MARKER):
                label = name.removeprefix(payloads.VOLUME_MARKER)
                ran.append(f"the volume labelled {label} was read as the datasource: it left {name} as {owner}")
            else:
                ran.append(f"{name} ran as {owner}")
        if first_line(facts, "probe-user"):
            ran.append(f"users: account {payloads.PROBE_USER!r} was created")
        if _password_allowed(target, "root"):
            ran.append("ssh_pwauth: sshd offers password authentication")
        source = _datasource(first_line(facts, "datasource"))
        labels = " and ".join(payloads.IMPERSONATED)
        if source and not source.startswith("DataSourceEc2"):
            ran.append(f"cloud-init took the instance's metadata from {source}, not the metadata service")
        evidence = ran or ["no user-data channel ran: no marker, no probe account, no password auth"]
        if not ran and source:
            evidence.append(f"cloud-init used {source}; the volumes labelled {labels} were not read")
        return Verdict("user-data", OPEN if ran else CLOSED, evidence)

    @staticmethod
    def _label(facts: dict[str, list[str]], identity: RootIdentity, decoy_uuid: str, boot: str) -> Verdict:
        cmdline = " ".join(facts.get("cmdline", []))
        spec = root_argument(cmdline) or ""
        mounted = " ".join(facts.get("root", []))
        decoy_mounted = bool(" ".join(facts.get("decoy", [])).strip())
        evidence = [f"{boot}: root={spec or '(none)'}; / is {mounted or '(unknown)'}"]
        if decoy_mounted:
            evidence.append(f"{boot}: the decoy is mounted as / ({DECOY_MARKER} present)")
            return Verdict("label-boot", OPEN, evidence)
        if spec_matches_decoy(spec, identity, decoy_uuid):
            evidence.append(f"{boot}: root={spec} also matches the decoy; the real disk won a race this time")
            return Verdict("label-boot", OPEN, evidence)
        evidence.append(f"{boot}: root={spec} does not match the decoy")
        return Verdict("label-boot", CLOSED, evidence)


def _datasource(result: str) -> str:
    """The datasource named in cloud-init's /run/cloud-init/result.json ('' when it left none)."""
    try:
        return str(json.loads(result)["v1"]["datasource"])
    except (ValueError, KeyError, TypeError):
        return ""


def _grub_cfg(root_filesystem: Path) -> str:
    """/boot/grub/grub.cfg read from a copy of the image's root filesystem ('' when it has none)."""
    result = subprocess.run(["debugfs", "-R", "cat /boot/grub/grub.cfg", str(root_filesystem)],
                            capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else ""


def _emergency_boot(root_filesystem: Path, grub_cfg: str, work: Path) -> KernelBoot | str:
    """The emergency-mode boot of the image's default entry, or why there is none."""
    try:
        return emergency_boot(root_filesystem, default_entry(grub_cfg), work)
    except HardeningError as error:
        return str(error)


def attack(image: Path, profile: str = "marketplace", admin_user: str = "admin",
           log: Callable[[str], None] = lambda message: None, console_dir: Path | None = None) -> AttackReport:
    """Attack `image` (qcow2 or raw, never modified) and return the verdict per vector; with
    `console_dir`, keep each boot's serial console log there."""
    require_profile(profile)
    image = Path(image)
    image_format(image)
    require_qemu()
    return Probe(image, profile, admin_user, log, console_dir).run()
