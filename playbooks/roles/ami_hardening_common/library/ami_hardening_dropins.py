#!/usr/bin/python
"""Own settings in a directory of drop-ins: neutralise every other file's setting, then judge the effective value."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: ami_hardening_dropins
short_description: Neutralise other drop-ins' settings of what ami-hardening owns, and check the effective values
description:
  - A setting in a drop-in directory is only as strong as the file that is read last (cloud-init, grub
    defaults) or first (sshd). This module finds every other file in I(paths) that sets one of the
    I(owned) settings and takes that setting out, leaving a marker naming the control; then it
    computes the effective values the way the consuming program does and fails when one differs
    from I(expect).
  - C(sshd) keywords (case-insensitive, also inside Match blocks) and C(shell) variable assignments
    (grub defaults) are commented out in every file but I(ours), in place; an sshd line that sets
    the value I(ours) sets is left alone (cloud-init writes C(PasswordAuthentication no) again on
    every new instance).
  - C(cloud_init) key paths are taken out of the files that cloud-init merges after I(ours); such a
    file keeps its original text as comments and its other settings re-written below them.
    Effective values come from cloud-init's own reader (C(read_conf_with_confd)).
  - Files are replaced atomically (a temporary file in the same directory, then rename), keeping
    their owner and mode. In check mode nothing is written and I(expect) is not judged.
options:
  kind:
    description: The syntax of the files.
    type: str
    required: true
    choices: [sshd, shell, cloud_init]
  paths:
    description: Files and globs in the order the program reads them (each glob expanded in C locale order).
    type: list
    elements: str
    required: true
  ours:
    description: The file that holds ami-hardening's settings; never changed here.
    type: path
    required: true
  owned:
    description: Keywords (sshd), variable names (shell) or dotted key paths (cloud_init) that I(ours) decides.
    type: list
    elements: str
    required: true
  control:
    description: The control id(s) named in the marker, e.g. C(ROOT-01).
    type: str
    required: true
  expect:
    description: >-
      Effective values to require after the change (shell: name to string; cloud_init: dotted path to
      value). C(sshd) has none here: sshd -T judges it.
    type: dict
    default: {}
author: ami-hardening
"""

RETURN = r"""
neutralised:
  description: Files changed, each with the settings taken out.
  type: dict
  returned: always
effective:
  description: The effective value of each I(expect) key (after the change; before it in check mode).
  type: dict
  returned: always
"""

HEADER = "# ami-hardening {control}: "


def expand(paths: list[str]) -> list[str]:
    """Every existing file named by `paths`, in reading order, without repeats."""
    found: list[str] = []
    for pattern in paths:
        for path in sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]:
            if os.path.isfile(path) and path not in found:
                found.append(path)
    return found


