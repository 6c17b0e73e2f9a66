"""`symergion models`: list, inspect, pull GGUF models."""

from __future__ import annotations

import typer

app = typer.Typer(help="List, inspect and pull GGUF models.", no_args_is_help=True)
