"""Turn the human's choices recorded in the history into TRL-ready JSONL datasets.

- ``preference.jsonl`` (``prompt``, ``chosen``, ``rejected``): per round, the answer the human
  put a feedback note on, or merged, against the other models' answers to the same prompt.
- ``sft.jsonl`` (``prompt``, ``completion``): the file as the human merged it, hand edits
  included, for the prompt of the merged model's last answer.
- ``kto.jsonl`` (``prompt``, ``completion``, ``label``): answers to feedback that was revoked
  (false) and answers a ``Symergion-Verify`` trailer passed (true) or failed (false).

A prompt is the exact text the model saw, rebuilt and checked against the commit's sha256; a
completion is what follows it (the file without the template's code starter, which ends the
prompt). Secrets found by detect-secrets are redacted in every text that is written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symergion.config.schema import Config
from symergion.gitrepo import GitRepo
from symergion.learn.history import Candidate, History, Progress, TaskHistory, read_history
from symergion.redact import Scrubber, scrubber

PREFERENCE = "preference.jsonl"
SFT = "sft.jsonl"
KTO = "kto.jsonl"
CARD = "README.md"
DATASETS = (PREFERENCE, SFT, KTO)


@dataclass
class HarvestReport:
    """What a harvest wrote and what it left out, and why."""

    out: str
    tasks: int
    rows: dict[str, int]
    duplicates: dict[str, int]
    left_out: dict[str, int]
    secrets: dict[str, int]
    rows_redacted: int

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data."""
        return {
            "out": self.out, "tasks": self.tasks, "rows": self.rows,
            "duplicates": self.duplicates, "left_out": self.left_out,
            "secrets": self.secrets, "rows_redacted": self.rows_redacted,
        }


@dataclass
class _Rows:
    """Rows of one dataset, deduplicated on what is written."""

    keys: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    index: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0

    def add(self, row: dict[str, Any]) -> None:
        key = json.dumps([row[k] for k in self.keys], ensure_ascii=False)
        kept = self.index.get(key)
        if kept is not None:
            self.duplicates += 1
            kept["signals"] = sorted(set(kept["signals"]) | set(row["signals"]))
            return
        self.index[key] = row
        self.rows.append(row)


