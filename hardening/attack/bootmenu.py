"""The boot-menu probe: from power-on, press keys on the serial console as a buyer with EC2 serial
console access can, and where GRUB answers, try its command line and editor for a root shell."""

from __future__ import annotations

import re
import time

from hardening.attack.console import Finding, SerialConsole, is_root_shell

# What GRUB shows: its menu, its command line, and the superuser prompt of a locked menu.
MENU = ("GNU GRUB", "Use the", "automatically in", "Press enter to boot")
COMMAND_LINE = "grub>"
LOCKED = "Enter username:"
# What only shows once GRUB has handed over to a kernel (its own echo lines, the kernel's log).
STARTED = ("Loading Linux", "Loading initial ramdisk", "Linux version", "Begin: ", "login:")
EDITOR = ("Emacs-like", "setparams")
LOAD_SECONDS = 180.0
QUIET_SECONDS = 15.0
ESCAPE = "\x1b"
# The kernel argument that starts a root shell instead of init.
SHELL_ARGUMENT = "init=/bin/sh"
_ENTRY_COMMANDS = re.compile(r"^\s*(set root=|(insmod|search|linux|linux16|linuxefi|initrd|initrd16|initrdefi)\b)")


def default_entry(grub_cfg: str) -> list[str]:
    """The commands of grub.cfg's first menu entry that load a kernel (modules, root, linux, initrd)."""
    lines = grub_cfg.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("menuentry ")), None)
    if start is None:
        return []
    commands, depth = [], 0
    for line in lines[start + 1:]:
        stripped = line.strip()
        if stripped == "}" and depth == 0:
            break
        if stripped.startswith(("if ", "function ")) and not stripped.endswith(("fi", "}")):
            depth += 1
        elif stripped == "fi" or (stripped == "}" and depth):
            depth -= 1
        elif depth == 0 and _ENTRY_COMMANDS.match(line):
            commands.append(stripped)
    return commands


def with_shell(commands: list[str], argument: str) -> list[str]:
    """The entry's commands, single-spaced, with `argument` on the kernel line and `quiet` dropped, then `boot`."""
    changed = []
    for command in commands:
        words = command.split()  # grub.cfg separates with tabs, which GRUB's command line takes as completion
        if words[0] in ("linux", "linux16", "linuxefi"):
            words = [word for word in words if word != "quiet"] + [argument]
        changed.append(" ".join(words))
    return [*changed, "boot"]


def _type(console: SerialConsole, text: str) -> None:
    """Type slowly: GRUB's serial input drops characters that come faster than it reads them."""
    for character in text:
        console.send(character)
        time.sleep(0.03)


def _screen_after(console: SerialConsole, keys: str, patterns: tuple[str, ...], seconds: float) -> str:
    console.send(keys)
    return console.read_until(patterns, seconds)


def probe_boot_menu(console: SerialConsole, commands: list[str], reach_seconds: float = 90.0,
                    shell_seconds: float = 120.0) -> Finding:
    """Press ESC from power-on until GRUB answers or a kernel starts; then try the command line (`c`) and
    the editor (`e`). OPEN on a uid-0 shell; a superuser prompt or no menu at all is no way in."""
    screen, started = "", time.monotonic()
    quiet_since = started
    while time.monotonic() < started + reach_seconds:
        shown = _screen_after(console, ESCAPE, (*MENU, COMMAND_LINE, LOCKED), 0.25)
        if shown:
            screen, quiet_since = screen + shown, time.monotonic()
        if LOCKED in screen or COMMAND_LINE in screen or any(text in screen for text in MENU):
            break
        if any(text in screen for text in STARTED):
            return Finding(False, True, ["no boot menu answered ESC before the kernel started"])
        # A menu drawn before the probe connected and stopped by its ESC stays silent: ask it.
        if time.monotonic() - quiet_since > QUIET_SECONDS:
            break
    else:
        return Finding(False, False, [f"neither a boot menu nor a kernel showed within {reach_seconds:.0f} s"])

    evidence, answered = [], False
    for key, what in (("c", "command line"), ("e", "editor")):
        shown = _screen_after(console, key, (COMMAND_LINE, LOCKED, *EDITOR), 10)
        if LOCKED in shown:
            answered = True
            evidence.append(f"menu {what} ({key}): GRUB asks for a superuser ('{LOCKED}')")
            # No username and no password: GRUB refuses and goes back to the menu.
            _screen_after(console, "\r", ("password",), 5)
            _screen_after(console, "\r", MENU, 10)
        elif what == "command line" and COMMAND_LINE in shown:
            return _boot_a_shell(console, commands, shell_seconds, evidence)
        elif what == "editor" and any(text in shown for text in EDITOR):
            return Finding(True, True, [*evidence, "menu editor (e): opened without a superuser; the kernel "
                                                       "command line is editable"])
        else:
            answered = answered or bool(shown.strip())
            evidence.append(f"menu {what} ({key}): no prompt and no superuser question "
                            f"({' '.join(shown.split())[-60:]!r})")
            _screen_after(console, ESCAPE, MENU, 5)
    return Finding(False, answered, evidence)


def _boot_a_shell(console: SerialConsole, commands: list[str], seconds: float, evidence: list[str]) -> Finding:
    """At an open GRUB command line, boot the default entry's kernel with a shell as init."""
    argument = SHELL_ARGUMENT
    if not commands:
        return Finding(True, True, [*evidence, "the GRUB command line opened without a superuser (the image's "
                                                   "grub.cfg has no entry to boot with a shell)"])
    for command in with_shell(commands, argument):
        _type(console, command + "\r")
        # GRUB reads nothing while it loads a kernel or an initrd (tens of seconds under emulation):
        # type the next command only once its prompt is back, or the characters are lost.
        if command != "boot":
            console.read_until((COMMAND_LINE,), LOAD_SECONDS)
    output = console.read_until(("# ", "$ "), seconds)
    if is_root_shell(console):
        return Finding(True, True, [*evidence, f"GRUB command line opened without a superuser; "
                                                   f"`linux ... {argument}` gave a uid-0 shell"])
    return Finding(True, True, [*evidence, f"GRUB command line opened without a superuser (it reads any file); "
                                               f"`{argument}` gave no shell within {seconds:.0f} s "
                                               f"(console: {' '.join(output.split())[-80:]!r})"])
