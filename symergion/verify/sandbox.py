"""Run generated code in bubblewrap, on a file system built from an allow-list.

What a sandboxed command sees (everything else of the host does not exist for it):
- ``/usr`` and the interpreter symergion runs (its prefixes: the venv, the base installation),
  read-only, with the ``/bin``, ``/lib*`` links of the host's layout and the few ``/etc`` files
  Python and libc read (``ld.so.cache``, time zone, CA certificates, ...); a made-up
  ``/etc/passwd`` and ``/etc/group`` that name only root and the sandbox's user;
- a new ``/dev`` (null, zero, random, tty, a sized ``/dev/shm``) and its own ``/proc``;
- a private ``/tmp`` on a sized tmpfs holding a copy of the checkout at ``/tmp/checkout`` (its
  working directory) and HOME at ``/tmp/home``: every write the command can make lands in that
  tmpfs, so ``Limits.disk`` bounds them all, and the host's checkout is never changed (a sized
  tmpfs rather than ``RLIMIT_FSIZE`` and a budget check: the file-size limit bounds one file,
  not how many are written, and a check after the run comes after the disk is full);
- nothing of ``/run``, ``/var``, ``/srv``, ``/home``, ``/root`` beyond the interpreter, no other
  repository and no socket directory: a Unix socket it cannot see, it cannot connect to;
- no network (its own network namespace holds nothing but loopback), its own pid, IPC and UTS
  namespaces, and no capabilities;
- limits: wall time (the whole namespace is killed, grandchildren included), address space
  per process, file size, processes, and ``disk`` for the tmpfs.

The process cap is ``RLIMIT_NPROC`` set inside the sandbox (see ``launch.py``): it works without
privileges, unlike a cgroup, which needs root or a delegated systemd scope. ``SYMERGION_SANDBOX=none``
opts out: the command then runs in the checkout with the time and memory limits only, under a
launcher that adopts and kills every process the command leaves behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from symergion.config.environment import ENV_SANDBOX, sandbox_mode
from symergion.errors import SymergionError
from symergion.verify.scratch import scratch_dir

CHECKOUT = "/tmp/checkout"
TOOLS = "/tmp/.symergion"
SOURCE = f"{TOOLS}/source"  # the host's checkout, read-only: launch.py copies it to CHECKOUT
RESULTS_INSIDE = f"{TOOLS}/results.jsonl"
HOME = "/tmp/home"
RESULTS = ".symergion-verify.jsonl"  # the results file in the checkout, without the sandbox
UNPRIVILEGED_UID = 65534  # nobody: root is exempt from RLIMIT_NPROC, so root runs tests as nobody
_OUTPUT_TAIL = 64 * 1024
_RESULTS_BYTES = 8 * 1024 * 1024
_SHM_BYTES = 64 * 1024**2
_GRACE = 5.0  # seconds the launcher gets to kill what the command left, before a hard kill
_HERE = Path(__file__).resolve().parent
_probed: dict[str, str | None] = {}
# What Python and libc read under /etc (measured with strace on a test run: the loader cache,
# time zone, locale aliases, CA certificates for ssl but not its private keys, mime types) and
# Debian's alternatives, which /usr/bin links point through. Nothing here names a user, a host
# or a secret.
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "locale.alias",
        "ssl/certs", "ssl/openssl.cnf", "ca-certificates", "pki/tls/certs", "mime.types",
        "nsswitch.conf", "alternatives", "os-release")
_TOP_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


class SandboxUnavailable(SymergionError):
    """bubblewrap is missing or cannot create its namespaces here."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use."""

    timeout: float = 60.0
    memory: int = 2 * 1024**3
    processes: int = 64
    file_size: int = 64 * 1024**2
    # All the command can write: /tmp, HOME and the checkout's copy share one sized tmpfs
    # (besides the checkout's own size, which is added to it).
    disk: int = 512 * 1024**2


