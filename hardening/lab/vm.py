"""Boot a lab image under QEMU (TCG) as a new EC2-like instance, and always stop it."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hardening import ssh
from hardening.disk import image_format
from hardening.disk import overlay as disk_overlay
from hardening.errors import HardeningError
from hardening.lab import imds
from hardening.lab.image import cache_dir, cache_lock
from hardening.seed import iso, seed_files
from hardening.target import Target

DEFAULT_USER = "admin"
# Where an instance finds its metadata: a NoCloud seed disk, or the EC2 metadata service (IMDSv2).
METADATA = ("nocloud", "imds")
# Where the root disk sits: virtio, as on every lab boot, or a SATA (AHCI) controller, which the
# cloud kernel's initramfs has no driver for (an instance type the image was not built for).
ROOT_BUSES = ("virtio", "ahci")
# The user network of an instance with IMDS holds 169.254.169.254; QEMU's DHCP gives the guest this address.
IMDS_NETWORK, IMDS_GUEST = "169.254.0.0/16", "169.254.2.15"
MAC = "52:54:00:12:34:56"
BOOT_TIMEOUT = float(os.environ.get("AMI_HARDEN_BOOT_TIMEOUT", "300"))


def lab_key() -> Path:
    """The lab's SSH private key (ed25519), created once; its public half is injected as the key pair."""
    key = cache_dir() / "lab-key"
    with cache_lock():
        if not key.exists():
            if shutil.which("ssh-keygen") is None:
                raise HardeningError("ssh-keygen is missing; install openssh-client")
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ami-harden-lab", "-f", str(key)],
                           check=True)
    return key


def require_qemu() -> None:
    """Fail with one clear line when QEMU is not installed."""
    if shutil.which("qemu-system-x86_64") is None:
        raise HardeningError("qemu-system-x86_64 is missing; install qemu-system-x86")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_seed(directory: Path, public_key: str, user_data: str | None, instance_id: str) -> Path:
    """A NoCloud seed ISO (label cidata): meta-data with the instance-id and the key pair."""
    files = seed_files(directory / "seed", public_key, "ami-lab", user_data, instance_id)
    return iso(directory / "seed.iso", "cidata", files)


# Resolved once here: what runs between fork and exec must not load a library while another thread may.
_PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl
# Every QEMU process this Python process runs, so that `stop_all` can end boots running in other threads.
_RUNNING: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()


