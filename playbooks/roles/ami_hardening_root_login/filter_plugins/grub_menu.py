"""Filters: judge a generated grub.cfg's boot menu (ROOT-08, ROOT-09); write grub defaults.

`menu_problems` is the one definition of what a locked, hidden menu is: the role asserts it after
grub-mkconfig, and the ROOT-08/ROOT-09 checks of `ami-harden check` import it from here.
"""

from __future__ import annotations

import re
import shlex

_SUPERUSERS = re.compile(r'^\s*set\s+superusers=["\']?([^"\'\s]+)')
_PASSWORD = re.compile(r"^\s*password(?:_pbkdf2)?\s+(\S+)\s+\S")
_ENTRY = re.compile(r"^\s*menuentry\s")
_TIMEOUT = re.compile(r"^\s*set\s+timeout=(\S+)")


def menu_problems(text: str, superuser: str | None = None, hidden: bool = False) -> list[str]:
    """What keeps a grub.cfg from a locked editor (`superuser` set) or a hidden menu (`hidden`)."""
    lines = text.splitlines()
    entries = [line.strip() for line in lines if _ENTRY.match(line)]
    problems: list[str] = []
    if superuser:
        declared = [m[1] for line in lines if (m := _SUPERUSERS.match(line))]
        passwords = [m[1] for line in lines if (m := _PASSWORD.match(line))]
        if superuser not in declared:
            problems.append(f"no superuser {superuser!r} (set superusers: {', '.join(declared) or 'none'}): "
                            "the menu editor and command line are open")
        elif superuser not in passwords:
            problems.append(f"superuser {superuser!r} has no password line")
        elif not entries:
            problems.append("no menu entry")
        elif "--unrestricted" not in entries[0].split():
            problems.append(f"the default entry is not --unrestricted, so every boot waits for a password: "
                            f"{entries[0][:80]}")
    if hidden:
        waits = sorted({m[1] for line in lines if (m := _TIMEOUT.match(line)) and m[1] != "0"})
        if waits:
            problems.append(f"the menu waits (set timeout={', '.join(waits)})")
    return problems


def grub_menu_problems(text: str, checks: dict) -> list[str]:
    """Ansible face of menu_problems: `checks` has `superuser` (or none) and `hidden`."""
    return menu_problems(text, checks.get("superuser") or None, bool(checks.get("hidden")))


def shell_assignments(settings: dict) -> str:
    """`NAME=value` lines, quoted for sh, as /etc/default/grub takes them."""
    return "\n".join(f"{name}={shlex.quote(str(value)) if value != '' else ''}" for name, value in settings.items())


class FilterModule:
    """Filters of the ami_hardening_root_login role."""

    def filters(self) -> dict:
        return {"ami_hardening_grub_menu_problems": grub_menu_problems,
                "ami_hardening_shell_assignments": shell_assignments}
