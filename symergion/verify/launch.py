"""Inside the sandbox: set the resource limits, leave root if started as root, then run the command.

This file runs as a script under the sandbox's interpreter and imports only the standard library.
The process limit is set here, after bubblewrap created the user namespace: since Linux 5.14
``RLIMIT_NPROC`` counts the processes of a user namespace, so the cap covers the sandbox alone and
not every process the user runs. Root is exempt from ``RLIMIT_NPROC``, so when the sandbox starts
as root it switches to an unprivileged uid first.

``--copy`` copies the read-only checkout into the sandbox's sized tmpfs as that uid, so every
file the tests write is theirs, counts against the tmpfs size, and never reaches the host.

``--reap`` (without a sandbox, where no pid namespace ends with the command) makes this process a
child subreaper: every process the command starts stays its descendant even after ``setsid``
and a double fork, and all that are left are killed when the command ends or on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import shutil
import signal
import sys
import time

_PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    """Apply the limits given on the command line and exec the command after ``--``."""
    parser = argparse.ArgumentParser(prog="launch")
    parser.add_argument("--memory", type=int, required=True, help="address-space limit in bytes")
    parser.add_argument("--processes", type=int, default=0, help="process limit (0: leave as is)")
    parser.add_argument("--file-size", type=int, required=True, help="largest file in bytes")
    parser.add_argument("--uid", type=int, default=None, help="switch to this uid and gid first")
    parser.add_argument("--copy", nargs=2, metavar=("SOURCE", "CHECKOUT"), default=None,
                        help="copy SOURCE to CHECKOUT and run the command there")
    parser.add_argument("--reap", action="store_true", help="kill every process the command leaves")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    resource.setrlimit(resource.RLIMIT_AS, (args.memory, args.memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_size, args.file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if args.uid is not None:
        os.setgroups([])
        os.setresgid(args.uid, args.uid, args.uid)
        os.setresuid(args.uid, args.uid, args.uid)
    if args.copy:
        source, checkout = args.copy
        try:
            shutil.copytree(source, checkout, symlinks=True)
        except OSError as exc:
            print(f"cannot copy the checkout into the sandbox: {exc}", file=sys.stderr)
            return 126
        os.chdir(checkout)
    # Set last: with the limit in force while switching uid, the kernel would fail the exec when
    # that uid already runs as many processes elsewhere.
    if args.processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (args.processes, args.processes))
    if args.reap:
        return run_reaped(command)
    return execute(command)


def execute(command: list[str]) -> int:
    """Replace this process with the command (returns only when it cannot start)."""
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover - execvp does not return


class _Stopped(Exception):
    """SIGTERM arrived: the caller's time limit passed."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped


def run_reaped(command: list[str]) -> int:
    """Run the command as a child, then kill every descendant it left; SIGTERM does that early."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"cannot adopt the command's processes: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 126
    # Raising from the handler is what interrupts waitpid (Python retries it otherwise).
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os._exit(execute(command))
        _, raw = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(raw)
        code = status if status >= 0 else 128 - status
    except _Stopped:
        code = 128 + signal.SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kill_descendants()
    return code


def kill_descendants() -> None:
    """Kill and reap every descendant; orphans come back to this subreaper, so repeat until none."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = descendants(os.getpid())
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            if not found:
                return
        if not found:
            time.sleep(0.01)


def descendants(root: int) -> list[int]:
    """Return the ids of every process below ``root``, read from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
