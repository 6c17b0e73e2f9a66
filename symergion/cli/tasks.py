"""Task commands: `ergon start|list`, `feedback`, `revoke`, `sync`, `watch`, `status`, `demo`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from symergion.cli.options import ConfigOpt, JsonOpt, ModelsOpt, QuietOpt, RepoOpt, VerboseOpt
from symergion.cli.output import emit_json, info

ergon_app = typer.Typer(help="Start and list tasks (ergons).", no_args_is_help=True,
                        rich_markup_mode=None)

EXIT_PROBLEMS = 4

NoSyncOpt = Annotated[bool, typer.Option("--no-sync", help="Only write git objects; no sync.")]
BranchOpt = Annotated[
    str | None,
    typer.Option("--branch", "-b", help="Model branch.", show_default="the checked-out branch"),
]
RemoteOpt = Annotated[
    str | None,
    typer.Option("--remote", help="Fetch branches and notes from this remote first, push after."),
]


def _sync(
    repo_path: Path,
    config_path: Path | None,
    models: Path | None,
    *,
    as_json: bool,
    quiet: bool,
    remote: str | None = None,
    verbose: bool = False,
    max_seconds: float | None = None,
) -> int:
    """Run one locked reconcile pass and render its report; return the exit code."""
    from symergion.app.service import sync_once

    printer = _printer(quiet or as_json)
    try:
        report = sync_once(repo_path, config_path, models, printer=printer, remote=remote,
                           max_seconds=max_seconds)
    finally:
        printer.close()
    data = report.as_dict()
    if as_json:
        emit_json(data)
    else:
        _print_report(data)
    if verbose and not quiet:
        for line in report.spend.lines():
            info(line)
    return EXIT_PROBLEMS if report.failed else 0


def _printer(quiet: bool) -> Any:
    from symergion.cli.progress import ProgressPrinter

    return ProgressPrinter(quiet=quiet)


def _print_report(data: dict[str, Any]) -> None:
    changed = 0
    for r in data["results"]:
        if r["status"] == "up-to-date":
            continue
        changed += 1
        line = f"{r['status']:>10}  {r['branch']}"
        if r.get("commit"):
            line += f"  {r['commit'][:10]}"
        if r.get("cache") == "hit":
            line += "  (from the response cache)"
        elif r.get("cache"):
            line += f"  ({r['tokens']} tokens in {r['seconds']:.1f}s)"
        if r.get("reason"):
            line += f"  {r['reason']}"
        if r.get("verify"):
            line += f"\n            verified: {r['verify']}"
        info(line)
    for p in data["problems"]:
        info(f"   problem  {p['where']}: {p['message']}")
    for notice in data.get("notices", []):
        info(f"    notice  {notice}")
    if not changed and not data["problems"]:
        info("everything is up to date")


@ergon_app.command("start")
def ergon_start(
    branch: Annotated[str, typer.Argument(help="Task branch, e.g. TestCase_capture_output.")],
    source: Annotated[str | None, typer.Option("--source", "-s", help="Source file.")] = None,
    destination: Annotated[str, typer.Option("--destination", "-d", help="File to write.")] = "",
    from_ref: Annotated[str, typer.Option("--from", help="Commit to branch from.")] = "HEAD",
    message: Annotated[str, typer.Option("--message", "-m", help="Extra task text.")] = "",
    no_sync: NoSyncOpt = False,
    repo: RepoOpt = Path("."),
    config: ConfigOpt = None,
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Start a task: create BRANCH and its note, then sync."""
    from symergion.config.load import load_config
    from symergion.core.ops import start_task
    from symergion.errors import TaskInputError
    from symergion.gitrepo import GitRepo

    if not destination:
        raise TaskInputError("no destination given", hint="pass --destination path/to/file")
    cfg = load_config(config, models)
    git = GitRepo(repo)
    commit = start_task(git, cfg, branch, source=source, destination=destination,
                        from_ref=from_ref, extra=message)
    if not as_json or no_sync:
        info(f"started {branch} at {commit[:10]}")
    if no_sync:
        if as_json:
            emit_json({"task": branch, "commit": commit})
        return
    raise typer.Exit(_sync(repo, config, models, as_json=as_json, quiet=quiet))


