"""`ami-harden attack`: boot an image with hostile inputs and report each vector OPEN or CLOSED."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from hardening.attack.probe import attack
from hardening.cli.choices import Profile, ReportFormat
from hardening.report import render


def attack_command(
    image: Path = typer.Argument(..., help="Disk image (qcow2 or raw) to boot as a new instance; never modified."),
    profile: Profile = typer.Option(Profile.marketplace, help="marketplace: the admin's sudo is expected; "
                                    "sealed: any sudo is OPEN."),
    admin_user: str = typer.Option("admin", help="The one account allowed sudo under the marketplace profile."),
    fmt: ReportFormat = typer.Option(ReportFormat.table, "--format",
                                     help="table, json (a `vectors` list), junit, sarif or html"),
    output: Path = typer.Option(None, help="Write the report here instead of standard output."),
) -> None:
    """Boot IMAGE four times as a new instance with hostile inputs and judge each vector.

    Every boot is an EC2-like instance: DMI that says Amazon EC2 and an IMDSv2 metadata service that
    only it reaches. Boot 1 gets a user-data battery from the metadata service (a #! script, a
    #cloud-boothook and a #cloud-config with bootcmd, runcmd, write_files into /etc/sudoers.d, users
    with sudo, chpasswd for root, ssh_pwauth, disable_root: false, as MIME multi-part), a decoy volume
    with the root's LABEL attached before the real disk, and volumes labelled config-2 (ConfigDrive,
    with files to write as root) and cidata (NoCloud) that try to pass for the datasource; it then
    tries root over SSH (key and password), the serial console, sudo, and polkit (systemd-run and
    pkexec). Boot 2 attaches a decoy with the same LABEL and UUID after the real disk. Boot 3 presses
    ESC on the serial console from power-on and, where GRUB answers, tries its command line and
    editor with init=/bin/sh. Boot 4 puts the root disk on a controller the initramfs has no driver
    for and watches the serial console for the initramfs's shell.

    Exit 0 when every vector is CLOSED, 1 when any is OPEN or inconclusive, 2 on bad input.

    Example: ami-harden attack ~/.cache/ami-harden/lab-debian-*.qcow2 --format json
    """
    started = time.monotonic()

    def progress(message: str) -> None:
        typer.echo(f"[{time.monotonic() - started:5.0f}s] {message}", err=True)

    report = attack(image, profile.value, admin_user, log=progress)
    text = json.dumps(report.as_dict(), indent=2) if fmt is ReportFormat.json else render(report.document(), fmt.value)
    if output:
        output.write_text(text.rstrip("\n") + "\n")
        typer.echo(f"report written to {output}", err=True)
    else:
        typer.echo(text)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add the `attack` command."""
    app.command("attack")(attack_command)
