"""`ami-harden`: a thin command line over the hardening library."""

from __future__ import annotations

import importlib
import os
import signal
import sys

import typer

from hardening.errors import HardeningError

app = typer.Typer(
    name="ami-harden",
    help="Lock down an AMI against root login, sudo, user-data and label-based boot.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

# Each module below adds its commands to `app` through a `register(app)` function.
COMMAND_MODULES = ("lab", "attack", "apply", "controls", "check", "demo", "build")

for _name in COMMAND_MODULES:
    importlib.import_module(f"hardening.cli.{_name}").register(app)


def tools_beside_python_first() -> None:
    """Put the directory of this Python's scripts (ansible-playbook in a virtual environment) first on PATH,
    for the tools ami-harden runs and those Packer's ansible provisioner runs."""
    scripts = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if scripts not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([scripts, path]) if path else scripts


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    """Run the CLI; a HardeningError becomes one line on stderr and exit code 2. SIGTERM is taken as
    Ctrl-C, so VMs are stopped and images unmounted and detached either way."""
    tools_beside_python_first()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = app(standalone_mode=False)
    except HardeningError as error:
        typer.echo(f"ami-harden: error: {error}", err=True)
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        typer.echo("ami-harden: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("ami-harden: interrupted", err=True)
        sys.exit(130)
    except typer.TyperException as error:  # usage errors: a bad option, a missing argument
        help_text = getattr(getattr(error, "ctx", None), "get_help", None)
        if type(error).__name__ == "NoArgsIsHelpError" and help_text:
            typer.echo(help_text())
        else:
            typer.echo(f"ami-harden: error: {error.format_message()}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
