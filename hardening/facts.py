"""Everything the checks judge, gathered from a host by ONE shell command and parsed here.

The same script runs live (over SSH, as root through sudo) and offline (`chroot` into a mounted
image root, as root). Offline there is no running kernel or sshd: `sshd -T` runs in a private
mount namespace with a throw-away host key on a tmpfs /run, and the boot checks judge the boot
configuration instead of /proc/cmdline. cloud-init's configuration is merged here from the raw
files, as a new instance's cloud-init will read them (importing cloud-init on a TCG guest takes seconds).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import yaml

_SCRIPT = Path(__file__).with_name("gather.sh").read_text()

_SECTION = re.compile(r"^@@AMI@@ (\S+)\n(.*?)\n?@@RC@@ (\d+)$", re.M | re.S)


def gather_script(offline: bool, admin_user: str | None) -> str:
    """The POSIX shell script that prints every fact in delimited sections."""
    return _SCRIPT.replace("@OFFLINE@", "1" if offline else "0").replace("@ADMIN@", shlex.quote(admin_user or ""))


@dataclass(frozen=True)
class Section:
    """The output and exit code of one gathering step."""

    text: str
    rc: int

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]

    def blocks(self, marker: str) -> dict[str, list[str]]:
        """Lines grouped under `@@MARKER@@ name` headers, in order."""
        grouped: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in self.text.splitlines():
            if line.startswith(f"@@{marker}@@ "):
                current = grouped.setdefault(line.split(" ", 1)[1], [])
            elif current is not None:
                current.append(line)
        return grouped


def parse_sections(output: str) -> dict[str, Section]:
    """Split the script's output into named sections."""
    return {m[1]: Section(m[2], int(m[3])) for m in _SECTION.finditer(output)}


@dataclass(frozen=True)
class SudoList:
    """What `sudo -l -U USER` says: matching Defaults, the grant lines, or an error."""

    defaults: tuple[str, ...] = ()
    grants: tuple[str, ...] = ()
    error: str | None = None


def parse_sudo_list(lines: list[str]) -> SudoList:
    """Parse the output of `sudo -l -U USER` (wrapped lines included)."""
    if not any("may run the following commands" in line or "is not allowed to run sudo" in line for line in lines):
        return SudoList(error=next((line.strip() for line in lines if line.strip()), "no output"))
    defaults: list[str] = []
    grants: list[str] = []
    target: list[str] | None = None
    for line in lines:
        if line.startswith("Matching Defaults entries"):
            target = defaults
        elif line.startswith("User ") and "may run the following commands" in line:
            target = grants
        elif not line.strip() or not line[0].isspace():
            target = None
        elif target is not None:
            target.append(line.strip())
    items = [item.strip() for item in re.split(r"(?<!\\),", " ".join(defaults)) if item.strip()]
    return SudoList(defaults=tuple(items), grants=tuple(grants))


