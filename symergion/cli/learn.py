"""Learning commands: `harvest` (training data from the history) and `stats` (a leaderboard)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from symergion.cli.options import ConfigOpt, JsonOpt, ModelsOpt, QuietOpt, RepoOpt
from symergion.cli.output import emit_json, info

if TYPE_CHECKING:
    from symergion.learn.stats import ModelStats

SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="Only commits after this revision (not reachable from it, "
                                 "and not older)."),
]


def register(app: typer.Typer) -> None:
    """Add the learning commands to ``app``."""
    app.command("harvest")(harvest)
    app.command("stats")(stats)


def _progress(quiet: bool) -> Any:
    """Return a progress callback printing on stderr: a live line on a terminal."""
    if quiet:
        return None
    live = sys.stderr.isatty()

    def report(what: str, done: int, total: int) -> None:
        if live:
            sys.stderr.write(f"\r\033[K  {done}/{total}  {what}")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif done == total or done % 50 == 1:
            # Logs get the first and last item of a stage and every 50th, not one per branch.
            info(f"  {done}/{total}  {what}")

    return report


def harvest(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the JSONL files and "
                                                          "their card.")],
    since: SinceOpt = None,
    task: Annotated[str | None, typer.Option("--task", help="Only this task.")] = None,
    repo: RepoOpt = Path("."),
    config: ConfigOpt = None,
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write TRL-ready preference, SFT and KTO datasets from the human's choices."""
    from symergion.config.load import load_config
    from symergion.gitrepo import GitRepo
    from symergion.learn.harvest import DATASETS
    from symergion.learn.harvest import harvest as run_harvest

    cfg = load_config(config, models)
    report = run_harvest(GitRepo(repo), cfg, out, since=since, task=task,
                         progress=_progress(quiet))
    if as_json:
        emit_json(report.as_dict())
        return
    for name in DATASETS:
        typer.echo(f"{report.rows[name]:>6}  {out / name}"
                   + (f"  ({report.duplicates[name]} duplicates dropped)"
                      if report.duplicates[name] else ""))
    for reason, count in report.left_out.items():
        info(f"left out {count}: {reason}")
    if report.secrets:
        info(f"redacted secrets in {report.rows_redacted} rows: "
             + ", ".join(f"{k} ({n})" for k, n in report.secrets.items()))
    info(f"card: {out / 'README.md'}")


def stats(
    since: SinceOpt = None,
    repo: RepoOpt = Path("."),
    config: ConfigOpt = None,
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rank the models per template: chosen, merged, verified, hand edits, speed."""
    from symergion.config.load import load_config
    from symergion.gitrepo import GitRepo
    from symergion.learn.stats import leaderboard

    cfg = load_config(config, models)
    rows = leaderboard(GitRepo(repo), cfg, since=since, progress=_progress(quiet or as_json))
    if as_json:
        emit_json({"models": [r.as_dict() for r in rows]})
        return
    if not rows:
        info("no model answers in the history yet")
        return
    typer.echo(render_table(rows))


COLUMNS = ("model", "template", "tasks", "rounds", "chosen", "merged", "verify pass",
           "hand edit/merge", "tok/s", "tok/file")


def render_table(rows: list[ModelStats]) -> str:
    """Return the leaderboard as a plain text table."""

    def figure(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    cells = [list(COLUMNS)]
    for r in rows:
        rate = r.pass_rate
        cells.append([
            r.model, r.template, str(r.tasks), str(r.rounds), str(r.chosen), str(r.merged),
            "-" if rate is None else f"{rate:.0%} of {r.verified}",
            figure(r.hand_edit_per_merge), figure(r.tokens_per_second),
            figure(r.tokens_per_file, 0),
        ])
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for row in cells:
        parts = [cell.ljust(w) if i < 2 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
