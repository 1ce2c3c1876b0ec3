"""Validate the Packer template's amazon sources (amazon-ebs, amazon-chroot) offline, without AWS credentials."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hardening import packer
from hardening.apply import PLAYBOOKS, require_ansible
from hardening.errors import HardeningError

AMAZON_SOURCE = "amazon-ebs.hardened"
CHROOT_SOURCE = "offline.amazon-chroot.hardened"  # the build named "offline"
SOURCES_FILE = "sources.pkr.hcl"
ARGUMENTS_FILE = "amazon-plugin-arguments.pkr.hcl"
# Arguments of the amazon plugin (>= 1.2.2) that Packer 1.6's built-in amazon-ebs builder lacks, with
# the values the plugin documents (v1.8.2); None: any expression (Packer 1.6 still evaluates it).
NEWER_ARGUMENTS: dict[str, object] = {
    "ami_org_arns": None,
    "imds_support": {'"v2.0"'},
    "metadata_options": {
        "http_endpoint": {'"enabled"', '"disabled"'},
        "http_tokens": {'"optional"', '"required"'},
        "http_put_response_hop_limit": range(1, 65),
        "instance_metadata_tags": {'"enabled"', '"disabled"'},
    },
}
# Which of them each builder takes (amazon-chroot launches no build instance: no metadata_options).
ARGUMENTS_OF = {"amazon-ebs": tuple(NEWER_ARGUMENTS), "amazon-chroot": ("ami_org_arns", "imds_support")}
SOURCE_OF = {"amazon-ebs": AMAZON_SOURCE, "amazon-chroot": CHROOT_SOURCE}
# What the image (and the build instance, where there is one) must say about IMDS: IMDSv2 only.
REQUIRED = {("imds_support",): '"v2.0"', ("metadata_options", "http_tokens"): '"required"'}
_ARGUMENT = re.compile(r"^(\w+)\s*(?:=\s*(.+)|(\{))$")


@dataclass(frozen=True)
class Validation:
    """The outcome: what Packer said, how the check was made, and the problems (none: valid)."""

    method: str
    problems: list[str]
    output: str


def split_newer_arguments(text: str, builder: str = "amazon-ebs") -> tuple[str, dict[str, object]]:
    """The template without the arguments of `builder`'s source that Packer 1.6 lacks, and their text."""
    kept: list[str] = []
    cut: dict[str, object] = {}
    in_source = False
    block: dict[str, str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith(f'source "{builder}"'):
            in_source = True
        elif in_source and line.startswith("}"):
            in_source = False
        elif in_source and block is not None:
            if stripped == "}":
                block = None
            elif stripped:
                name, _, value = stripped.partition("=")
                block[name.strip()] = value.strip()
            continue
        elif in_source and (match := _ARGUMENT.match(stripped)) and match.group(1) in NEWER_ARGUMENTS:
            if match.group(3):
                block = cut[match.group(1)] = {}
            else:
                cut[match.group(1)] = match.group(2)
            continue
        kept.append(line)
    return "\n".join(kept) + "\n", cut


def arguments_as_local(cut: dict[str, object], builder: str = "amazon-ebs") -> str:
    """A locals block holding the cut arguments, so that Packer 1.6 still evaluates their expressions."""
    lines = ["locals {", f"  {builder.replace('-', '_')}_plugin_arguments = {{"]
    for name, value in cut.items():
        if isinstance(value, dict):
            lines += [f"    {name} = {{", *(f"      {key} = {text}" for key, text in value.items()), "    }"]
        else:
            lines.append(f"    {name} = {value}")
    return "\n".join([*lines, "  }", "}", ""])


def _accepts(domain: set[str] | range, text: str) -> bool:
    return int(text) in domain if isinstance(domain, range) and text.isdigit() else text in domain


def _describe(domain: set[str] | range) -> str:
    return f"{domain.start} to {domain.stop - 1}" if isinstance(domain, range) else ", ".join(sorted(domain))


def argument_problems(cut: dict[str, object], builder: str = "amazon-ebs") -> list[str]:
    """Cut arguments that the amazon plugin would refuse, or that leave IMDSv1 open."""
    problems = []
    for name, value in cut.items():
        domain = NEWER_ARGUMENTS[name]
        if isinstance(domain, dict) != isinstance(value, dict):
            problems.append(f"{name} must be {'a block' if isinstance(domain, dict) else 'an argument'}")
        elif isinstance(domain, dict):
            for key, text in value.items():
                if key not in domain:
                    problems.append(f"{name}.{key} is not an argument of the amazon plugin")
                elif not _accepts(domain[key], text):
                    problems.append(f"{name}.{key} = {text}: the amazon plugin accepts {_describe(domain[key])}")
        elif domain is not None and not _accepts(domain, value):
            problems.append(f"{name} = {value}: the amazon plugin accepts {_describe(domain)}")
    for path, wanted in REQUIRED.items():
        if path[0] not in ARGUMENTS_OF[builder]:
            continue
        found: object = cut
        for key in path:
            found = found.get(key) if isinstance(found, dict) else None
        if found != wanted:
            problems.append(f"{'.'.join(path)} must be {wanted} (IMDSv2 only), found {found or 'nothing'}")
    return problems


def stage_for_validation(dest: Path, version: tuple[int, ...]) -> tuple[Path, list[str]]:
    """Stage the template (beside a link to playbooks/) for `packer validate`; on Packer 1.6 also return the
    problems of the cut arguments."""
    stage = packer.stage_template(dest / "packer", version)
    (dest / "playbooks").symlink_to(PLAYBOOKS)
    if version >= (1, 7):
        return stage, []
    template, problems = (packer.TEMPLATE_DIR / SOURCES_FILE).read_text(), []
    locals_text = []
    for builder in ARGUMENTS_OF:
        template, cut = split_newer_arguments(template, builder)
        locals_text.append(arguments_as_local(cut, builder))
        problems += [f"{SOURCE_OF[builder]}: {name} is missing" for name in ARGUMENTS_OF[builder] if name not in cut]
        problems += [f"{SOURCE_OF[builder]}: {problem}" for problem in argument_problems(cut, builder)]
    (stage / SOURCES_FILE).unlink()
    (stage / SOURCES_FILE).write_text(template)
    (stage / ARGUMENTS_FILE).write_text("\n".join(locals_text))
    return stage, problems


def validate(workdir: Path, variables: Sequence[str] = (), var_files: Sequence[Path] = ()) -> Validation:
    """Validate the amazon sources with the installed Packer, offline; `variables` are NAME=VALUE."""
    for var_file in var_files:
        if not var_file.is_file():
            raise HardeningError(f"variable file {var_file} does not exist")
    for variable in variables:
        if not re.match(r"^\w+=", variable):
            raise HardeningError(f"--var {variable!r} is not of the form NAME=VALUE")
    version = packer.packer_version()
    require_ansible()  # the template's ansible provisioners are prepared even for validation
    stage, problems = stage_for_validation(workdir, version)
    command = ["packer", "validate", f"-only={AMAZON_SOURCE},{CHROOT_SOURCE}",
               *(f"-var-file={path.resolve()}" for path in var_files),
               *(arg for variable in variables for arg in ("-var", variable)), str(stage)]
    env = os.environ | packer.PACKER_ENV
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir, env=env, timeout=120,
                            check=False)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        problems.insert(0, f"{', '.join(SOURCE_OF.values())}: packer validate exited {result.returncode}")
    shown = ".".join(map(str, version))
    if version >= (1, 7):
        method = f"packer {shown} validate"
    else:
        method = (f"packer {shown} validate, with {', '.join(NEWER_ARGUMENTS)} evaluated as a local and checked "
                  "against the amazon plugin's documented values (Packer 1.6's built-in builder lacks them)")
    return Validation(method=method, problems=problems, output=output)
