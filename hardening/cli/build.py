"""`ami-harden build local`: the Packer template's QEMU source, run on a local disk image."""

from __future__ import annotations

from pathlib import Path

import typer

from hardening import packer
from hardening.cli.choices import Profile

build = typer.Typer(help="Build hardened images with the Packer template in packer/.", no_args_is_help=True)


@build.command("local")
def local_command(
    base: Path = typer.Option(..., "--base", help="Base disk image (qcow2 or raw); never modified."),
    profile: Profile = typer.Option(Profile.marketplace, help="marketplace: the admin user keeps sudo; "
                                    "sealed: nobody keeps sudo (breaks AWS Marketplace policy)."),
    admin_user: str = typer.Option("admin", help="The image's default cloud user: Packer logs in as it, "
                                   "and under marketplace it is the one account with sudo."),
    output: Path = typer.Option(Path("output"), help="Directory for the hardened qcow2."),
    confirm_sealed: bool = typer.Option(False, "--confirm-sealed",
                                        help="Required with --profile sealed."),
    skip: list[str] = typer.Option([], "--skip", help="Switch this control off and leave it out of "
                                   "verification (repeatable), e.g. --skip SUDO-05."),
    ansible_arg: list[str] = typer.Option([], "--ansible-arg", help="Extra ansible-playbook argument for the "
                                          "hardening run (repeatable), e.g. --ansible-arg=--skip-tags=root_07."),
    timeout: float = typer.Option(packer.BUILD_TIMEOUT, help="Stop the build after this many seconds."),
) -> None:
    """Harden, verify and seal BASE under QEMU with Packer, then check the sealed image offline.

    Prints Packer's output, then the hardened image's path as the last line. Exit 1 when the build
    fails (a failing control is named), 2 on bad input.

    Example: ami-harden build local --base "$(ami-harden lab image | tail -1)" --output output
    """
    try:
        result = packer.build_local(base, output, profile=profile.value, admin_user=admin_user,
                                    ansible_args=ansible_arg, sealed_confirmed=confirm_sealed, skip=skip,
                                    timeout=timeout, log=lambda line: typer.echo(line, err=True))
    except packer.BuildFailed as failed:
        typer.echo(f"ami-harden: build failed: {failed.reason}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"built in {result.seconds:.0f} s; sealed image checked offline", err=True)
    typer.echo(str(result.image))


def register(app: typer.Typer) -> None:
    """Add `ami-harden build` to the CLI."""
    app.add_typer(build, name="build")