class _Builder:
    """Build the three datasets from a history."""

    def __init__(self, history: History, scrub: Scrubber) -> None:
        self.history = history
        self.scrub = scrub
        self.preference = _Rows(("prompt", "chosen", "rejected"))
        self.sft = _Rows(("prompt", "completion"))
        self.kto = _Rows(("prompt", "completion", "label"))
        self.left_out: Counter[str] = Counter()
        self.rows_redacted = 0

    # -- texts -------------------------------------------------------------------------------

    def _prompt(self, candidate: Candidate) -> tuple[str, str, str] | None:
        """Return (prompt, destination, code starter) of a candidate; count a failure."""
        rebuilt = self.history.rebuild(candidate)
        if isinstance(rebuilt, str):
            self.left_out[f"prompt not rebuilt exactly: {rebuilt}"] += 1
            return None
        return rebuilt.prompt.text, rebuilt.destination, rebuilt.prompt.code_starter

    def _completion(self, commit: str, destination: str, starter: str) -> str | None:
        """Return the file at a commit without the code starter that ends the prompt."""
        text = self.history.file_text(commit, destination)
        if text is None:
            self.left_out["the file is missing or not UTF-8 text at the commit"] += 1
            return None
        if not text.startswith(starter):
            self.left_out["the file does not start with the template's code starter"] += 1
            return None
        return text[len(starter):]

    def _scrubbed(self, row: dict[str, Any], *fields: str) -> dict[str, Any]:
        redacted = 0
        for name in fields:
            row[name], count = self.scrub.scrub(row[name])
            redacted += count
        row["redacted"] = redacted
        self.rows_redacted += redacted > 0
        return row

    # -- datasets ------------------------------------------------------------------------------

    def task(self, task: TaskHistory) -> None:
        """Add every row one task yields."""
        self._preferences(task)
        self._sft(task)
        self._kto(task)

    def _preferences(self, task: TaskHistory) -> None:
        chosen: dict[int, dict[str, tuple[Candidate, set[str]]]] = {}
        for choice in task.choices:
            entry = chosen.setdefault(choice.candidate.round, {}).setdefault(
                choice.candidate.commit, (choice.candidate, set()))
            entry[1].add("feedback")
        for merge in task.merges:
            entry = chosen.setdefault(merge.candidate.round, {}).setdefault(
                merge.candidate.commit, (merge.candidate, set()))
            entry[1].add("merged")
        candidates = [c for c in task.candidates if not c.by_hand]
        for round_number, picks in sorted(chosen.items()):
            chosen_models = {c.model for c, _ in picks.values()}
            peers = [c for c in candidates
                     if c.round == round_number and c.model not in chosen_models]
            for winner, signals in picks.values():
                if winner.by_hand:
                    continue  # the human's own file: no model's answer won
                for loser in peers:
                    if not (self.history.is_new(winner.commit) and
                            self.history.is_new(loser.commit)):
                        continue
                    self._preference(task, winner, loser, signals)

    def _preference(self, task: TaskHistory, winner: Candidate, loser: Candidate,
                    signals: set[str]) -> None:
        prompt = self._prompt(winner)
        if prompt is None:
            return
        text, destination, starter = prompt
        good = self._completion(winner.commit, destination, starter)
        bad = self._completion(loser.commit, destination, starter)
        if good is None or bad is None:
            return
        self.preference.add(self._scrubbed({
            "prompt": text, "chosen": good, "rejected": bad,
            "task": task.name, "round": winner.round, "prompt_sha256": winner.prompt_sha256,
            "signals": sorted(signals),
            "chosen_model": winner.model, "chosen_commit": winner.commit,
            "rejected_model": loser.model, "rejected_commit": loser.commit,
        }, "prompt", "chosen", "rejected"))

    def _sft(self, task: TaskHistory) -> None:
        for merge in task.merges:
            answer = merge.candidate
            if not (self.history.is_new(answer.commit) and self.history.is_new(merge.merged)):
                continue
            prompt = self._prompt(answer)
            if prompt is None:
                continue
            text, destination, starter = prompt
            completion = self._completion(merge.merged, destination, starter)
            if completion is None:
                continue
            self.sft.add(self._scrubbed({
                "prompt": text, "completion": completion,
                "task": task.name, "round": answer.round, "prompt_sha256": answer.prompt_sha256,
                "signals": ["merged"], "model": answer.model, "commit": answer.commit,
                "merged_commit": merge.merged, "merged_into": merge.into,
                "hand_edited_lines": merge.hand_edited_lines,
            }, "prompt", "completion"))

    def _kto(self, task: TaskHistory) -> None:
        revoked = set(task.revoked)
        for answer in task.candidates:
            if answer.by_hand or not self.history.is_new(answer.commit):
                continue
            if answer.notes and answer.notes[-1] in revoked:
                self._unpaired(task, answer, False, "revoked-feedback")
            verified = answer.verified
            if verified is not None:
                self._unpaired(task, answer, verified,
                               "verify-pass" if verified else "verify-fail")

    def _unpaired(self, task: TaskHistory, answer: Candidate, label: bool, signal: str) -> None:
        prompt = self._prompt(answer)
        if prompt is None:
            return
        text, destination, starter = prompt
        completion = self._completion(answer.commit, destination, starter)
        if completion is None:
            return
        self.kto.add(self._scrubbed({
            "prompt": text, "completion": completion, "label": label,
            "task": task.name, "round": answer.round, "prompt_sha256": answer.prompt_sha256,
            "signals": [signal], "model": answer.model, "commit": answer.commit,
        }, "prompt", "completion"))


def harvest(
    repo: GitRepo,
    config: Config,
    out: Path,
    *,
    since: str | None = None,
    task: str | None = None,
    progress: Progress | None = None,
) -> HarvestReport:
    """Write preference, SFT and KTO datasets and their card to ``out``.

    Args:
        repo: the repository whose history is harvested.
        config: the config the tasks ran with (templates, ``task_branch_spec``).
        out: the output directory (created if needed); each file is replaced atomically.
        since: only commits after this revision count.
        task: only this task.
        progress: called with (what, done, total) while the history is read and rows built.
    """
    if out.exists() and not out.is_dir():
        from symergion.errors import SymergionError

        raise SymergionError(f"{out} is a file", hint="pass a directory with --out")
    history = read_history(repo, config, task=task, since=since, progress=progress)
    with scrubber() as scrub:
        builder = _Builder(history, scrub)
        tasks = list(history.tasks.values())
        for done, item in enumerate(tasks, start=1):
            if progress is not None:
                progress(f"rows of {item.name}", done, len(tasks))
            builder.task(item)
        found = dict(scrub.found)
    report = HarvestReport(
        out=str(out), tasks=len(tasks),
        rows={PREFERENCE: len(builder.preference.rows), SFT: len(builder.sft.rows),
              KTO: len(builder.kto.rows)},
        duplicates={PREFERENCE: builder.preference.duplicates, SFT: builder.sft.duplicates,
                    KTO: builder.kto.duplicates},
        left_out=dict(sorted(builder.left_out.items())),
        secrets=dict(sorted(found.items())),
        rows_redacted=builder.rows_redacted,
    )
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in ((PREFERENCE, builder.preference), (SFT, builder.sft), (KTO, builder.kto)):
        _write_atomic(out / name, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                          for r in rows.rows))
    _write_atomic(out / CARD, dataset_card(report, since=since, task=task))
    return report


