"""Rendering: data to stdout, messages and progress to stderr, NO_COLOR honoured."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from symergion.config.environment import color_enabled


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def info(message: str) -> None:
    """Print a message on stderr."""
    typer.echo(message, err=True)


def error(message: str) -> None:
    """Print an error on stderr, in red where colour is allowed."""
    if not color_enabled():
        typer.echo(f"error: {message}", err=True, color=False)
        return
    # color=None lets click strip the colour when stderr is not a terminal.
    typer.echo(f"{typer.style('error:', fg='red', bold=True)} {message}", err=True, color=None)
