"""Run generated code in bubblewrap: read-only root, private /tmp and HOME, no network, limits.

What a sandboxed command sees:
- the whole file system read-only, except a throwaway checkout at ``/tmp/checkout`` (its
  working directory) and an empty private ``/tmp`` (HOME is ``/tmp/home``);
- the user's home directories replaced by empty ones, with only the Python installation the
  command needs bound back read-only;
- no network (its own network namespace holds nothing but loopback), its own pid, IPC and UTS
  namespaces, and no capabilities;
- limits: wall time (the whole namespace is killed, grandchildren included), address space
  per process, file size, and processes.

The process cap is ``RLIMIT_NPROC`` set inside the sandbox (see ``launch.py``): it works without
privileges, unlike a cgroup, which needs root or a delegated systemd scope. ``SYMERGION_SANDBOX=none``
opts out: the command then runs in the checkout with the time and memory limits only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from symergion.config import ENV_SANDBOX, sandbox_mode
from symergion.errors import SymergionError

CHECKOUT = "/tmp/checkout"
TOOLS = "/tmp/.symergion"
HOME = "/tmp/home"
UNPRIVILEGED_UID = 65534  # nobody: root is exempt from RLIMIT_NPROC, so root runs tests as nobody
_OUTPUT_TAIL = 64 * 1024
_HERE = Path(__file__).resolve().parent
_probed: dict[str, str | None] = {}


class SandboxUnavailable(SymergionError):
    """bubblewrap is missing or cannot create its namespaces here."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use."""

    timeout: float = 60.0
    memory: int = 2 * 1024**3
    processes: int = 64
    file_size: int = 64 * 1024**2


@dataclass(frozen=True)
class Run:
    """How one sandboxed command ended."""

    exit_code: int | None
    timed_out: bool
    seconds: float
    output: str
    sandboxed: bool


