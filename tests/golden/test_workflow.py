"""The golden workflow: every ref, commit message and tree of one scripted task, byte for byte.

Two tasks go through the whole workflow on fake engines (no model is loaded) and the real
bubblewrap sandbox: one with the built-in template (verify and guided generation, whose wrong
assertions are pinned), one with that template without guided generation (candidates pruned and
repaired by the model). The steps: start, sync, feedback, a hand commit, revoke, a coder with
best-of-n samples, and the end of both tasks. After each step the repository is recorded: the
refs, then every commit that appeared, with its message, its parents and its tree (and for a
notes commit, the notes). The recording is compared with ``tests/golden/workflow.txt``, so a
change that moves any byte of what symergion writes into a repository shows up as a diff here.

A change that is meant to alter those bytes regenerates the file, in a commit of its own that
says why::

    SYMERGION_GOLDEN_UPDATE=1 pytest tests/golden

Determinism: author and committer names, emails and dates are pinned through git's own
environment variables (``GIT_AUTHOR_DATE``, ``GIT_COMMITTER_DATE``, ...), a new date per step;
symergion's commits get their dates from git (``commit-tree``) and so honour them. What still
varies between runs is normalised by ``normalise`` below, and nothing else is touched:

- the value of a ``Symergion-Seconds:`` trailer becomes ``<seconds>`` (wall-clock time), and
  so does the run time that ends a verification summary (``...; imports utils.calc; 0.9s``, in
  ``Symergion-Verify:`` and in the list of samples);
- an archive ref's last component, the UTC time the task ended, becomes ``<stamp>``;
- the test's temporary directory, wherever it appears, becomes ``<tmp>``, and so does any
  other directory directly under the system's temporary directory;
- commit ids become labels (``C1``, ``C2``, ... in the order the commits appear). A commit id
  hashes its message, whose ``Symergion-Seconds:`` varies, and every id after it in the
  history: ids cannot be stable, while the labels, the messages and the trees (path, mode and
  blob id of every file) are. A commit id in a message (``Symergion-Notes:`` names the
  annotated commit), or an abbreviation of one, becomes its label, and so do the names of the
  annotated commits in a notes tree. Blob ids stay: they hash file content only.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG, Config
from symergion.core.execute import Reconciler
from symergion.core.ops import add_feedback, revoke_feedback, start_task
from symergion.engine.fake import FakeEngine
from symergion.gitrepo import GitRepo
from tests.helpers.fleet import FakeFleet
from tests.helpers.git import git
from tests.needs import needs_bwrap

GOLDEN = Path(__file__).parent / "workflow.txt"
UPDATE = "SYMERGION_GOLDEN_UPDATE"
TASK = "TestCase_calc"
FREE = "Free_calc"
CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
# 2026-01-01T00:00:00Z; each step is one minute later.
EPOCH = 1767225600


# The free-form task's replies: a first attempt with one wrong expectation and one test that
# calls nothing; what a model writes once told what failed; a file with nothing worth keeping.
# Like the guided replies below, they resemble those of tests/verify on purpose but are this
# module's own: every byte of the golden file depends on them, so editing another test's data
# must not change it.
FIRST = """from utils import calc


class TestCalc(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(1, 2), 3)

    def test_sub(self):
        self.assertEqual(calc.sub(5, 2), 4)

    def test_truth(self):
        self.assertTrue(True)
"""
REPAIRED = FIRST.replace("sub(5, 2), 4)", "sub(5, 2), 3)").split("\n\n    def test_truth")[0] + "\n"
EMPTY = """

class TestNothing(unittest.TestCase):
    def test_truth(self):
        self.assertTrue(True)