def sshd_values(text: str, owned: list[str]) -> dict[str, str]:
    """The value `text` gives each owned sshd keyword (lower-cased; the first one, as sshd reads it)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].replace("=", " ", 1).split()
        if len(words) >= 2 and words[0].lower() in {name.lower() for name in owned}:
            values.setdefault(words[0].lower(), " ".join(words[1:]).lower())
    return values


def comment_lines(text: str, pattern: re.Pattern, marker: str, same: dict[str, str] | None = None
                  ) -> tuple[str, list[str]]:
    """Comment out each line `pattern` matches, except one that sets the value in `same` (sshd keywords,
    lower-cased: a line agreeing with ours is no override, cloud-init rewrites one on every new instance);
    return the new text and the names taken out."""
    taken: list[str] = []
    lines = []
    for line in text.splitlines(keepends=True):
        match = pattern.match(line)
        if match and same is not None and sshd_values(line, [match.group("name")]) == {
                match.group("name").lower(): same.get(match.group("name").lower())}:
            match = None
        if match:
            taken.append(match.group("name"))
            indent = line[: len(line) - len(line.lstrip())]
            line = f"{indent}{marker}{line.lstrip()}"
        lines.append(line)
    return "".join(lines), taken


def line_pattern(kind: str, owned: list[str]) -> re.Pattern:
    names = "|".join(re.escape(name) for name in owned)
    if kind == "sshd":
        return re.compile(rf"^\s*(?P<name>{names})(?:\s|=|$)", re.IGNORECASE)
    return re.compile(rf"^\s*(?:export\s+)?(?P<name>{names})=")


def drop_path(data: dict, path: list[str]) -> bool:
    """Remove a dotted key path from nested dicts; True when something was removed."""
    node = data
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return False
    if isinstance(node, dict) and path[-1] in node:
        del node[path[-1]]
        return True
    return False


def prune(data: dict) -> dict:
    """Drop dicts left empty by drop_path, so a file does not set `system_info: {}`."""
    for key in list(data):
        if isinstance(data[key], dict):
            prune(data[key])
            if not data[key]:
                del data[key]
    return data


def rewrite_cloud(text: str, owned: list[str], marker: str) -> tuple[str, list[str]]:
    """A cloud.cfg.d file without the owned key paths: its original text as comments, the rest as YAML."""
    import yaml

    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        return text, []
    taken = [path for path in owned if drop_path(data, path.split("."))]
    if not taken:
        return text, []
    lines = text.splitlines()
    kept = 0
    while kept < len(lines) and (lines[kept].startswith("#") or not lines[kept].strip()):
        kept += 1
    # A file rewritten before keeps its comment block (the original text) and gets a new header line.
    rewritten = any(line.startswith("#| ") for line in lines[:kept])
    original = lines[:kept] if rewritten else [f"#| {line}" for line in lines]
    header = (f"{marker}took out {', '.join(taken)} (set by ami-hardening); "
              "the original text is kept below as comments, the rest re-written after it")
    prune(data)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False) if data else ""
    return "\n".join([header, *original, ""]) + body, taken


def write_atomically(path: str, text: str) -> None:
    status = os.stat(path)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".ami-hardening-")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chown(temporary, status.st_uid, status.st_gid)
        os.chmod(temporary, status.st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def effective_shell(files: list[str], names: list[str]) -> dict:
    """Source `files` in order with sh, as grub-mkconfig does, and read the named variables."""
    script = "".join(f'. "{path}"\n' for path in files)
    script += f'exec "{sys.executable}" -c "import json, os, sys; print(json.dumps(dict(os.environ)))"\n'
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    result = subprocess.run(["sh", "-ac", script], capture_output=True, text=True, env=env, check=True)
    values = json.loads(result.stdout.splitlines()[-1])
    return {name: values.get(name, "") for name in names}


def effective_cloud(ours: str, names: list[str]) -> dict:
    """The merged /etc/cloud configuration as cloud-init itself reads it."""
    from cloudinit import util

    base = os.path.join(os.path.dirname(os.path.dirname(ours)), "cloud.cfg")
    merged = util.read_conf_with_confd(base)
    values = {}
    for name in names:
        node = merged
        for key in name.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        values[name] = node
    return values


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "kind": {"type": "str", "required": True, "choices": ["sshd", "shell", "cloud_init"]},
            "paths": {"type": "list", "elements": "str", "required": True},
            "ours": {"type": "path", "required": True},
            "owned": {"type": "list", "elements": "str", "required": True},
            "control": {"type": "str", "required": True},
            "expect": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    kind, ours, owned = module.params["kind"], module.params["ours"], module.params["owned"]
    marker = HEADER.format(control=module.params["control"])
    files = expand(module.params["paths"])
    neutralised: dict[str, list[str]] = {}
    changes: dict[str, tuple[str, str]] = {}
    if owned:
        ours_values = {}
        if kind == "sshd" and os.path.exists(ours):
            with open(ours, encoding="utf-8", errors="surrogateescape") as stream:
                ours_values = sshd_values(stream.read(), owned)
        after_ours = files[files.index(ours) + 1:] if ours in files else files
        for path in (after_ours if kind == "cloud_init" else [p for p in files if p != ours]):
            with open(path, encoding="utf-8", errors="surrogateescape") as stream:
                text = stream.read()
            if kind == "cloud_init":
                try:
                    new, taken = rewrite_cloud(text, owned, marker)
                except Exception as error:  # a file cloud-init cannot parse is ignored by it as well
                    module.warn(f"{path}: not YAML, left alone ({error})")
                    continue
            else:
                new, taken = comment_lines(text, line_pattern(kind, owned), marker + "set elsewhere by ami-hardening: ",
                                           ours_values if kind == "sshd" else None)
            if taken:
                neutralised[path] = taken
                changes[path] = (text, new)
    if changes and not module.check_mode:
        for path, (_, text) in changes.items():
            write_atomically(path, text)

    expect = module.params["expect"]
    effective: dict = {}
    if expect and kind != "sshd" and os.path.exists(ours):
        names = list(expect)
        try:
            effective = effective_shell(files, names) if kind == "shell" else effective_cloud(ours, names)
        except Exception as error:
            module.fail_json(msg=f"cannot compute the effective settings: {error}", neutralised=neutralised)
        wrong = {name: effective[name] for name in names if effective[name] != expect[name]}
        if wrong and not module.check_mode:
            shown = "; ".join(f"{name} is {value!r}, not {expect[name]!r}" for name, value in wrong.items())
            module.fail_json(msg=f"{module.params['control']}: effective setting still wrong after neutralising "
                                 f"other files: {shown}", neutralised=neutralised, effective=effective)
    module.exit_json(changed=bool(changes), neutralised=neutralised, effective=effective,
                     diff=[{"before_header": path, "after_header": path, "before": old, "after": new}
                           for path, (old, new) in changes.items()] if module._diff else [])


if __name__ == "__main__":
    main()
