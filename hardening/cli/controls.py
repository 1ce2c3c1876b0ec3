"""`ami-harden controls`: list the control catalog."""

from __future__ import annotations

import json
from enum import Enum

import typer

from hardening.catalog import controls


class Format(str, Enum):
    table = "table"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add `controls` to the CLI."""

    @app.command("controls")
    def controls_command(
        fmt: Format = typer.Option(Format.table, "--format", help="table or json"),
    ) -> None:
        """List every control: id, vector, profiles, Ansible tag and title.

        Example: ami-harden controls --format json
        """
        if fmt is Format.json:
            typer.echo(json.dumps([item.as_dict() for item in controls()], indent=2))
            return
        rows = [("ID", "VECTOR", "PROFILES", "TAG", "TITLE")]
        rows += [(c.id, c.vector, ",".join(c.profiles), c.tag, c.title) for c in controls()]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            typer.echo("  ".join([cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[4]]))