def _write_atomic(path: Path, text: str) -> None:
    """Write a file by renaming a finished temporary file over it: never a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dataset_card(report: HarvestReport, *, since: str | None, task: str | None) -> str:
    """Return the dataset card: counts, what was left out, and how each label was derived."""
    scope = []
    if since:
        scope.append(f"commits after `{since}`")
    if task:
        scope.append(f"task `{task}`")
    lines = [
        "# symergion harvest",
        "",
        "Training data labelled by the repository's own history: which answer the human put "
        "feedback on, which feedback they revoked, what they fixed by hand and which branch "
        "they merged. Written by `symergion harvest`"
        + (f" ({', '.join(scope)})" if scope else "") + ".",
        "",
        "```python",
        "from datasets import load_dataset",
        f'load_dataset("json", data_files="{PREFERENCE}")  # DPOTrainer',
        f'load_dataset("json", data_files="{SFT}")  # SFTTrainer',
        f'load_dataset("json", data_files="{KTO}")  # KTOTrainer',
        "```",
        "",
        "## Counts",
        "",
        "| file | rows | duplicates dropped |",
        "|---|---|---|",
    ]
    for name in DATASETS:
        lines.append(f"| `{name}` | {report.rows[name]} | {report.duplicates[name]} |")
    lines += ["", f"Tasks read: {report.tasks}.", ""]
    if report.left_out:
        lines += ["Rows left out:", "", "| reason | rows |", "|---|---|"]
        lines += [f"| {reason} | {count} |" for reason, count in report.left_out.items()]
    else:
        lines.append("Rows left out: none.")
    lines.append("")
    if report.secrets:
        found = ", ".join(f"{kind}: {n}" for kind, n in report.secrets.items())
        lines.append(f"Secrets redacted ({report.rows_redacted} rows changed): {found}.")
    else:
        lines.append("Secrets redacted: none found.")
    lines += ["", LABELS]
    return "\n".join(lines)


LABELS = """## How each label was derived

- **Round**: the task's distinct prompts, numbered in the order the models first answered
  them. Every model of a round answered the same prompt (same `Symergion-Prompt` sha256); a
  revoke returns to an earlier round's prompt, so its answers belong to that round.
- **prompt**: the exact text the model saw. It is rebuilt with symergion's own prompt
  builder from the task note, the task's files at the commit the model branch took them from,
  the initial rows of the model's first commit message (they hold any reasoner's text) and the
  feedback notes listed in the commit's `Symergion-Notes` trailer, and kept only when its sha256
  equals the commit's `Symergion-Prompt`. A row whose prompt cannot be rebuilt exactly is left
  out and counted above. The prompt ends with the template's code starter.
- **completion / chosen / rejected**: the destination file at the commit, without the code
  starter that ends the prompt, so that prompt + completion is the whole file.
- `preference.jsonl`: in each round, an answer is **chosen** when a feedback note ever sat on
  it (signal `feedback`; a note later revoked still marks the choice) or when its model branch
  was merged and it is the model's last answer below the merged commit (signal `merged`).
  Every answer of that round from a model with no chosen answer is **rejected** against it.
- `sft.jsonl`: for each merged model branch, the destination file at the merged commit (hand
  edits included, `hand_edited_lines` counts the lines changed after the model's last answer)
  as the completion of that last answer's prompt. A model branch counts as merged when a local
  branch other than the task's own branches holds one of its commits (a merge or fast-forward;
  a squash or cherry-pick is not recognised).
- `kto.jsonl`: **false** for the answers to a feedback note that was revoked (every answer
  whose last applied note left the prompt in a later commit: `git notes remove`, `symergion
  revoke`, or an edited note); **true** / **false** for answers whose `Symergion-Verify`
  trailer reports a passing / failing run (no failures, errors, flaky tests or time-out).
- A commit that publishes a hand commit's file again (a revoke, `Symergion-Hand`) is the
  human's text, not a model's answer: it is never chosen, rejected or labelled, nor counted in
  a model's figures.
- Every row names its source: `task`, `round`, `prompt_sha256`, the models and commits, and
  `signals`. Rows equal in their training fields are written once (their signals merged).
- `redacted` counts the secrets detect-secrets found in the row's texts and replaced with
  `[redacted <type>]`; a private key is removed from its BEGIN line to its END line. Such a
  prompt no longer hashes to `prompt_sha256`.
"""
