"""The sandbox with real bubblewrap: no writes outside the checkout, no network, no survivors, limits."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from symergion.verify.sandbox import Limits, Sandbox, SandboxUnavailable
from tests.helpers.verify import needs_bwrap


def run_python(sandbox: Sandbox, checkout: Path, code: str, limits: Limits | None = None) -> str:
    """Run Python code in the sandbox and return its output (asserting it ran to the end)."""
    checkout.mkdir(exist_ok=True)
    (checkout / "probe.py").write_text(code + "\nprint('END')\n")
    run = sandbox.run([sys.executable, "probe.py"], checkout, limits or Limits(timeout=30))
    assert "END" in run.output, run.output
    return run.output


@needs_bwrap
def test_cannot_write_outside_the_checkout(sandbox: Sandbox, tmp_path: Path, isolated_env: Path) -> None:
    user_repo = tmp_path / "repo"
    user_repo.mkdir()
    (user_repo / "keep.py").write_text("original\n")
    secret = isolated_env / "secret"
    secret.write_text("private\n")
    host_tmp = Path("/tmp") / f"symergion-probe-{uuid.uuid4().hex}"
    var_tmp = Path("/var/tmp") / f"symergion-probe-{uuid.uuid4().hex}"
    targets = [user_repo / "keep.py", user_repo / "new.py", isolated_env / "x", Path.home() / "y",
               host_tmp, var_tmp]
    code = f"""
import os
for target in {[str(t) for t in targets]!r}:
    try:
        with open(target, "w") as handle:
            handle.write("pwned")
        print("WROTE", target)
    except OSError as exc:
        print("DENIED", target, exc.strerror)
print("HOME", os.environ["HOME"], os.path.exists({str(secret)!r}))
open("inside.txt", "w").write("ok")
"""
    try:
        output = run_python(sandbox, tmp_path / "checkout", code)
    finally:
        for path in (host_tmp, var_tmp):
            path.unlink(missing_ok=True)
    # Writes to the private /tmp vanish with the sandbox; nothing reaches the real file system.
    assert (user_repo / "keep.py").read_text() == "original\n"
    assert sorted(p.name for p in user_repo.iterdir()) == ["keep.py"]
    assert not (isolated_env / "x").exists() and not (Path.home() / "y").exists()
    # Outside /tmp nothing of the host exists to be written: /var is not part of the sandbox.
    assert f"DENIED {var_tmp} No such file or directory" in output
    assert "HOME /tmp/home False" in output  # a private HOME; the user's files are out of sight
    # The tests wrote into their copy of the checkout; the host's checkout stays as exported.
    assert sorted(p.name for p in (tmp_path / "checkout").iterdir()) == ["probe.py"]


@needs_bwrap
def test_cannot_reach_the_network(sandbox: Sandbox, tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = f"""
import socket
for host in ("127.0.0.1", "10.255.255.1"):
    try:
        socket.create_connection((host, {port}), timeout=2).close()
        print("CONNECTED", host)
    except OSError as exc:
        print("BLOCKED", host, type(exc).__name__)
"""
        output = run_python(sandbox, tmp_path / "checkout", code)
        assert "BLOCKED 127.0.0.1 ConnectionRefusedError" in output
        assert "BLOCKED 10.255.255.1" in output and "CONNECTED" not in output
        # The same code outside the sandbox reaches the listener: the check above can fail.
        unsandboxed = run_python(Sandbox(mode="none"), tmp_path / "plain", code.replace(
            '("127.0.0.1", "10.255.255.1")', '("127.0.0.1",)'))
        assert "CONNECTED 127.0.0.1" in unsandboxed


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_timeout_kills_every_process_it_started(mode: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    # Without bubblewrap no pid namespace catches a process that called setsid: the launcher,
    # its subreaper, has to.
    if mode == "bwrap":
        request.getfixturevalue("bwrap_available")
    marker = f"{1000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    code = f"""
import os, time
if os.fork() == 0:
    os.setsid()  # leaves the process group and the session the timeout kills
    if os.fork() == 0:
        if os.fork() == 0:
            time.sleep(2)
            open("survived", "w").write("yes")  # the checkout itself without a sandbox
            os._exit(0)
        os.execvp("sleep", ["sleep", "{marker}"])
    os._exit(0)
time.sleep(600)
"""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "probe.py").write_text(code)
    start = time.monotonic()
    run = Sandbox(mode=mode).run([sys.executable, "probe.py"], checkout, Limits(timeout=1.0))
    assert run.timed_out and run.exit_code is None
    assert time.monotonic() - start < 10
    time.sleep(3)
    assert not (checkout / "survived").exists()
    assert _processes_with(marker) == []


@needs_bwrap
def test_memory_limit_bites(sandbox: Sandbox, tmp_path: Path) -> None:
    code = """
small = bytearray(64 * 1024 * 1024)
print("SMALL", len(small))
try:
    big = bytearray(1024 * 1024 * 1024)
    print("BIG allocated")
except MemoryError:
    print("BIG MemoryError")
"""
    output = run_python(sandbox, tmp_path / "checkout", code, Limits(timeout=30, memory=512 * 1024**2))
    assert "SMALL 67108864" in output and "BIG MemoryError" in output


@needs_bwrap
def test_process_limit_bites(sandbox: Sandbox, tmp_path: Path) -> None:
    code = """
import os, time
children = []
try:
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        children.append(pid)
    print("FORKED ALL")
except BlockingIOError as exc:
    print("LIMIT after", len(children), exc.strerror)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""
    output = run_python(sandbox, tmp_path / "checkout", code, Limits(timeout=30, processes=16))
    line = next(line for line in output.splitlines() if line.startswith(("LIMIT", "FORKED")))
    assert line.startswith("LIMIT after")
    assert int(line.split()[2]) < 16


def test_missing_bwrap_says_how_to_install_or_opt_out(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable) as caught:
        Sandbox(mode="bwrap")
    assert "apt-get install bubblewrap" in str(caught.value)
    assert "SYMERGION_SANDBOX=none" in str(caught.value)


def test_bwrap_without_namespaces_is_reported(tmp_path: Path) -> None:
    # A kernel without unprivileged user namespaces makes bwrap fail like this script does.
    script = tmp_path / "bwrap"
    script.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(SandboxUnavailable, match="No permissions to create new namespace") as caught:
        Sandbox(mode="bwrap", bwrap=str(script))
    assert "SYMERGION_SANDBOX=none" in str(caught.value)


def test_opt_out_runs_without_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SYMERGION_SANDBOX", "none")
    monkeypatch.setenv("PATH", os.defpath)
    sandbox = Sandbox()
    assert not sandbox.sandboxed
    output = run_python(sandbox, tmp_path / "checkout", "import os\nprint('CWD', os.getcwd())")
    assert f"CWD {tmp_path / 'checkout'}" in output


def test_without_sandbox_processes_left_by_a_finished_command_are_killed(tmp_path: Path) -> None:
    marker = f"{2000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    code = f"""
import os, subprocess
subprocess.Popen(["sleep", "{marker}"], start_new_session=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
print("started")
"""
    output = run_python(Sandbox(mode="none"), tmp_path / "checkout", code)
    assert "started" in output
    assert _processes_with(marker) == []


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if marker in " ".join(process.info["cmdline"] or []) and process.info["status"] != "zombie":
            found.append(process)
    return found
