"""`ami-harden apply`: run the hardening playbook against a build instance."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from hardening.apply import LOCAL, apply
from hardening.cli.choices import Profile
from hardening.disk import is_disk_image
from hardening.target import Image, Target


def _target(spec: str, key: Path | None) -> Target | Image | str | Path:
    """TARGET as a Target (ssh://...), "local", an Image (a disk image file or a mounted root directory),
    or an inventory file path."""
    if spec == LOCAL:
        return LOCAL
    path = Path(spec).expanduser()
    if "://" not in spec and (path.is_dir() or is_disk_image(path)):
        return Image(path)
    if "://" not in spec and path.is_file():
        return path
    return Target.parse(spec, key=key)


def _default_admin(target: Target | str | Path) -> str | None:
    """The admin user when none is given: the SSH user, or the user who ran sudo for a local run."""
    if isinstance(target, Target):
        return target.user
    if target == LOCAL:
        return os.environ.get("SUDO_USER")
    return None


SHOWN = ("ami-harden: ", "TASK [", "RUNNING HANDLER [", "changed:", "fatal:", "failed:", "PLAY RECAP", "[ERROR]",
         "ERROR!")


def _show(line: str) -> None:
    """Print the lines worth a person's attention while the play runs."""
    if line.startswith(SHOWN):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add `apply` to the CLI."""

    @app.command("apply")
    def apply_command(
        target: str = typer.Argument(..., help="ssh://USER@HOST:PORT, local, a disk image "
                                    "(qcow2 or raw) or mounted root directory, or an Ansible inventory file."),
        key: Path = typer.Option(None, "--key", help="SSH private key for an ssh:// target."),
        profile: Profile = typer.Option(Profile.marketplace, help="marketplace: one key-based admin keeps "
                                        "sudo (AWS policy); sealed: nobody keeps sudo (breaks the policy)."),
        admin_user: str = typer.Option(None, "--admin-user", help="Account that keeps sudo (marketplace); "
                                       "default: the SSH user, or $SUDO_USER for local."),
        skip: list[str] = typer.Option([], "--skip", help="Control id to leave alone (repeatable)."),
        only: list[str] = typer.Option([], "--only", help="Apply only this control id (repeatable)."),
        check: bool = typer.Option(False, "--check", help="Show what would change; change nothing."),
        full: bool = typer.Option(False, "--full", help="Apply every selected control, also those a first "
                                  "check finds holding (default for an ssh:// or image TARGET: only those "
                                  "that fail it)."),
        diff: bool = typer.Option(False, "--diff", help="Show file differences."),
        confirm_sealed: bool = typer.Option(False, "--confirm-sealed",
                                            help="Required for --profile sealed."),
        log: Path = typer.Option(None, "--log", help="Write ansible-playbook's output here "
                                 "(default: ~/.cache/ami-harden/logs/apply-*.log)."),
    ) -> None:
        """Harden TARGET against root login, sudo, user-data and label-based boot.

        Example: ami-harden apply ssh://admin@127.0.0.1:2222 --key ~/.ssh/build --skip ROOT-07 --check
        """
        parsed = _target(target, key)
        result = apply(parsed, profile=profile.value, admin_user=admin_user or _default_admin(parsed),
                       skip=skip, only=only, check=check, diff=diff, log_path=log,
                       sealed_confirmed=confirm_sealed, progress=_show, full=full)
        typer.echo(f"ami-harden: applied {profile.value} to {target}: {result.summary()}")
