"""`ami-harden check`: judge a live instance, a mounted root or a disk image against the controls."""

from __future__ import annotations

from pathlib import Path

import typer

from hardening.check import resolve_target, run_checks
from hardening.cli.choices import Profile, ReportFormat
from hardening.report import render


def check_command(
    target: str = typer.Argument(..., help="ssh://USER@HOST:PORT (live, USER needs sudo), a mounted image root "
                                 "directory, or a disk image file (qcow2/raw); offline targets need root."),
    key: Path = typer.Option(None, help="SSH private key for a live target."),
    profile: Profile = typer.Option(Profile.marketplace, help="marketplace: only the admin user has sudo; "
                                    "sealed: nobody has sudo."),
    admin_user: str = typer.Option(None, help="The one user allowed sudo (default: the SSH user; "
                                   "required offline for marketplace)."),
    only: list[str] = typer.Option(None, "--only", help="Check only this control id (repeatable)."),
    skip: list[str] = typer.Option(None, "--skip", help="Leave this control id out (repeatable)."),
    fmt: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table, json, junit, sarif or html."),
    output: Path = typer.Option(None, help="Write the report to this file instead of standard output."),
    report: Path = typer.Option(None, help="Also write the report as JSON to this file, whatever --format "
                                "prints (the Packer build's verification reads it)."),
) -> None:
    """Check TARGET against every control (or the --only ones, less the --skip ones) and report the evidence.

    Exit 0 when every control passes (skipped counts as passed), 1 when any fails or errors, 2 on bad
    input or an unreachable target.

    Example: ami-harden check ssh://admin@127.0.0.1:2222 --key lab_key --format html --output report.html

    Offline, as root: ami-harden check lab.qcow2 --admin-user admin --format json
    """
    checked = run_checks(resolve_target(target, key), profile.value, admin_user, only or None, skip or ())
    text = render(checked.document(), fmt.value)
    if report:
        report.write_text(render(checked.document(), "json"))
    if output:
        output.write_text(text)
        typer.echo(f"{output}: {len(checked.results)} controls, failing: {', '.join(checked.failing()) or 'none'}",
                   err=True)
    else:
        typer.echo(text, nl=False)
    raise typer.Exit(0 if checked.passed else 1)


def register(app: typer.Typer) -> None:
    """Add the `check` command."""
    app.command("check")(check_command)
