"""Entry point: build the app, map errors to exit codes.

Exit codes: 0 done; 1 a user error (the message says what to fix); 2 usage error;
3 another symergion holds the repository lock; 4 sync finished with failed tasks;
130 interrupted.
"""

from __future__ import annotations

import sys
import traceback

from symergion.config.environment import debug_enabled
from symergion.errors import SymergionError


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    import click
    import typer

    from symergion.cli.app import app
    from symergion.cli.output import error

    # Typer 0.16+ ships its own copy of click: its exceptions are not click's, so both are caught
    # (with only click's, a usage error exited 1 as "unexpected NoSuchOption" instead of 2).
    aborts = (click.exceptions.Abort, typer.Abort)
    exits = (click.exceptions.Exit, typer.Exit)
    usage = (click.ClickException, getattr(typer.exceptions, "TyperException", click.ClickException))
    try:
        # Outside standalone mode Typer returns the code of a `typer.Exit` (and 130 for Ctrl-C)
        # instead of raising it; dropping it turned "some task failed" (4) into success.
        code = app(args=argv, prog_name="symergion", standalone_mode=False)
    except SymergionError as exc:
        error(str(exc))
        if debug_enabled():
            traceback.print_exc()
        return exc.exit_code
    except aborts:
        error("interrupted")
        return 130
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except exits as exc:
        return int(exc.exit_code)
    except usage as exc:
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            error(str(exc))
        return int(exc.exit_code)
    except Exception as exc:
        error(f"unexpected {type(exc).__name__}: {exc}")
        if debug_enabled():
            traceback.print_exc()
        else:
            print("  set SYMERGION_DEBUG=1 for the traceback", file=sys.stderr)
        return 1
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