def sshd_settings(text: str) -> dict[str, str]:
    """`sshd -T` output as keyword -> value (first value of repeated keywords joined by ', ')."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and key.islower():
            settings[key] = f"{settings[key]}, {value}" if key in settings else value
    return settings


def sshd_origin(files: dict[str, list[str]], keyword: str) -> str | None:
    """The `file:line` whose setting of `keyword` sshd uses (the first one outside Match blocks)."""
    def walk(path: str, depth: int = 0) -> str | None:
        for number, raw in enumerate(files.get(path, []), 1):
            words = raw.split("#", 1)[0].split()
            if not words:
                continue
            word = words[0].lower()
            if word == "match":
                return None
            if word == "include" and depth < 8:
                for pattern in words[1:]:
                    pattern = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
                    for included in sorted(p for p in files if fnmatch.fnmatch(p, pattern)):
                        found = walk(included, depth + 1)
                        if found:
                            return found
            elif word == keyword.lower():
                return f"{path}:{number}"
        return None

    return walk("/etc/ssh/sshd_config")


def sshd_match_settings(files: dict[str, list[str]], keyword: str) -> list[tuple[str, str, str]]:
    """`(file:line, the Match line, value)` of every setting of `keyword` inside a Match block, in the order
    sshd reads the files. `sshd -T -C` judges only the connection it is given; these are the others."""
    found: list[tuple[str, str, str]] = []

    def walk(path: str, depth: int = 0) -> None:
        match = ""
        for number, raw in enumerate(files.get(path, []), 1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            word, _, value = re.sub(r"^(\S+?)\s*=\s*", r"\1 ", text).partition(" ")
            word, value = word.lower(), value.strip()
            if word == "match":
                match = "" if value.lower() == "all" else f"Match {value}"
            elif word == "include" and depth < 8:
                for pattern in value.split():
                    pattern = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
                    for included in sorted(p for p in files if fnmatch.fnmatch(p, pattern)):
                        walk(included, depth + 1)
            elif match and word == keyword.lower():
                found.append((f"{path}:{number}", match, value))

    walk("/etc/ssh/sshd_config")
    return found


def merge_cloud_files(files: dict[str, str]) -> tuple[dict, dict[tuple[str, ...], str]]:
    """Merge /etc/cloud/cloud.cfg, cloud.cfg.d/*.cfg (in name order) and /run/cloud-init/cloud.cfg the
    way cloud-init's fetch_base_config does (later files win, dicts merge recursively, lists are
    replaced); also return which file set each key path."""
    merged: dict = {}
    origin: dict[tuple[str, ...], str] = {}

    def merge(into: dict, data: dict, path: tuple[str, ...], source: str) -> None:
        for key, value in data.items():
            here = (*path, str(key))
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value, here, source)
            else:
                into[key] = value
                origin[here] = source
                for child in [p for p in origin if p[: len(here)] == here and p != here]:
                    del origin[child]

    def rank(path: str) -> tuple[int, str]:
        return (0 if path == "/etc/cloud/cloud.cfg" else 2 if path.startswith("/run/") else 1), path

    for path in sorted(files, key=rank):
        try:
            data = yaml.safe_load(files[path])
        except yaml.YAMLError:
            continue
        if isinstance(data, dict):
            merge(merged, data, (), path)
    return merged, origin


@dataclass(frozen=True)
class Initramfs:
    """The initramfs of the kernel that boots, and the paths of ami-hardening's scripts in it."""

    image: str | None
    matches: tuple[str, ...] = ()

    def carrying(self, name: str) -> tuple[str, ...]:
        """The paths in the initramfs that name the script `name`."""
        return tuple(path for path in self.matches if name in path)


@dataclass
class Facts:
    """Parsed facts of one host; `offline` when judged from a mounted image root."""

    sections: dict[str, Section]
    offline: bool
    admin_user: str | None = None

    @classmethod
    def from_output(cls, output: str, offline: bool, admin_user: str | None) -> Facts:
        return cls(parse_sections(output), offline, admin_user)

    def section(self, name: str) -> Section:
        return self.sections.get(name, Section("", 127))

    # --- sshd -------------------------------------------------------------------------------
    @cached_property
    def sshd_installed(self) -> bool:
        return self.section("sshd").rc != 127

    def sshd(self, who: str = "") -> dict[str, str]:
        """Effective sshd settings: global (`who` empty), or for a connection by `root` or the admin user."""
        sections = {"": "sshd", "root": "sshd-root"}
        if self.admin_user:
            sections[self.admin_user] = "sshd-admin"
        if who not in sections:
            raise ValueError(f"sshd settings were gathered for root and the admin user only, not {who!r}")
        name = sections[who]
        return sshd_settings(self.section(name).text) if self.section(name).rc == 0 else {}

    def sshd_error(self) -> str | None:
        section = self.section("sshd")
        return None if section.rc == 0 else (section.lines[-1] if section.lines else f"exit {section.rc}")

    @cached_property
    def sshd_files(self) -> dict[str, list[str]]:
        return self.section("sshd-files").blocks("FILE")

    def sshd_origin(self, keyword: str) -> str | None:
        return sshd_origin(self.sshd_files, keyword)

    def sshd_match_settings(self, keyword: str) -> list[tuple[str, str, str]]:
        return sshd_match_settings(self.sshd_files, keyword)

    @cached_property
    def sshd_unit_commands(self) -> list[str]:
        """Unit-file lines that pass AuthorizedKeysCommand to sshd on its command line."""
        return [line for line in self.section("sshd-units").lines if "ssh" in line.split(":", 1)[0]]

    # --- accounts ---------------------------------------------------------------------------
    @cached_property
    def accounts(self) -> dict[str, dict[str, str]]:
        found = {}
        for line in self.section("passwd").lines:
            parts = line.split(":")
            if len(parts) >= 7:
                found[parts[0]] = {"uid": parts[2], "gid": parts[3], "home": parts[5], "shell": parts[6]}
        return found

    @cached_property
    def groups(self) -> dict[str, tuple[str, set[str]]]:
        """Group name -> (gid, members including users whose primary group it is)."""
        found: dict[str, tuple[str, set[str]]] = {}
        for line in self.section("group").lines:
            parts = line.split(":")
            if len(parts) >= 4:
                found[parts[0]] = (parts[2], {m for m in parts[3].split(",") if m})
        for user, info in self.accounts.items():
            for gid, members in found.values():
                if gid == info["gid"]:
                    members.add(user)
        return found

    @cached_property
    def password_states(self) -> dict[str, str]:
        """User -> locked | empty | hash | unusable, from /etc/shadow (hashes never leave the host)."""
        return dict(line.split(":", 1) for line in self.section("shadow").lines if ":" in line)

    @cached_property
    def account_keys(self) -> dict[str, dict[str, list[str]]]:
        """Account -> its authorized keys files (where sshd looks) -> their key lines."""
        found: dict[str, dict[str, list[str]]] = {}
        for header, lines in self.section("account-keys").blocks("FILE").items():
            user, _, path = header.partition(" ")
            found.setdefault(user, {})[path] = lines
        return found

    @cached_property
    def root_keys(self) -> dict[str, list[str]]:
        return self.account_keys.get("root", {})

    @cached_property
    def sudo_installed(self) -> bool:
        return "@@NOSUDO@@" not in self.section("sudo-0").text

    @cached_property
    def sudo(self) -> dict[str, SudoList]:
        """`sudo -l -U` of every account (listed in two halves that run side by side)."""
        blocks = {**self.section("sudo-0").blocks("USER"), **self.section("sudo-1").blocks("USER")}
        return {user: parse_sudo_list(lines) for user, lines in blocks.items()}

    @cached_property
    def sudoers_group_rules(self) -> dict[str, list[str]]:
        """Group -> the `file:line: rule` lines of sudoers that grant to `%group`."""
        rules: dict[str, list[str]] = {}
        for line in self.section("sudoers-groups").lines:
            if line.count(":") < 2:
                continue
            path, number, rule = line.split(":", 2)
            group = rule.strip()[1:].split()[0] if rule.strip()[1:].split() else ""
            rules.setdefault(group, []).append(f"{path}:{number}: {' '.join(rule.split())}")
        return rules

    # --- cloud-init -------------------------------------------------------------------------
    @cached_property
    def cloud_files(self) -> dict[str, str]:
        return {path: "\n".join(lines) for path, lines in self.section("cloud-files").blocks("FILE").items()}

    @cached_property
    def _cloud_merge(self) -> tuple[dict, dict[tuple[str, ...], str]]:
        return merge_cloud_files(self.cloud_files)

    @cached_property
    def _cloud_configured(self) -> tuple[dict, dict[tuple[str, ...], str]]:
        configured = {path: text for path, text in self.cloud_files.items() if not path.startswith("/run/")}
        return merge_cloud_files(configured)

    def configured_cloud_value(self, key: str) -> tuple[object, str]:
        """A top-level key as /etc/cloud sets it, and where: what a new instance's ds-identify starts
        from (/run/cloud-init/cloud.cfg holds this boot's answer, not the next instance's)."""
        merged, origin = self._cloud_configured
        return merged.get(key), f"from {origin[(key,)]}" if (key,) in origin else "set nowhere"

    @cached_property
    def cloud_source(self) -> str | None:
        """How the configuration was merged; None when cloud-init has no configuration (not installed)."""
        return "/etc/cloud files merged as cloud-init merges them" if self.cloud_files else None

    @cached_property
    def cloud(self) -> dict:
        """cloud-init's system configuration as a new instance reads it (built-in defaults excluded)."""
        return self._cloud_merge[0]

    def cloud_value(self, *path: str, default=None):
        node = self.cloud
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def cloud_origin(self, *path: str) -> str:
        """Where a merged key comes from, for evidence."""
        origin = self._cloud_merge[1]
        for depth in range(len(path), 0, -1):
            if path[:depth] in origin:
                return f"from {origin[path[:depth]]}"
        return "set nowhere"

    # --- boot -------------------------------------------------------------------------------
    @cached_property
    def getty_lines(self) -> list[str]:
        """`file:line:ExecStart=...` of every getty and console unit and drop-in (and inittab's gettys)."""
        return [line for line in self.section("gettys").lines if not line.startswith("@@")]

    @cached_property
    def debug_shell(self) -> str:
        """`systemctl is-enabled debug-shell.service` (masked, disabled, enabled, ...)."""
        lines = self.section("gettys").lines
        return next((line.split(" ", 1)[1] for line in lines if line.startswith("@@DEBUG_SHELL@@ ")), "unknown")

    @cached_property
    def sulogin_units(self) -> dict[str, str] | None:
        """Emergency and rescue mode's unit files and drop-ins, path -> text (a masked unit's empty); None
        when they were not gathered."""
        section = self.section("sulogin")
        if section.rc == 127:
            return None
        return {path: "\n".join(lines) for path, lines in section.blocks("FILE").items()}

    @cached_property
    def cmdline(self) -> str | None:
        """The running kernel's command line (None offline)."""
        section = self.sections.get("cmdline")
        return section.text.strip() if section else None

    @cached_property
    def grub_cfg(self) -> dict[str, list[str]]:
        """grub.cfg path -> its `N:linux ...` and `N:search ...` lines."""
        return self.section("grub-cfg").blocks("FILE")

    @cached_property
    def bls_options(self) -> dict[str, list[str]]:
        """BLS entry -> its `N:options ...` lines, with $kernelopts expanded from grubenv."""
        section = self.section("bls")
        kernelopts = next((line.split("=", 1)[1] for line in section.lines if line.startswith("kernelopts=")), "")
        entries = section.blocks("FILE")
        return {path: [line.replace("$kernelopts", kernelopts) for line in lines if re.match(r"\d+:", line)]
                for path, lines in entries.items()}

    @cached_property
    def grub_defaults(self) -> dict[str, str]:
        """/etc/default/grub(+.d) as grub-mkconfig sees it (the files sourced in order)."""
        values = {}
        for line in self.section("grub-defaults").lines:
            if line.startswith("GRUB_") and "=" in line:
                key, value = line.split("=", 1)
                values[key] = value
        return values

    @cached_property
    def grub_default_lines(self) -> list[str]:
        return [line[9:] for line in self.section("grub-defaults").lines if line.startswith("@@LINE@@ ")]

    @cached_property
    def fstab(self) -> list[list[str]]:
        rows = []
        for line in self.section("fstab").lines:
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2:
                rows.append(fields)
        return rows

    @cached_property
    def root_mount(self) -> str | None:
        section = self.sections.get("findmnt")
        return " ".join(section.text.split()) if section and section.rc == 0 else None

    @cached_property
    def initramfs(self) -> Initramfs:
        section = self.section("initramfs")
        image = next((line[10:] for line in section.lines if line.startswith("@@IMAGE@@ ")), None)
        if section.rc != 0 or image is None:
            return Initramfs(None, ())
        return Initramfs(image, tuple(line for line in section.lines if not line.startswith("@@")))

    def initramfs_carries(self, script: str, held: str, missing: str) -> tuple[bool, str]:
        """Whether the booting kernel's initramfs carries ami-hardening's `script`, and the evidence:
        `held` or `missing` says what that means."""
        image = self.initramfs.image
        which = "the running kernel's" if self.cmdline is not None else "offline: the newest kernel's"
        if image is None:
            return False, f"no initramfs found ({which})"
        paths = self.initramfs.carrying(script)
        if paths:
            return True, f"{image} ({which}) contains {', '.join(paths)}{held}"
        return False, f"{image} ({which}) has no {script}{missing}"

    # --- sudo side doors ----------------------------------------------------------------------
    @cached_property
    def pkexec(self) -> tuple[str, str, str] | None:
        """(octal mode, owner, path) of pkexec, or None when it is not installed."""
        lines = self.section("pkexec").lines
        if not lines:
            return None
        mode, owner, path = lines[0].split(" ", 2)
        return mode, owner, path

    @cached_property
    def polkitd(self) -> str | None:
        """The path of polkit's daemon, or None when polkit is not installed."""
        return next((line[11:] for line in self.section("polkit").lines if line.startswith("@@POLKITD@@ ")), None)

    @cached_property
    def polkit_rules(self) -> dict[str, str]:
        return {path: "\n".join(lines) for path, lines in self.section("polkit").blocks("FILE").items()}

    @cached_property
    def ssm_units(self) -> dict[str, str]:
        units = {}
        for line in self.section("ssm").lines:
            if line.startswith("@@UNIT@@ "):
                _, unit, state = line.split(" ", 2)
                units[unit] = state
        return units

    @cached_property
    def ssm_sudoers(self) -> list[str]:
        return [line[9:] for line in self.section("ssm").lines if line.startswith("@@FILE@@ ")]


def polkit_order(rules: dict[str, str]) -> list[str]:
    """The rules files in the order polkit runs them: by file name, /etc's first where a name is in both
    /etc/polkit-1/rules.d and /usr/share/polkit-1/rules.d (polkit runs both)."""
    return sorted(rules, key=lambda path: (PurePosixPath(path).name, path))


def polkit_services(text: str) -> list[str] | None:
    """The accounts the hardening's rules file passes to later rules (`var services = [...]`), or None
    when the text has no such list."""
    match = re.search(r"^\s*var services = (\[.*\]);$", text, re.MULTILINE)
    if not match:
        return None
    try:
        found = json.loads(match.group(1))
    except ValueError:
        return None
    return found if isinstance(found, list) and all(isinstance(name, str) for name in found) else None
