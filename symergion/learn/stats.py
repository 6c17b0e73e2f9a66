"""A per-repository leaderboard of the models, per template, from the history alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from symergion.config.schema import Config
from symergion.gitrepo import GitRepo
from symergion.learn.history import History, Progress, read_history
from symergion.trailers import SECONDS

NO_TEMPLATE = "(none)"


@dataclass
class ModelStats:
    """One model's record on one template's tasks."""

    model: str
    template: str
    tasks: int = 0
    rounds: int = 0
    answers: int = 0
    chosen: int = 0
    merged: int = 0
    verified: int = 0
    passed: int = 0
    hand_edited_lines: int = 0
    generated: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def pass_rate(self) -> float | None:
        """Return the share of verified answers that passed, or None without verification."""
        return self.passed / self.verified if self.verified else None

    @property
    def tokens_per_second(self) -> float | None:
        """Return generated tokens per second over the answers the model generated."""
        return self.tokens / self.seconds if self.seconds > 0 else None

    @property
    def tokens_per_file(self) -> float | None:
        """Return the mean tokens the model generated for one finished file."""
        return self.tokens / self.generated if self.generated else None

    @property
    def hand_edit_per_merge(self) -> float | None:
        """Return the mean lines a human changed after the model's last answer, per merge."""
        return self.hand_edited_lines / self.merged if self.merged else None

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-able data, derived rates included."""
        return {**asdict(self), "pass_rate": self.pass_rate,
                "tokens_per_second": self.tokens_per_second,
                "tokens_per_file": self.tokens_per_file,
                "hand_edit_per_merge": self.hand_edit_per_merge}


def leaderboard(
    repo: GitRepo,
    config: Config,
    *,
    since: str | None = None,
    progress: Progress | None = None,
) -> list[ModelStats]:
    """Return one row per model and template, most merged and most chosen first.

    Args:
        repo: the repository.
        config: the config whose templates name the tasks.
        since: only commits after this revision count.
        progress: called with (what, done, total) while the history is read.
    """
    return tally(read_history(repo, config, since=since, progress=progress))


def tally(history: History) -> list[ModelStats]:
    """Count a history's answers, choices, merges, verification and generation figures."""
    table: dict[tuple[str, str], ModelStats] = {}
    seen_tasks: set[tuple[str, str, str]] = set()
    seen_rounds: set[tuple[str, str, str, int]] = set()

    def row(model: str, template: str) -> ModelStats:
        return table.setdefault((model, template), ModelStats(model, template))

    for task in history.tasks.values():
        template = task.template.name if task.template is not None else NO_TEMPLATE
        for answer in task.candidates:
            if answer.by_hand or not history.is_new(answer.commit):
                continue
            stats = row(answer.model, template)
            stats.answers += 1
            if (answer.model, template, task.name) not in seen_tasks:
                seen_tasks.add((answer.model, template, task.name))
                stats.tasks += 1
            if (answer.model, template, task.name, answer.round) not in seen_rounds:
                seen_rounds.add((answer.model, template, task.name, answer.round))
                stats.rounds += 1
            if answer.verified is not None:
                stats.verified += 1
                stats.passed += answer.verified
            # A cache hit repeats the figures of the answer it reuses: count each once.
            # Figures that do not parse (kept in ``other``) leave the answer's figures out.
            figures = answer.trailers
            if figures.cache == "miss" and figures.tokens is not None and SECONDS not in figures.other:
                stats.generated += 1
                stats.tokens += figures.tokens
                stats.seconds += figures.seconds if figures.seconds is not None else 0.0
        for choice in task.choices:
            if history.is_new(choice.candidate.commit):
                row(choice.candidate.model, template).chosen += 1
        for merge in task.merges:
            if history.is_new(merge.candidate.commit) and history.is_new(merge.merged):
                stats = row(merge.candidate.model, template)
                stats.merged += 1
                stats.hand_edited_lines += merge.hand_edited_lines
    return sorted(table.values(), key=lambda s: (-s.merged, -s.chosen, s.template, s.model))
