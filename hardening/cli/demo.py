"""`ami-harden demo`: the whole story on one machine, without AWS."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hardening.cli.lab import Variant
from hardening.demo import consoles_dir, run_demo
from hardening.lab.image import cache_dir
from hardening.progress import Progress
from hardening.report import render


def demo_command(
    workdir: Path = typer.Option(None, help="Where the hardened image, logs and reports go "
                                 "(default: ~/.cache/ami-harden/demo)."),
    variant: Variant = typer.Option(Variant.debian, help="The lab image: debian (as Debian's cloud images) or "
                                    "traps (admin ec2-user, leftovers that win by drop-in order, a waiting boot "
                                    "menu)."),
) -> None:
    """Attack the vulnerable lab image, harden a copy with `apply` over SSH, attack it again.

    Ends with a before/after table per vector and the path of an HTML report. Needs root (the lab
    image is built with loop devices) and takes 7 to 20 minutes under QEMU without KVM, by how fast the
    machine emulates.

    Example: sudo ami-harden demo --workdir /tmp/ami-demo --variant traps
    """
    workdir = workdir or cache_dir() / "demo"
    progress = Progress(lambda line: typer.echo(line, err=True))
    result = run_demo(workdir, progress, variant=variant.value)
    report = workdir / "report.html"
    report.write_text(render(result.after.document(before=result.before), "html"))
    for name, attacked in (("before", result.before), ("after", result.after)):
        (workdir / f"attack-{name}.json").write_text(json.dumps(attacked.as_dict(), indent=2) + "\n")
    typer.echo("")
    typer.echo(result.table())
    typer.echo("")
    typer.echo(f"HTML report:     {report}")
    typer.echo(f"attack reports:  {workdir / 'attack-before.json'}, {workdir / 'attack-after.json'}")
    typer.echo(f"serial consoles: {consoles_dir(workdir, 'before')}/, {consoles_dir(workdir, 'after')}/")
    typer.echo(f"apply log:       {result.apply_log}")
    typer.echo(f"hardened image:  {result.hardened_image}")
    raise typer.Exit(result.after.exit_code)


def register(app: typer.Typer) -> None:
    """Add the `demo` command."""
    app.command("demo")(demo_command)