@ergon_app.command("list")
def ergon_list(
    repo: RepoOpt = Path("."),
    config: ConfigOpt = None,
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List active tasks and their model branches."""
    from symergion.app.service import task_views

    result = task_views(repo, config, models)
    views, problems = result.tasks, result.problems
    if as_json:
        emit_json({"tasks": [asdict(v) for v in views], "problems": problems})
        return
    if not views:
        info("no active tasks")
    for v in views:
        typer.echo(f"{v.task}  source={v.source} destination={v.destination} "
                   f"feedback={len(v.feedback)}")
        ranked = {c["branch"]: c for c in v.ranking}
        for branch, head in v.branches.items():
            state = "not generated yet" if head is None else head
            line = f"  {branch}  {state[:10] if head not in (None, 'deleted') else state}"
            if branch in ranked:
                line += f"  #{ranked[branch]['rank']} {ranked[branch]['verify']}"
            typer.echo(line)
    for p in problems:
        info(f"problem: {p}")


def register(app: typer.Typer) -> None:
    """Add the top-level task commands to ``app``."""
    app.command("feedback")(feedback)
    app.command("revoke")(revoke)
    app.command("sync")(sync)
    app.command("watch")(watch)
    app.command("status")(status)
    app.command("demo")(demo)


def feedback(
    text: Annotated[str, typer.Argument(help="What the models should change.")],
    branch: BranchOpt = None,
    no_sync: NoSyncOpt = False,
    repo: RepoOpt = Path("."),
    config: ConfigOpt = None,
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Give feedback on the best model branch; every model regenerates."""
    from symergion.config.load import load_config
    from symergion.core.ops import add_feedback
    from symergion.gitrepo import GitRepo

    cfg = load_config(config, models)
    target_branch, commit = add_feedback(GitRepo(repo), cfg, text, branch)
    if not as_json or no_sync:
        info(f"noted on {target_branch} ({commit[:10]}): {text.strip()}")
    if no_sync:
        if as_json:
            emit_json({"branch": target_branch, "commit": commit, "feedback": text.strip()})
        return
    raise typer.Exit(_sync(repo, config, models, as_json=as_json, quiet=quiet))


def revoke(
    branch: BranchOpt = None,
    no_sync: NoSyncOpt = False,
    repo: RepoOpt = Path("."),
    config: ConfigOpt = None,
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Revoke the latest feedback of a task; earlier responses come back from the cache."""
    from symergion.app.service import revoke_latest

    commit, text = revoke_latest(repo, config, models, branch)
    if not as_json or no_sync:
        info(f"revoked the note on {commit[:10]}: {text}")
    if no_sync:
        if as_json:
            emit_json({"commit": commit, "revoked": text})
        return
    raise typer.Exit(_sync(repo, config, models, as_json=as_json, quiet=quiet))


def sync(
    repo: RepoOpt = Path("."),
    config: ConfigOpt = None,
    models: ModelsOpt = None,
    remote: RemoteOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    max_seconds: Annotated[float | None, typer.Option(
        "--max-seconds", min=0.001,
        help="Time budget of each branch: when it runs out, the best file so far is checked "
             "and published.", show_default="the config's max_seconds, else no limit")] = None,
) -> None:
    """Reconcile once: generate what is missing; exit 0 when everything is up to date."""
    raise typer.Exit(_sync(repo, config, models, as_json=as_json, quiet=quiet, remote=remote,
                           verbose=verbose, max_seconds=max_seconds))


def watch(
    interval: Annotated[float, typer.Option("--interval", "-i", min=0.1,
                                            help="Seconds between polls.")] = 5.0,
    repo: RepoOpt = Path("."),
    config: ConfigOpt = None,
    models: ModelsOpt = None,
    remote: RemoteOpt = None,
    max_passes: Annotated[int, typer.Option("--max-passes", hidden=True)] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Sync in a loop, picking up notes and branches made with plain git; Ctrl-C stops."""
    from symergion.app.watch import watch_loop

    raise typer.Exit(watch_loop(repo, config, models, interval=interval, remote=remote,
                                printer=_printer(quiet), max_passes=max_passes))


def status(
    repo: RepoOpt = Path("."),
    config: ConfigOpt = None,
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show each task's model branches and whether they are up to date (loads no model)."""
    from symergion.app.service import task_views

    result = task_views(repo, config, models)
    rows, problems = result.rows, result.problems
    if as_json:
        emit_json({"branches": rows, "problems": problems})
        return
    if not rows:
        info("no active tasks")
    for row in rows:
        line = f"{row['state']:>12}  {row['branch']}  feedback={row['feedback']}"
        if row.get("verify"):
            line += f"  #{row['rank']} {row['verify']}"
        typer.echo(line)
    for p in problems:
        info(f"problem: {p}")


def demo(
    directory: Annotated[Path | None, typer.Option("--dir", help="Where to build the scratch "
                                                   "repository.")] = None,
    config: ConfigOpt = None,
    models: ModelsOpt = None,
) -> None:
    """Play the whole workflow on a scratch repository, showing the git commands."""
    from symergion.app.demo import run_demo

    run_demo(directory, config, models, _printer(False))
