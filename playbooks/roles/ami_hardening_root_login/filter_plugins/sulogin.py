"""Filters: judge how emergency and rescue mode guard their shell (ROOT-06).

A boot that fails (a volume in fstab the instance was launched without, a failed filesystem check)
ends in emergency mode on the serial console. Its unit runs sulogin, which asks for root's password
and, with the password locked, refuses; unless SYSTEMD_SULOGIN_FORCE=1 is in its environment (from a
drop-in, systemd's DefaultEnvironment, or `systemd.setenv=` on the kernel command line): then it opens a
root shell without one. UnsetEnvironment= is applied after every other source of the environment.

`sulogin_problems` is the one definition of a guarded unit: the role asserts it on the files its
changes leave, and the ROOT-06 check of `ami-harden check` imports it from here. Both hand it the unit
files and drop-ins as {path: text}, a masked unit (a link to /dev/null) as an empty text, and the units
to judge (the role's ami_hardening_root_login_sulogin_units).
"""

from __future__ import annotations

import os
import re
import shlex

# systemd's unit search path, highest priority first.
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/usr/lib/systemd/system", "/lib/systemd/system")
FORCE = "SYSTEMD_SULOGIN_FORCE"
SULOGIN = ("systemd-sulogin-shell", "sulogin")
# sulogin's own switch for a locked root: a shell without a password.
FORCE_OPTIONS = ("-e", "--force")
OWNED = ("ExecStart", "UnsetEnvironment", "Environment")
_ASSIGNMENT = re.compile(r"^\s*(?P<key>[A-Za-z]+)\s*=\s*(?P<value>.*?)\s*$")


def _priority(directory: str) -> int:
    return UNIT_DIRS.index(directory) if directory in UNIT_DIRS else len(UNIT_DIRS)


def unit_sources(files: dict[str, str], unit: str) -> list[str]:
    """The files systemd reads for `unit`, in order: its unit file, then its drop-ins and the drop-ins of
    every service (`service.d`), one per file name (the higher-priority directory's), sorted by name.
    Empty when the unit is not installed or is masked."""
    units = sorted((p for p in files if os.path.basename(p) == unit and os.path.dirname(p) in UNIT_DIRS),
                   key=lambda p: _priority(os.path.dirname(p)))
    if not units or not files[units[0]].strip():
        return []
    dropins: dict[str, str] = {}
    for path in sorted(files, key=lambda p: _priority(os.path.dirname(os.path.dirname(p)))):
        parent = os.path.dirname(path)
        if (path.endswith(".conf") and os.path.basename(parent) in (f"{unit}.d", "service.d")
                and os.path.dirname(parent) in UNIT_DIRS):
            dropins.setdefault(os.path.basename(path), path)
    return [units[0], *(dropins[name] for name in sorted(dropins))]


def service_settings(text: str) -> list[tuple[str, str]]:
    """The owned settings of a unit file's [Service] section, in order."""
    found, section = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        elif section == "[Service]" and (match := _ASSIGNMENT.match(line)) and match["key"] in OWNED:
            found.append((match["key"], match["value"]))
    return found


def effective(files: dict[str, str], unit: str) -> dict[str, list[tuple[str, str]]]:
    """Each owned setting's effective values for `unit`, with the file that set each: an empty assignment
    empties the list, UnsetEnvironment= and Environment= take several words."""
    values: dict[str, list[tuple[str, str]]] = {key: [] for key in OWNED}
    for path in unit_sources(files, unit):
        for key, value in service_settings(files[path]):
            if not value:
                values[key] = []
            elif key == "ExecStart":
                values[key].append((value, path))
            else:
                values[key] += [(word, path) for word in shlex.split(value)]
    return values


def _starts_sulogin(command: str) -> bool:
    words = shlex.split(command)
    program = words[0].lstrip("-@:+!") if words else ""
    return os.path.basename(program) in SULOGIN and not any(word in FORCE_OPTIONS for word in words[1:])


def _unit_problems(files: dict[str, str], unit: str) -> list[str]:
    values = effective(files, unit)
    problems = [f"{unit} runs {command!r} ({origin}), not sulogin: a shell without a password"
                for command, origin in values["ExecStart"] if not _starts_sulogin(command)]
    if values["ExecStart"] and FORCE not in [word for word, _ in values["UnsetEnvironment"]]:
        forced = [origin for word, origin in values["Environment"] if word.startswith(f"{FORCE}=")]
        problems.append(f"{unit} does not unset {FORCE}" + (f" and {forced[-1]} sets it" if forced else "")
                        + ": with it (also from systemd.setenv= on the kernel command line) sulogin opens a root "
                          "shell without a password")
    return problems


def sulogin_problems(files: dict[str, str], units: list[str]) -> list[str]:
    """What lets one of `units` open a root shell without a password: a command other than sulogin, or
    SYSTEMD_SULOGIN_FORCE not unset. None for a unit not installed or masked (it starts nothing)."""
    return [problem for unit in units for problem in _unit_problems(files, unit)]


def search_dirs(units: list[str]) -> list[str]:
    """The directories that may hold the units' files and drop-ins."""
    return [f"{directory}/{name}" if name else directory for directory in UNIT_DIRS
            for name in ("", *(f"{unit}.d" for unit in units), "service.d")]


def ours(unit: str, name: str) -> str:
    """The path of the hardening's drop-in `name` for `unit`."""
    return f"{UNIT_DIRS[0]}/{unit}.d/{name}"


def overrides(files: dict[str, str], units: list[str], name: str) -> list[str]:
    """The units' copies and own drop-ins under /etc and /run, other than the hardening's (`name`), that
    set what the hardening decides (the command, what is unset) or set SYSTEMD_SULOGIN_FORCE."""
    found = []
    for unit in units:
        for path in unit_sources(files, unit):
            own = os.path.basename(path) == unit or os.path.basename(os.path.dirname(path)) == f"{unit}.d"
            if path == ours(unit, name) or not own or not path.startswith(("/etc/", "/run/")):
                continue
            if any(key != "Environment" or f"{FORCE}=" in value for key, value in service_settings(files[path])):
                found.append(path)
    return found


def problems_after(files: dict[str, str], units: list[str], name: str, text: str) -> list[str]:
    """sulogin_problems of the files as the role leaves them: the overrides moved aside, `text` written as
    each unit's drop-in `name`."""
    moved = set(overrides(files, units, name))
    after = {path: content for path, content in files.items() if path not in moved}
    after.update({ours(unit, name): text for unit in units})
    return sulogin_problems(after, units)


class FilterModule:
    """Filters of the ami_hardening_root_login role."""

    def filters(self) -> dict:
        return {"ami_hardening_sulogin_search_dirs": search_dirs,
                "ami_hardening_sulogin_overrides": overrides,
                "ami_hardening_sulogin_problems_after": problems_after}
