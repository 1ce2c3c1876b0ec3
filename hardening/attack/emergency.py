"""The emergency-mode probe: boot the image's own kernel into emergency mode with sulogin's force
switch set, and ask its serial console for a root shell.

A boot that fails (a volume in fstab the buyer launched without, a failed filesystem check) ends in
emergency mode on the serial console. sulogin guards it: with root's password locked it refuses,
unless SYSTEMD_SULOGIN_FORCE=1 reaches it, from a unit drop-in, systemd's DefaultEnvironment or
`systemd.setenv=` on the kernel command line. The probe supplies the last, so only a unit that strips
the variable (or asks for a password whatever it says) keeps the shell closed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hardening.attack.console import Finding, SerialConsole, is_root_shell
from hardening.errors import HardeningError
from hardening.lab.vm import KernelBoot

ARGUMENTS = ("systemd.unit=emergency.target", "systemd.setenv=SYSTEMD_SULOGIN_FORCE=1")
# What systemd-sulogin-shell and sulogin show: the password question, the refusal of a locked root,
# a shell; and what shows once the boot has gone on past emergency mode.
SCREENS = ("Press Enter", "root password", "# ", "login:")
SECONDS = 300.0


def _dump(root_filesystem: Path, path: str, dest: Path) -> Path:
    """Copy `path` out of an ext4 filesystem image."""
    dest.unlink(missing_ok=True)
    subprocess.run(["debugfs", "-R", f"dump {path} {dest}", str(root_filesystem)], capture_output=True, check=False)
    if not dest.exists() or not dest.stat().st_size:
        raise HardeningError(f"emergency probe: {path} is not on the image's root filesystem")
    return dest


def emergency_boot(root_filesystem: Path, commands: list[str], work: Path) -> KernelBoot:
    """The default entry's kernel and initrd, read from a copy of the root filesystem, with its command line
    plus ARGUMENTS (and without `quiet`)."""
    linux = next((c.split() for c in commands if c.split()[0] in ("linux", "linux16", "linuxefi")), None)
    initrd = next((c.split() for c in commands if c.split()[0] in ("initrd", "initrd16", "initrdefi")), None)
    if linux is None or initrd is None or len(initrd) < 2:
        raise HardeningError("emergency probe: grub.cfg's default entry loads no kernel and initrd")
    arguments = [word for word in linux[2:] if word != "quiet"] + list(ARGUMENTS)
    return KernelBoot(_dump(root_filesystem, linux[1], work / "vmlinuz"),
                      _dump(root_filesystem, initrd[1], work / "initrd.img"), " ".join(arguments))


def probe_emergency(console: SerialConsole, seconds: float = SECONDS) -> Finding:
    """Wait for emergency mode on the console, press Enter as its prompt asks, and ask for uid 0."""
    screen = console.read_until(SCREENS, seconds)
    shown = " ".join(line.strip() for line in screen.splitlines()[-4:] if line.strip())[-160:]
    if not any(text in screen for text in SCREENS):
        return Finding(False, False, [f"emergency mode: no prompt within {seconds:.0f} s "
                                               f"(console: {shown!r})"])
    console.send("\r")
    screen += console.read_until(SCREENS, 10)
    if is_root_shell(console):
        return Finding(True, True, [f"emergency mode ({' '.join(ARGUMENTS)}): a uid-0 shell on the "
                                             f"serial console without a password"])
    refused = "root account is locked" in screen or "root password" in screen
    what = "sulogin refused" if refused else "no shell"
    return Finding(False, True, [f"emergency mode ({' '.join(ARGUMENTS)}): {what} "
                                          f"(console: {shown!r})"])