"""
OPENER = "(unittest.TestCase):\n"
FREE_ACTION = "Write unittest tests"  # the free-form template's call to action, told apart by it


def continued(prompt: str, text: str) -> str:
    """Return ``text`` as a model goes on after the built-in starter, which opened the class."""
    return text.split(OPENER, 1)[1] if prompt.endswith(OPENER) else text


def reply(_model: str, prompt: str) -> str:
    """Complete a free prompt with a file, or what the guide opened with a (wrong) value."""
    if FREE_ACTION in prompt:  # the free-form template: the model writes the whole class
        return continued(prompt, REPAIRED if "were run:" in prompt else FIRST)
    last = prompt.rsplit("\n", 1)[-1]
    if last.rstrip().endswith("="):
        return "2\n"
    if last.endswith("self.assertEqual(result, "):
        return "5)\n\n"
    return "\n"


def seeded_reply(prompt: str, seed: int) -> str:
    """A sampling model: its samples differ by seed, each scoring differently."""
    if FREE_ACTION in prompt:
        return continued(prompt, (REPAIRED, FIRST, EMPTY)[seed % 3])
    if prompt.rsplit("\n", 1)[-1].rstrip().endswith("="):
        return f"{seed % 5}\n"
    return reply("", prompt)


def config(*, samples: bool = False) -> Config:
    """The built-in config (verify and guided), two coders, and a sampling third on request.

    A second template, ``Free``, is the built-in one without guided generation: its candidates
    are whole files from the model, pruned, and repaired by the model.
    """
    raw: dict[str, Any] = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["checkpoints"] = [{"name_or_path": f"/models/{m}.gguf", "trait": "coding"}
                          for m in ("alpha", "beta")]
    if samples:
        raw["checkpoints"].append({"name_or_path": "/models/gamma.gguf", "trait": "coding",
                                   "samples": 3, "sampling": {"temperature": 0.8, "seed": 7}})
    free = json.loads(json.dumps(raw["templates"]["TestCase"]))
    free["guided"] = False
    free["call_to_action"] = FREE_ACTION
    raw["templates"]["Free"] = free
    return parse_config(raw, base_dir=Path("/models"))


SECONDS = re.compile(r"^(Symergion-Seconds:) .*$", re.MULTILINE)
# A verification summary ("2 passed, ...; imports utils.calc; 0.9s") ends with its run time.
VERIFY_SECONDS = re.compile(r"(; (?:imports|does not import) [\w.]+); \d+(?:\.\d+)?s\b")
STAMP = re.compile(r"^(refs/symergion/archive/.+/)\d{8}T\d{6}Z(-\d+)?$")
STAMPED = r"\1<stamp>\2"
# A directory of its own under the system's temporary directory (a throwaway checkout, say).
TEMP_DIR = re.compile(re.escape(tempfile.gettempdir().rstrip("/")) + r"/[^\s/:'\")]+")
OBJECT_ID = re.compile(r"\b[0-9a-f]{7,64}\b")


def normalise(text: str, tmp: Path, labels: dict[str, str]) -> str:
    """Replace what varies from run to run (see the module docstring), and nothing else."""
    text = SECONDS.sub(r"\1 <seconds>", text)
    text = VERIFY_SECONDS.sub(r"\1; <seconds>s", text)
    for path in sorted({str(tmp), str(tmp.resolve())}, key=len, reverse=True):
        text = text.replace(path, "<tmp>")
    text = TEMP_DIR.sub("<tmp>", text)

    def commit_label(match: re.Match[str]) -> str:
        # A commit id, or its abbreviation, names a labelled commit; a blob id stays as it is.
        found = {label for oid, label in labels.items() if oid.startswith(match.group(0))}
        return found.pop() if len(found) == 1 else match.group(0)

    return OBJECT_ID.sub(commit_label, text)


@pytest.fixture
def fleet() -> FakeFleet:
    """Guided replies; gamma samples, so its replies differ by seed."""
    fleet = FakeFleet(reply)
    fleet.engines["gamma"] = FakeEngine("gamma", lambda p: reply("gamma", p),
                                        seeded=seeded_reply)
    return fleet


class Recorder:
    """Write the repository's refs and new commits after each step, commits named by label."""

    def __init__(self, repo: Path, tmp: Path) -> None:
        self.repo = repo
        self.tmp = tmp
        self.labels: dict[str, str] = {}
        self.lines: list[str] = []

    def label(self, oid: str) -> str:
        return self.labels.get(oid, oid)

    def record(self, step: str) -> None:
        self.lines += [f"=== {step}", "refs:"]
        refs = [line.split(" ", 1) for line in
                git(self.repo, "for-each-ref", "--format=%(objectname) %(refname)").splitlines()]
        new: list[str] = []
        for oid, _name in sorted(refs, key=lambda r: r[1]):
            # Each ref's history oldest first: parents get their labels before their children.
            for commit in git(self.repo, "rev-list", "--reverse", "--topo-order", oid).split():
                if commit not in self.labels:
                    self.labels[commit] = f"C{len(self.labels) + 1}"
                    new.append(commit)
        for oid, name in sorted(refs, key=lambda r: r[1]):
            self.lines.append(f"  {STAMP.sub(STAMPED, name)} -> {self.label(oid)}")
        for commit in new:
            self.commit(commit)
        self.lines.append("")

    def commit(self, oid: str) -> None:
        header = git(self.repo, "show", "-s", "--format=%P%n%an <%ae> %ad%n%cn <%ce> %cd",
                     "--date=iso-strict", oid).splitlines()
        parents = " ".join(self.label(p) for p in header[0].split()) or "(none)"
        message = git(self.repo, "show", "-s", "--format=%B", oid)
        self.lines += [f"commit {self.label(oid)}", f"  parents: {parents}",
                       f"  author: {header[1]}", f"  committer: {header[2]}", "  message:"]
        self.lines += [f"    | {line}".rstrip() for line in
                       normalise(message, self.tmp, self.labels).rstrip("\n").split("\n")]
        self.lines.append("  tree:")
        entries: list[tuple[int, list[str]]] = []
        for entry in git(self.repo, "ls-tree", "-r", "--full-tree", oid).splitlines():
            info, path = entry.split("\t", 1)
            mode, _kind, blob = info.split()
            # A notes tree names each annotated commit by its id (maybe fanned out as ab/cdef).
            annotated = self.labels.get(path.replace("/", ""))
            if annotated is None:  # a file: git's order, by path
                named = normalise(path, self.tmp, self.labels)
                entries.append((len(entries), [f"    {mode} {blob} {named}"]))
                continue
            # A note, ordered by its commit's label: git orders them by commit id, which varies.
            note = normalise(git(self.repo, "cat-file", "blob", blob), self.tmp, self.labels)
            entries.append((int(annotated[1:]), [f"    {mode} {blob} {annotated}",
                                                  *(f"      | {line}".rstrip()
                                                    for line in note.rstrip("\n").split("\n"))]))
        for _order, lines in sorted(entries):
            self.lines += lines

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def run_workflow(tmp: Path, monkeypatch: pytest.MonkeyPatch,
                 make_reconciler: Callable[..., Reconciler]) -> str:
    """Play the workflow in a new repository under ``tmp`` and return its recording."""
    path = tmp / "repo"
    path.mkdir()
    recorder = Recorder(path, tmp)
    minute = 0

    def at_next_minute() -> None:
        nonlocal minute
        minute += 1
        date = f"@{EPOCH + 60 * minute} +0000"
        monkeypatch.setenv("GIT_AUTHOR_DATE", date)
        monkeypatch.setenv("GIT_COMMITTER_DATE", date)

    def step(name: str, action: Callable[[], object]) -> None:
        at_next_minute()
        action()
        recorder.record(name)

    def sync(cfg: Config) -> None:
        report = make_reconciler(path, cfg).sync()
        assert not report.failed, report.as_dict()

    for var, value in (("GIT_AUTHOR_NAME", "Golden User"), ("GIT_AUTHOR_EMAIL", "user@example.com"),
                       ("GIT_COMMITTER_NAME", "Golden User"),
                       ("GIT_COMMITTER_EMAIL", "user@example.com")):
        monkeypatch.setenv(var, value)
    cfg = config()
    alpha = f"alpha_{TASK}"

    def initial() -> None:
        git(path, "init", "-q", "-b", "main")
        (path / "utils").mkdir()
        (path / "utils" / "__init__.py").write_text("")
        (path / "utils" / "calc.py").write_text(CALC)
        git(path, "add", ".")
        git(path, "commit", "-q", "-m", "initial")

    def hand_commit() -> None:
        git(path, "checkout", "-q", alpha)
        test = path / "test_calc.py"
        test.write_text(test.read_text() + "\n    def test_add_zero(self):\n"
                        "        self.assertEqual(calc.add(0, 0), 0)\n")
        git(path, "commit", "-q", "-am", "Add a test of zero")
        git(path, "checkout", "-q", "main")

    def end() -> None:
        git(path, "merge", "-q", "--no-ff", "-m", f"Merge {alpha}", alpha)
        git(path, "branch", "-D", TASK)
        # The other task ends as the note that started it loses its section.
        note = git(path, "notes", "show", FREE).splitlines()
        kept = "\n".join(line for line in note if FREE not in line)
        git(path, "notes", "add", "-f", "-m", kept, FREE)

    step("init: main with utils/calc.py", initial)
    with GitRepo(path) as repo:
        step(f"start: {TASK} (source utils/calc.py, destination test_calc.py)",
             lambda: start_task(repo, cfg, TASK, source="utils/calc.py",
                                destination="test_calc.py"))
        step(f"start: {FREE} (source utils/calc.py, destination test_free.py)",
             lambda: start_task(repo, cfg, FREE, source="utils/calc.py",
                                destination="test_free.py"))
        step(f"sync: verified candidates; {TASK}'s assertions pinned, {FREE}'s pruned and "
             "repaired by the model", lambda: sync(cfg))
        step(f"feedback on {alpha}: Use setUp method",
             lambda: add_feedback(repo, cfg, "Use setUp method", alpha))
        step("sync: every coder regenerates with the feedback", lambda: sync(cfg))
        step(f"hand commit on {alpha}", hand_commit)
        step("sync: the hand commit is kept", lambda: sync(cfg))
        step(f"revoke on {alpha}", lambda: revoke_feedback(repo, cfg, alpha))
        step("sync: the earlier responses come back from the store", lambda: sync(cfg))
        step("sync: a coder with three samples publishes the best",
             lambda: sync(config(samples=True)))
        step(f"end: merge {alpha} into main, delete {TASK}; drop {FREE}'s section of its note", end)
        step("sync: the model branches of both tasks are archived",
             lambda: sync(config(samples=True)))
    return recorder.text + "\n"


