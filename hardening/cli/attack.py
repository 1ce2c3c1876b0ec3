"""`ami-harden attack`: boot an image with hostile inputs and report each vector OPEN or CLOSED."""

import typer


def register(app: typer.Typer) -> None:
    """Add the `attack` command."""
