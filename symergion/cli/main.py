"""Entry point: build the app, map errors to exit codes.

Exit codes: 0 done; 1 a user error (the message says what to fix); 2 usage error;
3 another symergion holds the repository lock; 4 sync finished with failed tasks;
130 interrupted.
"""

from __future__ import annotations

import sys
import traceback

from symergion.config import debug_enabled
from symergion.errors import SymergionError


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    import click

    from symergion.cli.app import app
    from symergion.cli.output import error

    try:
        app(args=argv, prog_name="symergion", standalone_mode=False)
    except SymergionError as exc:
        error(str(exc))
        if debug_enabled():
            traceback.print_exc()
        return exc.exit_code
    except click.exceptions.Abort:
        error("interrupted")
        return 130
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Exception as exc:
        error(f"unexpected {type(exc).__name__}: {exc}")
        if debug_enabled():
            traceback.print_exc()
        else:
            print("  set SYMERGION_DEBUG=1 for the traceback", file=sys.stderr)
        return 1
    return 0