def compare(recorded: str, golden: Path) -> None:
    """Fail with a unified diff when ``recorded`` differs from ``golden`` (rewritten on request)."""
    if os.environ.get(UPDATE, "").strip() not in ("", "0"):
        golden.write_text(recorded, encoding="utf-8")
    expected = golden.read_text(encoding="utf-8") if golden.exists() else ""
    if recorded != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True),
                                            recorded.splitlines(keepends=True),
                                            str(golden), "recorded"))
        pytest.fail(f"the workflow's bytes changed; if that is intended, run "
                    f"`{UPDATE}=1 pytest tests/golden` and commit the file saying why:\n{diff}",
                    pytrace=False)


@needs_bwrap
def test_the_workflow_writes_the_golden_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_reconciler: Callable[..., Reconciler],
        fleet: FakeFleet) -> None:
    compare(run_workflow(tmp_path, monkeypatch, make_reconciler), GOLDEN)
    assert set(fleet.engines) == {"alpha", "beta", "gamma"} and fleet.calls > 0


def test_a_changed_byte_fails_with_a_diff_and_the_update_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    golden = tmp_path / "workflow.txt"
    golden.write_text("=== start\nrefs:\n  refs/heads/main -> C1\n")
    monkeypatch.delenv(UPDATE, raising=False)

    with pytest.raises(pytest.fail.Exception) as failed:
        compare("=== start\nrefs:\n  refs/heads/main -> C2\n", golden)

    assert "-  refs/heads/main -> C1\n+  refs/heads/main -> C2" in str(failed.value)
    assert f"{UPDATE}=1 pytest tests/golden" in str(failed.value)
    monkeypatch.setenv(UPDATE, "1")
    compare("=== start\nrefs:\n  refs/heads/main -> C2\n", golden)
    assert golden.read_text() == "=== start\nrefs:\n  refs/heads/main -> C2\n"


def test_normalise_replaces_only_what_varies(tmp_path: Path) -> None:
    labels = {"0123456789abcdef0123456789abcdef01234567": "C4"}
    message = (f"Symergion-Notes: 0123456789abcdef0123456789abcdef01234567:{'f' * 40}\n"
               "Symergion-Seconds: 12.3\n"
               "Symergion-Verify: 2 passed; imports utils.calc; 0.9s; exit 0\n"
               f"see {tmp_path}/repo/a.py, 0123456789 and {tempfile.gettempdir()}/sbx-9q1/x.py\n"
               "Symergion-Tokens: 35\n")
    assert normalise(message, tmp_path, labels) == (
        f"Symergion-Notes: C4:{'f' * 40}\n"
        "Symergion-Seconds: <seconds>\n"
        "Symergion-Verify: 2 passed; imports utils.calc; <seconds>s; exit 0\n"
        "see <tmp>/repo/a.py, C4 and <tmp>/x.py\n"
        "Symergion-Tokens: 35\n")
