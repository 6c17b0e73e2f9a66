"""A full disk or a read-only repository, made for real: a sized tmpfs and a read-only bind from
bubblewrap, with real sqlite/diskcache and the real lock file in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.helpers.reliability import CHILD, ROOT, start_task
from tests.helpers.verify import needs_bwrap

pytestmark = needs_bwrap


def in_bwrap(mounts: list[str], code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` with the host's view of the files, plus ``mounts`` (bwrap options)."""
    command = ["bwrap", "--dev-bind", "/", "/", *mounts, "--die-with-parent",
               sys.executable, "-c", textwrap.dedent(code), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                          check=False)


FILL_THE_STORE = '''
    import json, sys
    from pathlib import Path
    from symergion.cache import ResponseStore

    small = Path(sys.argv[1])
    store = ResponseStore(small / "cache", 100)
    store.put("waiting", {"text": "an answer a checked-out branch waits for"})
    store.close()
    # Fill the file system to the last byte.
    with open(small / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"x" * 65536)
        except OSError:
            pass
        try:
            while True:
                handle.write(b"x")
        except OSError:
            pass
    store = ResponseStore(small / "cache", 100)
    seen = {"before": store.get("waiting")}  # None: sqlite cannot even open its journal
    error = None
    try:
        for i in range(50):  # larger than any space left: a value of its own file, and rows
            store.put(f"new-{i}", {"text": "y" * (100_000 if i % 2 else 100)})
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    seen.update(error=error, unavailable=store.unavailable, entries=len(store))
    store.close()
    (small / "filler").unlink()
    store = ResponseStore(small / "cache", 100)
    seen["after"] = store.get("waiting")
    seen["rebuilt"] = str(store.rebuilt) if store.rebuilt else None
    seen["moved_aside"] = [str(p) for p in store.moved_aside]
    store.close()
    print(json.dumps(seen))
'''


def test_a_full_disk_is_not_a_corrupt_store(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    run = in_bwrap(["--size", str(1024 * 1024), "--tmpfs", str(small)], FILL_THE_STORE,
                   str(small))
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    waiting = {"text": "an answer a checked-out branch waits for"}
    assert seen["error"] is None, "a full disk stops caching, not the pass"
    assert seen["unavailable"] and "cannot be written" in seen["unavailable"]
    assert seen["before"] is None
    assert seen["after"] == waiting, "the healthy store kept its answers"
    assert seen["rebuilt"] is None and seen["moved_aside"] == []


PASS_ON_A_FULL_DISK = """
import os
from pathlib import Path
from symergion.cache import ResponseStore

cache = Path(os.environ["SYMERGION_CACHE_DIR"])
store = ResponseStore(cache / "responses", 100)
store.put("waiting", {"text": "an answer a checked-out branch waits for"})
store.close()
with open(cache / "filler", "wb", buffering=0) as handle:
    for size in (65536, 1):
        try:
            while True:
                handle.write(b"x" * size)
        except OSError:
            pass
"""


def test_a_pass_on_a_full_disk_goes_on_without_caching(repo_dir, cfg, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    start_task(repo_dir)
    code = PASS_ON_A_FULL_DISK + CHILD
    env = {"SYMERGION_CACHE_DIR": str(small), "PAD": "4000"}  # answers too big for what is left
    command = ["bwrap", "--dev-bind", "/", "/", "--size", str(1024 * 1024), "--tmpfs",
               str(small), "--die-with-parent", sys.executable, "-c", code, "sync", "--repo",
               str(repo_dir), "--config", str(cfg), "--json"]
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env},
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert {r["status"] for r in report["results"]} == {"created"}
    [notice] = report["notices"]
    assert "cannot be written" in notice and "without caching" in notice
    assert "corrupt" not in run.stdout + run.stderr


LOCK = '''
    import sys
    from pathlib import Path
    from symergion.errors import SymergionError
    from symergion.app.lock import repo_lock

    try:
        with repo_lock(Path(sys.argv[1])):
            print("locked")
    except SymergionError as exc:
        print(f"{type(exc).__name__}: {exc}")
'''


def test_a_read_only_repository_names_the_lock_file_and_the_fix(repo_dir):
    git_dir = repo_dir / ".git"
    run = in_bwrap(["--ro-bind", str(repo_dir), str(repo_dir)], LOCK, str(git_dir))
    assert run.returncode == 0, run.stderr
    assert f"cannot create the lock file {git_dir}/symergion/lock" in run.stdout
    assert "read-only file system" in run.stdout and "writable clone" in run.stdout


def test_a_full_disk_names_the_lock_file_and_the_fix(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    fill = '''
        import sys
        from pathlib import Path
        (Path(sys.argv[1]) / "symergion").mkdir()
        with open(Path(sys.argv[1]) / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"x" * 4096)
            except OSError:
                pass
    '''
    code = textwrap.dedent(fill) + textwrap.dedent(LOCK)
    run = in_bwrap(["--size", str(64 * 1024), "--tmpfs", str(small)], code, str(small))
    assert run.returncode == 0, run.stderr
    assert f"cannot create the lock file {small}/symergion/lock" in run.stdout
    assert "is full" in run.stdout


def test_the_cli_reports_a_read_only_repository(repo_dir, cfg):
    start_task(repo_dir)
    code = '''
        import sys
        from symergion.cli.main import main
        sys.exit(main(sys.argv[1:]))
    '''
    run = in_bwrap(["--ro-bind", str(repo_dir), str(repo_dir)], code, "sync", "--repo",
                   str(repo_dir), "--config", str(cfg))
    assert run.returncode == 1, run.stderr
    assert "unexpected" not in run.stderr
    assert "cannot create the lock file" in run.stderr and "hint:" in run.stderr
