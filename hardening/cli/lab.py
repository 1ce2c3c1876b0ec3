"""`ami-harden lab image` and `ami-harden lab boot`: the local stand-in for an EC2 instance."""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path

import typer

from hardening.lab import image as lab_image
from hardening.lab.vm import DEFAULT_USER, boot_instance


class Variant(str, Enum):
    debian = "debian"
    traps = "traps"


class Metadata(str, Enum):
    nocloud = "nocloud"
    imds = "imds"


class Format(str, Enum):
    text = "text"
    json = "json"


lab = typer.Typer(help="Build and boot the vulnerable lab image (a local stand-in for an old AMI).",
                  rich_markup_mode="markdown", no_args_is_help=True)


@lab.command("image")
def image_command(
    variant: Variant = typer.Option(Variant.debian, help="debian: as Debian's cloud images (admin `admin`); "
                                    "traps: admin `ec2-user`, plus leftovers that override by drop-in order "
                                    "(sshd, cloud-init, grub defaults, sudoers), a waiting boot menu, a deploy "
                                    "account with a key, and console autologin."),
    rebuild: bool = typer.Option(False, help="Build even when the cached image matches the recipe."),
) -> None:
    """Build the lab image, or reuse the cached one, and print its path as the last line.

    Example: ami-harden lab image --variant traps
    """
    path = lab_image.ensure_image(variant.value, rebuild=rebuild, log=lambda m: typer.echo(m, err=True))
    typer.echo(str(path))


@lab.command("boot")
def boot_command(
    image: Path = typer.Argument(..., help="Disk image to boot (qcow2 or raw); never modified."),
    seconds: float = typer.Option(0, "--for", help="Stop after this many seconds (0: until Ctrl-C)."),
    user_data: Path = typer.Option(None, "--user-data", help="User-data file handed to cloud-init."),
    user: str = typer.Option(DEFAULT_USER, "--user", help="The image's default user, who receives the key pair "
                             "(the traps variant's is ec2-user)."),
    metadata: Metadata = typer.Option(Metadata.imds, help="Where cloud-init finds the instance: imds (DMI that says "
                                      "Amazon EC2 and an IMDSv2 service at 169.254.169.254 that only this instance "
                                      "reaches, as on EC2) or nocloud (a seed disk labelled cidata)."),
    fmt: Format = typer.Option(Format.text, "--format", help="text or json"),
) -> None:
    """Boot IMAGE as a new instance (copy-on-write overlay) and keep it up for a person to use.

    Example: ami-harden lab boot ~/.cache/ami-harden/lab-debian-*.qcow2 --for 600 --format json
    """
    data = user_data.read_text() if user_data else None
    started = time.monotonic()
    try:
        with boot_instance(image, user_data=data, user=user, metadata=metadata.value) as vm:
            record = vm.target.as_dict() | {"console": str(vm.console_log)}
            if fmt is Format.json:
                typer.echo(json.dumps(record))
            else:
                typer.echo(f"{vm.target.url}\nkey: {vm.target.key}\nconsole: {vm.console_log}")
                typer.echo(f"ssh -i {vm.target.key} -p {vm.target.port} -o StrictHostKeyChecking=no "
                           f"{vm.target.user}@127.0.0.1", err=True)
            while seconds <= 0 or time.monotonic() - started < seconds:
                if not vm.alive():
                    typer.echo("the instance stopped", err=True)
                    break
                time.sleep(1)
    except KeyboardInterrupt:
        typer.echo("stopping the instance", err=True)


def register(app: typer.Typer) -> None:
    """Add the `lab` command group."""
    app.add_typer(lab, name="lab")