class Sandbox:
    """Runs commands in a checkout, under bubblewrap unless ``SYMERGION_SANDBOX=none`` says otherwise."""

    def __init__(self, mode: str | None = None, bwrap: str | None = None) -> None:
        self.mode = mode or sandbox_mode()
        self.bwrap = bwrap or shutil.which("bwrap") or ""
        if self.mode == "bwrap":
            self._check()

    @property
    def sandboxed(self) -> bool:
        """Return whether commands run isolated."""
        return self.mode == "bwrap"

    def tool(self, name: str) -> str:
        """Return the path under which the command sees one of this package's scripts."""
        return f"{TOOLS}/{name}" if self.sandboxed else str(_HERE / name)

    def checkout_path(self, checkout: Path) -> str:
        """Return the path under which the command sees the checkout."""
        return CHECKOUT if self.sandboxed else str(checkout)

    def run(self, argv: Sequence[str], checkout: Path, limits: Limits) -> Run:
        """Run ``argv`` in ``checkout`` within ``limits``; a timeout kills everything it started."""
        with tempfile.TemporaryDirectory(prefix="symergion-run-") as scratch:
            log = Path(scratch) / "output"
            if self.sandboxed:
                _hand_over(checkout)
                command = self._bwrap_argv(argv, checkout, limits)
                env = None
            else:
                (Path(scratch) / "home").mkdir()
                command = self._launch_argv(argv, limits, nproc=False)
                env = _environment(home=str(Path(scratch) / "home"), tmp=scratch)
            start = time.monotonic()
            with log.open("wb") as out:
                proc = subprocess.Popen(command, cwd=checkout, env=env, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                timed_out = False
                try:
                    proc.wait(timeout=limits.timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    # bwrap is the group leader; with --die-with-parent its death takes pid 1 of
                    # the sandbox, and with it every process in the pid namespace.
                    if proc.poll() is None:
                        _kill_group(proc.pid)
                        proc.wait()
            seconds = time.monotonic() - start
            return Run(exit_code=None if timed_out else proc.returncode, timed_out=timed_out,
                       seconds=seconds, output=_tail(log), sandboxed=self.sandboxed)

    def _check(self) -> None:
        if not self.bwrap:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed; generated tests are only run inside it",
                hint="install it with `sudo apt-get install bubblewrap` (Fedora: `dnf install "
                f"bubblewrap`), or set {ENV_SANDBOX}=none to run them without isolation (unsafe)",
            )
        if self.bwrap not in _probed:
            probe = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                     *_isolation_args(), "--", "true"]
            proc = subprocess.run(probe, capture_output=True, text=True, check=False)
            _probed[self.bwrap] = None if proc.returncode == 0 else proc.stderr.strip()
        problem = _probed[self.bwrap]
        if problem is not None:
            raise SandboxUnavailable(
                f"bubblewrap cannot create its namespaces here: {problem}",
                hint="allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; "
                "on Ubuntu an AppArmor profile for bwrap), or run in a VM or container that does; "
                f"{ENV_SANDBOX}=none runs generated tests without isolation (unsafe)",
            )

    def _bwrap_argv(self, argv: Sequence[str], checkout: Path, limits: Limits) -> list[str]:
        args = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--perms", "1777", "--tmpfs", "/tmp"]
        hidden = ["/tmp"]
        for home in _homes():
            if home != "/" and not any(_within(home, h) for h in hidden) and Path(home).is_dir():
                args += ["--perms", "0755", "--tmpfs", home]
                hidden.append(home)
        for path in _runtime_paths():
            root = next((h for h in hidden if _within(path, h)), None)
            if root is not None:
                # bwrap would create the folders on the way as 0700: the tests' uid could not pass.
                for folder in reversed(Path(path).parents):
                    if _within(str(folder), root) and str(folder) != root:
                        args += ["--perms", "0755", "--dir", str(folder)]
                args += ["--ro-bind", path, path]
        args += ["--perms", "0755", "--dir", TOOLS]
        for name in ("launch.py", "runner.py"):
            args += ["--ro-bind", str(_HERE / name), f"{TOOLS}/{name}"]
        args += ["--perms", "0777", "--dir", HOME, "--bind", str(checkout), CHECKOUT,
                 "--chdir", CHECKOUT, *_isolation_args()]
        for key, value in _environment(home=HOME, tmp="/tmp").items():
            args += ["--setenv", key, value]
        return [*args, "--", *self._launch_argv(argv, limits, nproc=True)]

    def _launch_argv(self, argv: Sequence[str], limits: Limits, *, nproc: bool) -> list[str]:
        launch = [sys.executable, self.tool("launch.py"), "--memory", str(limits.memory),
                  "--file-size", str(limits.file_size)]
        if nproc:
            launch += ["--processes", str(limits.processes)]
            if os.geteuid() == 0:
                launch += ["--uid", str(UNPRIVILEGED_UID)]
        return [*launch, "--", *argv]


def _isolation_args() -> list[str]:
    args = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--clearenv"]
    if os.geteuid() == 0:
        # Root runs bwrap without a user namespace; the launcher needs these two to leave root.
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user"]
    return args


def _environment(*, home: str, tmp: str) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


def _homes() -> list[str]:
    """Return the home directories to hide: $HOME and the account's own."""
    found = [os.path.realpath(os.path.expanduser("~"))]
    with contextlib.suppress(KeyError):
        found.append(os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir))
    return list(dict.fromkeys(found))


def _runtime_paths() -> list[str]:
    """Return what this interpreter needs to run: its prefixes and every directory on sys.path."""
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  str(Path(sys.executable).parent), str(Path(os.path.realpath(sys.executable)).parent),
                  *sys.path]
    paths = []
    for item in candidates:
        if item and os.path.isabs(item) and os.path.isdir(item):
            paths.append(os.path.realpath(item))
            paths.append(os.path.abspath(item))
    unique = sorted(set(paths), key=len)
    # A directory inside another one already listed is bound with it.
    return [p for i, p in enumerate(unique) if not any(_within(p, q) for q in unique[:i])]


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _hand_over(checkout: Path) -> None:
    """Give the checkout to the uid the tests run as, so they can write there and nowhere else."""
    if os.geteuid() != 0:
        return
    for path in _walk(checkout):
        os.lchown(path, UNPRIVILEGED_UID, UNPRIVILEGED_UID)


def _walk(root: Path) -> Iterator[str]:
    yield str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            yield os.path.join(dirpath, name)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(path: Path) -> str:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _OUTPUT_TAIL))
        return handle.read().decode("utf-8", "replace")