def _die_with_parent() -> None:
    """Ask the kernel to kill qemu when the thread that started it ends (and so when Python dies)."""
    _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_all() -> None:
    """Stop every instance this process runs (the boots of other threads then end at their next wait)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for process in running:
        _stop(process)


@dataclass
class Disk:
    """An extra disk to attach: `before` the root disk on the bus, or after it."""

    path: Path
    before: bool = False
    fmt: str = "raw"


@dataclass
class Instance:
    """A running lab instance: its QEMU process, SSH target and serial console log."""

    process: subprocess.Popen
    target: Target
    console_log: Path
    serial_socket: Path
    _client: object = field(default=None, repr=False)

    def alive(self) -> bool:
        """Whether QEMU still runs."""
        return self.process.poll() is None

    def console(self) -> str:
        """Everything the serial console has printed so far."""
        return self.console_log.read_text(errors="replace") if self.console_log.exists() else ""

    def wait_for_ssh(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait until the default user can log in; fail early if QEMU exits."""
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            if not self.alive():
                raise HardeningError(f"the instance stopped before SSH answered; console ends:\n{self.tail()}")
            try:
                self._client = ssh.connect(self.target, timeout=10)
                return
            except HardeningError as error:
                last = str(error)
                time.sleep(2)
        raise HardeningError(f"no SSH login within {timeout:.0f} s ({last}); console ends:\n{self.tail()}")

    def wait_for_exit(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for QEMU to exit; True when it did."""
        try:
            self.process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str, str]:
        """Run a command as the default user over one persistent SSH session."""
        if self._client is None:
            self.wait_for_ssh()
        return ssh.run(self._client, command, timeout=timeout)

    def wait_for_cloud_init(self, timeout: float = 180.0) -> None:
        """Wait until cloud-init has finished its final stage (user-data has run by then)."""
        rc, _, err = self.run(
            f"timeout {int(timeout)} sh -c 'until test -e /var/lib/cloud/instance/boot-finished; do sleep 1; done'",
            timeout=timeout + 10)
        if rc != 0:
            raise HardeningError(f"cloud-init did not finish within {timeout:.0f} s {err.strip()}")

    def tail(self, lines: int = 15) -> str:
        """The last lines of the serial console."""
        return "\n".join(self.console().splitlines()[-lines:])

    def shutdown(self, timeout: float = 120.0) -> None:
        """Power off cleanly; where the login has no sudo (sealed), flush the disks and stop QEMU."""
        rc, _, _ = self.run("sync; sudo -n systemctl poweroff || exit 3", timeout=30)
        self.close_ssh()
        if rc == 3:
            _stop(self.process)
        elif not self.wait_for_exit(timeout):
            raise HardeningError(f"the instance did not power off within {timeout:.0f} s; console ends:\n{self.tail()}")

    def start_reboot(self) -> None:
        """Reboot from inside, as an operator would (after this command's session ends), and drop SSH."""
        rc, out, err = self.run("sudo -n sh -c 'nohup sh -c \"sleep 2; systemctl reboot\" >/dev/null 2>&1 &'",
                                timeout=30)
        if rc != 0:
            raise HardeningError(f"the instance refused to reboot: {(out + err).strip() or f'exit {rc}'}")
        self.close_ssh()

    def reboot(self, settle: float = 20.0) -> None:
        """Reboot and wait until SSH answers again."""
        self.start_reboot()
        time.sleep(settle)
        self.wait_for_ssh()

    def close_ssh(self) -> None:
        """Drop the persistent SSH session (before a reboot or power-off)."""
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass(frozen=True)
class KernelBoot:
    """A kernel, initrd and command line QEMU loads itself instead of the disk's boot loader (the
    probe's boot into emergency mode)."""

    kernel: Path
    initrd: Path
    command_line: str


@dataclass(frozen=True)
class Platform:
    """What an instance's QEMU presents besides its disks: machine options (DMI) and user-network options."""

    machine: tuple[str, ...] = ()
    network: tuple[str, ...] = ()


def make_imds(directory: Path, public_key: str, user_data: str | None, instance_id: str) -> Platform:
    """The EC2 metadata service's state for one instance, and what presents it: DMI that says EC2
    (system UUID and serial alike, starting `ec2`) and the service at 169.254.169.254."""
    service = directory / "imds"
    service.mkdir()
    imds.write_state(service, instance_id=instance_id, public_key=public_key, user_data=user_data, mac=MAC,
                     local_ipv4=IMDS_GUEST, cidr=IMDS_NETWORK)
    system_uuid = "ec2" + str(uuid.uuid4())[3:]
    return Platform(
        machine=("-smbios", f"type=1,manufacturer=Amazon EC2,product=t3.micro,serial={system_uuid},uuid={system_uuid}",
                 "-smbios", f"type=3,manufacturer=Amazon EC2,asset={instance_id}"),
        network=(f"net={IMDS_NETWORK}", f"dhcpstart={IMDS_GUEST}", imds.guestfwd(service)))


def qemu_command(disk: Path, seed: Path | None, port: int, console_log: Path, serial_socket: Path,
                 extra_disks: Sequence[Disk] = (), allow_reboot: bool = True, memory: int = 1024,
                 platform: Platform = Platform(), root_bus: str = "virtio",
                 kernel: KernelBoot | None = None) -> list[str]:
    """The QEMU command line of a lab instance: TCG, virtio, SSH on 127.0.0.1 only; its metadata from an
    IDE seed disk, or (`platform`, from `make_imds`) from DMI and the metadata service. `root_bus` "ahci"
    puts the root disk on a SATA controller instead (a storage driver the cloud kernel lacks); `kernel`
    boots that kernel and command line instead of the disk's boot loader."""
    if root_bus not in ROOT_BUSES:
        raise HardeningError(f"unknown root disk bus {root_bus!r}; choose one of: {', '.join(ROOT_BUSES)}")
    drives: list[str] = ["-device", "ahci,id=ahci0"] if root_bus == "ahci" else []
    ordered = [d for d in extra_disks if d.before] + [Disk(disk, fmt="qcow2")] + [
        d for d in extra_disks if not d.before]
    for index, item in enumerate(ordered):
        device = "virtio-blk-pci"
        if item.path == disk:
            device = "ide-hd,bus=ahci0.0" if root_bus == "ahci" else "virtio-blk-pci"
            # QEMU's own kernel loader holds boot index 0 when it boots `kernel`.
            device += "" if kernel else ",bootindex=0"
        drives += ["-drive", f"file={item.path},if=none,id=d{index},format={item.fmt},cache=unsafe",
                   "-device", f"{device},drive=d{index}"]
    command = [
        "qemu-system-x86_64", "-machine", "pc,accel=tcg", "-smp", "2", "-m", str(memory),
        "-display", "none", "-monitor", "none", "-nodefaults", "-vga", "none",
        "-chardev", f"socket,id=ser0,path={serial_socket},server=on,wait=off,logfile={console_log}",
        "-serial", "chardev:ser0",
        *drives,
        *(["-drive", f"file={seed},media=cdrom,if=ide,readonly=on"] if seed else []),
        *platform.machine,
        "-netdev", ",".join(["user,id=n0,restrict=on", *platform.network, f"hostfwd=tcp:127.0.0.1:{port}-:22"]),
        "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
    ]
    if kernel is not None:
        command += ["-kernel", str(kernel.kernel), "-initrd", str(kernel.initrd), "-append", kernel.command_line]
    if not allow_reboot:
        command.append("-no-reboot")
    return command


def _stop(process: subprocess.Popen) -> None:
    with _RUNNING_LOCK:
        _RUNNING.discard(process)
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def boot_instance(image: Path, user_data: str | None = None, extra_disks: Sequence[Disk] = (),
                  wait: bool = True, allow_reboot: bool = True, overlay: bool = True,
                  instance_id: str | None = None, workdir: Path | None = None,
                  user: str = DEFAULT_USER, metadata: str = "imds",
                  root_bus: str = "virtio", kernel: KernelBoot | None = None) -> Iterator[Instance]:
    """Boot `image` as a new instance and yield it; QEMU is stopped on every way out.

    The image is booted through a copy-on-write overlay unless `overlay` is False. `user` is the
    image's default user, who receives the key pair. `metadata` is where cloud-init finds the
    instance (see METADATA); `root_bus` the root disk's controller (see ROOT_BUSES); `kernel` what
    QEMU boots instead of the disk's boot loader (see KernelBoot). With `wait`, the
    context is entered once SSH answers for that user.
    """
    if metadata not in METADATA:
        raise HardeningError(f"unknown metadata source {metadata!r}; choose one of: {', '.join(METADATA)}")
    image = Path(image).resolve()
    image_format(image)  # a clear error for what is not a disk image, before anything starts
    require_qemu()
    key = lab_key()
    with ExitStack() as stack:
        work = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ami-vm-")))
        work.mkdir(parents=True, exist_ok=True)
        disk = image
        if overlay:
            disk = disk_overlay(image, work / "overlay.qcow2")
        public_key, instance_id = Path(f"{key}.pub").read_text().strip(), instance_id or f"i-{uuid.uuid4().hex[:17]}"
        seed, platform = None, Platform()
        if metadata == "imds":
            platform = make_imds(work, public_key, user_data, instance_id)
        else:
            seed = make_seed(work, public_key, user_data, instance_id)
        port = free_port()
        console_log = work / "console.log"
        serial_socket = work / "serial.sock"
        command = qemu_command(disk, seed, port, console_log, serial_socket, extra_disks, allow_reboot,
                               platform=platform, root_bus=root_bus, kernel=kernel)
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=(work / "qemu.err").open("w"), preexec_fn=_die_with_parent)
        with _RUNNING_LOCK:
            _RUNNING.add(process)
        stack.callback(_stop, process)
        instance = Instance(process, Target("127.0.0.1", port, user, key), console_log, serial_socket)
        stack.callback(instance.close_ssh)
        time.sleep(0.5)
        if process.poll() is not None:
            raise HardeningError(f"qemu failed to start: {(work / 'qemu.err').read_text().strip()}")
        if wait:
            instance.wait_for_ssh()
        yield instance
