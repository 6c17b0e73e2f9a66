"""The one place command groups are wired together.

Command modules import heavy dependencies (GitPython, llama_cpp, diskcache) inside their
functions, so that ``symergion --help`` stays fast.
"""

from __future__ import annotations

import typer

from symergion.cli import doctor, learn, models, tasks

app = typer.Typer(
    name="symergion",
    help="Small local language models as junior team members, driven through plain git.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich formatting costs ~0.1 s of imports on every `--help`.
    rich_markup_mode=None,
)

app.add_typer(tasks.ergon_app, name="ergon")
tasks.register(app)
app.add_typer(models.app, name="models")
doctor.register(app)
learn.register(app)
