"""Try for a root shell on an instance's serial console, as a buyer with EC2 serial access could."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Finding:
    """What a boot on the serial console found: whether it gave root (`open_`), whether the probe could
    tell (`known`), and what it saw."""

    open_: bool
    known: bool
    evidence: list[str] = field(default_factory=list)


class SerialConsole:
    """A connection to QEMU's serial port socket."""

    def __init__(self, path: Path, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.sock.setblocking(False)

    def send(self, text: str) -> None:
        """Type `text` on the console."""
        self.sock.sendall(text.encode())

    def read_until(self, patterns: tuple[str, ...], seconds: float) -> str:
        """Read until one of `patterns` shows up or `seconds` pass; return what was read."""
        data = ""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(4096)
            except BlockingIOError:
                time.sleep(0.2)
                continue
            if not chunk:
                break
            data += chunk.decode(errors="replace")
            if any(p in data for p in patterns):
                break
        return data

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


def _last_line(screen: str) -> str:
    lines = [line.strip() for line in screen.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def is_root_shell(console: SerialConsole) -> bool:
    """Whether a uid-0 shell answers on the console."""
    # The arithmetic makes the answer differ from the echo of the command line itself.
    console.send("echo uid=$(id -u):$((40+2))\r")
    return "uid=0:42" in console.read_until((":42",), 5)


def is_initramfs_root_shell(console: SerialConsole) -> bool:
    """Whether the shell on the console runs as uid 0, asked with shell builtins only (an initramfs
    without busybox has no `id`)."""
    console.send('while read -r key value _; do [ "$key" = Uid: ] && echo "uid=$value:$((40+2))"; done'
                 " </proc/self/status\r")
    return "uid=0:42" in console.read_until((":42",), 10)


def try_root_shell(path: Path, password: str) -> tuple[bool, str]:
    """Ask the console for a shell: first without a password (autologin), then as root with `password`.

    Returns whether a uid-0 shell answered, and a one-line account of what the console showed.
    """
    try:
        console = SerialConsole(path)
    except OSError as error:
        return False, f"serial console not reachable ({error})"
    try:
        console.send("\r")
        screen = console.read_until(("login:", "# ", "$ "), 15)
        if not _last_line(screen).endswith("login:") and is_root_shell(console):
            return True, "a root shell answered on the serial console without any login"
        console.send("root\r")
        screen = console.read_until(("Password:", "# "), 10)
        if "Password:" in screen:
            console.send(f"{password}\r")
            screen = console.read_until(("# ", "incorrect", "login:"), 15)
        if "# " in screen and is_root_shell(console):
            return True, "root logged in on the serial console with the password user-data set"
        return False, f"no root shell on the serial console (last line: {_last_line(screen) or '(none)'!r})"
    except OSError as error:
        return False, f"serial console failed ({error})"
    finally:
        console.close()