@dataclass(frozen=True)
class Run:
    """How one sandboxed command ended."""

    exit_code: int | None
    timed_out: bool
    seconds: float
    output: str
    sandboxed: bool
    results: str = ""  # what the command wrote to its results file (see ``results_path``)


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

    def results_path(self, checkout: Path) -> str:
        """Return the path of the file the command may write results to; ``Run.results`` reads it."""
        return RESULTS_INSIDE if self.sandboxed else str(checkout / RESULTS)

    def run(self, argv: Sequence[str], checkout: Path, limits: Limits) -> Run:
        """Run ``argv`` in ``checkout`` within ``limits``; a timeout kills everything it started."""
        with scratch_dir("symergion-run-") as scratch:
            if self.sandboxed:
                results = scratch / "results.jsonl"
                _writable_by_sandbox(results)
                command = self._bwrap_argv(argv, checkout, limits, scratch)
                env = None
            else:
                results = checkout / RESULTS
                if results.exists() or results.is_symlink():
                    results.unlink()
                (scratch / "home").mkdir()
                command = self._launch_argv(argv, limits, nproc=False)
                env = _environment(home=str(scratch / "home"), tmp=str(scratch))
            start = time.monotonic()
            proc = subprocess.Popen(command, cwd=checkout, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            assert proc.stdout is not None
            # Kept in memory, only its tail: a command that prints forever fills no disk.
            tail = _Tail(proc.stdout)
            timed_out = False
            try:
                proc.wait(timeout=limits.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                if proc.poll() is None:
                    self._stop(proc)
                tail.join(_GRACE)
            seconds = time.monotonic() - start
            return Run(exit_code=None if timed_out else proc.returncode, timed_out=timed_out,
                       seconds=seconds, output=tail.text(), sandboxed=self.sandboxed,
                       results=_read_results(results))

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        if self.sandboxed:
            # bwrap is the group leader; with --die-with-parent its death takes pid 1 of the
            # sandbox, and with it every process in the pid namespace.
            _kill_group(proc.pid)
        else:
            # The launcher is a child subreaper: every process the command started, also one
            # that called setsid, is its descendant, and SIGTERM makes it kill them all.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=_GRACE)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
        proc.wait()

    def _check(self) -> None:
        if not self.bwrap:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed; generated tests are only run inside it",
                hint="install it with `sudo apt-get install bubblewrap` (Fedora: `dnf install "
                f"bubblewrap`), or set {ENV_SANDBOX}=none to run them without isolation (unsafe)",
            )
        if self.bwrap not in _probed:
            probe = [self.bwrap, *_system_args(), "--dev", "/dev", "--proc", "/proc",
                     "--size", str(1024**2), "--tmpfs", "/tmp", *_isolation_args(), "--", "true"]
            proc = subprocess.run(probe, capture_output=True, text=True, check=False)
            _probed[self.bwrap] = None if proc.returncode == 0 else proc.stderr.strip()
        problem = _probed[self.bwrap]
        if problem is not None:
            raise SandboxUnavailable(
                f"bubblewrap cannot create its namespaces here: {problem}",
                hint="allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; "
                "on Ubuntu an AppArmor profile for bwrap), and use bubblewrap 0.5 or newer (for "
                f"--size); or run in a VM or container that does; {ENV_SANDBOX}=none runs "
                "generated tests without isolation (unsafe)",
            )

    def _bwrap_argv(self, argv: Sequence[str], checkout: Path, limits: Limits, scratch: Path) -> list[str]:
        args = [self.bwrap, *_system_args()]
        for name in ("passwd", "group"):
            args += ["--ro-bind", str(_identity_file(scratch, name)), f"/etc/{name}"]
        tmp_size = limits.disk + _tree_size(checkout)
        args += ["--dev", "/dev", "--size", str(_SHM_BYTES), "--perms", "1777", "--tmpfs", "/dev/shm",
                 "--proc", "/proc",
                 "--size", str(tmp_size), "--perms", "1777", "--tmpfs", "/tmp",
                 "--perms", "0755", "--dir", TOOLS]
        # After /tmp is mounted, so an interpreter installed under /tmp is bound on top of it.
        made: set[str] = set()
        for path in _runtime_paths():
            # bwrap would create the folders on the way as 0700: the tests' uid could not pass.
            for folder in reversed(Path(path).parents):
                if str(folder) != "/" and str(folder) not in made:
                    made.add(str(folder))
                    args += ["--perms", "0755", "--dir", str(folder)]
            args += ["--ro-bind", path, path]
        for name in ("launch.py", "runner.py", "pytest_runner.py"):
            args += ["--ro-bind", str(_HERE / name), f"{TOOLS}/{name}"]
        args += ["--ro-bind", str(checkout), SOURCE, "--bind", str(scratch / "results.jsonl"), RESULTS_INSIDE,
                 "--perms", "0777", "--dir", HOME,
                 # Nothing outside /tmp and /dev/shm is writable, whoever the sandbox's user is.
                 "--remount-ro", "/dev", "--remount-ro", "/",
                 "--chdir", "/", *_isolation_args()]
        for key, value in _environment(home=HOME, tmp="/tmp").items():
            args += ["--setenv", key, value]
        launch = self._launch_argv(argv, limits, nproc=True)
        at = launch.index("--")
        return [*args, "--", *launch[:at], "--copy", SOURCE, CHECKOUT, *launch[at:]]

    def _launch_argv(self, argv: Sequence[str], limits: Limits, *, nproc: bool) -> list[str]:
        launch = [sys.executable, self.tool("launch.py"), "--memory", str(limits.memory),
                  "--file-size", str(limits.file_size)]
        if nproc:
            launch += ["--processes", str(limits.processes)]
            if os.geteuid() == 0:
                launch += ["--uid", str(UNPRIVILEGED_UID)]
        else:
            launch += ["--reap"]
        return [*launch, "--", *argv]


def _system_args() -> list[str]:
    """Return bwrap arguments for the operating system's part: /usr, its links, a few /etc files."""
    args = ["--ro-bind", "/usr", "/usr", "--perms", "0755", "--dir", "/etc"]
    for name in _TOP_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in _ETC:
        if "/" in name and os.path.exists(f"/etc/{name}"):
            args += ["--perms", "0755", "--dir", f"/etc/{os.path.dirname(name)}"]
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


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


def _identity_file(scratch: Path, name: str) -> Path:
    """Write /etc/passwd or /etc/group for the sandbox: root and the user the tests run as."""
    uid, gid = (UNPRIVILEGED_UID, UNPRIVILEGED_UID) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    if name == "passwd":
        lines = ["root:x:0:0:root:/root:/usr/sbin/nologin", f"sandbox:x:{uid}:{gid}:sandbox:{HOME}:/bin/sh"]
    else:
        lines = ["root:x:0:", f"sandbox:x:{gid}:"]
    path = scratch / name
    path.write_text("\n".join(dict.fromkeys(lines)) + "\n")
    path.chmod(0o644)
    return path


def _runtime_paths() -> list[str]:
    """Return what this interpreter needs to run: its prefixes and where its executable lives.

    Only the installation: ``sys.path`` may also name the user's repositories (``PYTHONPATH``,
    editable installs), and the runner and launcher import nothing beyond the standard library
    and the packages installed under these prefixes.
    """
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  str(Path(sys.executable).parent), str(Path(os.path.realpath(sys.executable)).parent)]
    paths = []
    for item in candidates:
        if item and os.path.isabs(item) and os.path.isdir(item):
            paths.append(os.path.realpath(item))
            paths.append(os.path.abspath(item))
    unique = sorted(set(paths), key=len)
    # A directory inside another one already listed is bound with it; /usr is bound already.
    return [p for i, p in enumerate(unique)
            if not any(_within(p, q) for q in ["/usr", *unique[:i]]) and p != "/"]


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _tree_size(root: Path) -> int:
    """Return the bytes the checkout's copy takes in the tmpfs (rounded up to pages)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        total += 4096 * (1 + len(dirnames))
        for name in filenames:
            with contextlib.suppress(OSError):
                total += -(-os.lstat(os.path.join(dirpath, name)).st_size // 4096) * 4096 + 4096
    return total


def _writable_by_sandbox(path: Path) -> None:
    """Create the results file for the user the tests run as (its only way to the host)."""
    path.touch()
    if os.geteuid() == 0:
        os.chown(path, UNPRIVILEGED_UID, UNPRIVILEGED_UID)


def _read_results(path: Path) -> str:
    """Read the results file; it is the tests' to write, so never follow a link there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        return handle.read(_RESULTS_BYTES).decode("utf-8", "replace")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


class _Tail:
    """Read a pipe to its end in a thread, keeping only the last bytes."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._data = bytearray()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._pipe:
            while chunk := self._pipe.read1(65536):  # type: ignore[attr-defined]
                self._data += chunk
                if len(self._data) > 2 * _OUTPUT_TAIL:
                    del self._data[:-_OUTPUT_TAIL]

    def join(self, timeout: float) -> None:
        """Wait for the end of the output (every writer of the pipe has exited), or ``timeout``."""
        self._thread.join(timeout)

    def text(self) -> str:
        """Return the last output, decoded."""
        return bytes(self._data[-_OUTPUT_TAIL:]).decode("utf-8", "replace")
