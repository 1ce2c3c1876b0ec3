"""`ami-harden build`: the Packer template's QEMU source run on a local disk image, the template's
offline validation, and the roles as an Ansible collection."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from hardening import ami_template, collection, packer
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


@build.command("validate")
def validate_command(
    var: list[str] = typer.Option([], "--var", help="A template variable, NAME=VALUE (repeatable), as packer -var."),
    var_file: list[Path] = typer.Option([], "--var-file", help="A variable file (repeatable), as packer -var-file."),
) -> None:
    """Validate the amazon-ebs and amazon-chroot sources of packer/ offline: no AWS credentials, no network.

    Runs `packer validate` with the installed Packer. Packer 1.6 (Debian 12's) lacks three arguments
    of the amazon plugin (imds_support, ami_org_arns, metadata_options; amazon-chroot takes the first
    two): it validates everything else, evaluates those as a local, and their values are checked
    against the plugin's documentation.
    Exit 0 when valid, 1 when not (Packer's output and each problem are printed), 2 on bad input.

    Example: ami-harden build validate --var-file packer/example.pkrvars.hcl --var base_os=al2023
    """
    with tempfile.TemporaryDirectory(prefix="ami-harden-validate-") as workdir:
        validation = ami_template.validate(Path(workdir), var, var_file)
    if validation.problems:
        if validation.output:
            typer.echo(validation.output, err=True)
        for problem in validation.problems:
            typer.echo(f"ami-harden: {problem}", err=True)
        raise typer.Exit(1)
    for source in ami_template.SOURCE_OF.values():
        typer.echo(f"{source}: valid ({validation.method})")


@build.command("collection")
def collection_command(
    output: Path = typer.Option(Path("dist"), help="Directory for the collection's tarball."),
) -> None:
    """Build the roles as the Ansible collection ami_hardening.lockdown (`ansible-galaxy collection
    build`), for playbooks that use them without this package; prints the tarball's path.

    Example: ami-harden build collection --output dist && ansible-galaxy collection install dist/*.tar.gz
    """
    typer.echo(str(collection.build(output)))


def register(app: typer.Typer) -> None:
    """Add `ami-harden build` to the CLI."""
    app.add_typer(build, name="build")
