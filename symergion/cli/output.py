"""Rendering: data to stdout, messages and progress to stderr, NO_COLOR honoured."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from symergion.config import color_enabled


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def info(message: str) -> None:
    """Print a message on stderr."""
    typer.echo(message, err=True)


def error(message: str) -> None:
    """Print an error on stderr, in red where colour is allowed."""
    prefix = typer.style("error:", fg="red", bold=True) if color_enabled() else "error:"
    typer.echo(f"{prefix} {message}", err=True, color=color_enabled())
