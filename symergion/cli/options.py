"""Options shared by every command, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from symergion.config.environment import ENV_CONFIG, ENV_MODELS

RepoOpt = Annotated[
    Path,
    typer.Option("--repo", "-C", help="Repository to work on.", show_default="current directory"),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar=ENV_CONFIG,
        help="Config JSON file (the original SymErgion format).",
        show_default="built-in default: the embedded Gemma 3 270M coder",
    ),
]
ModelsOpt = Annotated[
    Path | None,
    typer.Option(
        "--models",
        envvar=ENV_MODELS,
        help="Directory relative model paths resolve against.",
        show_default="the config file's directory",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="After the pass, show where its time went.")
]
