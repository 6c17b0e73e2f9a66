"""Attacks a generated test file makes from inside the real sandbox; each is stopped and reported.

Every attack runs as a test of a candidate through ``verify_candidate`` (real git, real
bubblewrap), and the verification result names what stopped it.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from symergion.config.schema import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify import VerifyResult, verify_candidate
from symergion.verify.sandbox import Limits
from tests.helpers.verify import commit_files, needs_bwrap

pytestmark = needs_bwrap
MiB = 1024**2


def verify_attack(repo: Path, body: str, limits: Limits | None = None) -> VerifyResult:
    """Commit a test file whose one test runs ``body``, and verify it in the sandbox."""
    indented = "\n".join("        " + line if line else "" for line in body.strip("\n").splitlines())
    test = f"import os, socket, unittest\n\nimport utils.calc\n\n\nclass TestAttack(unittest.TestCase):\n" \
           f"    def test_attack(self):\n{indented}\n"
    commit = commit_files(repo, {"test_attack.py": test})
    return verify_candidate(GitRepo(repo), commit, VerifySpec(timeout=60), "utils/calc.py", "test_attack.py",
                            limits=limits)


def detail(result: VerifyResult) -> str:
    outcome = result.tests["test_attack.TestAttack.test_attack"]
    return f"{outcome.outcome}: {outcome.detail}"


class UnixServer:
    """A service listening on a Unix socket in the test process; it records every connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o777)  # anyone may connect: only the sandbox stands in the way
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.sendall(b"host service\n")
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def host_dirs(tmp_path: Path) -> Iterator[list[Path]]:
    """Directories outside the checkout: real /run/user/<uid>, /srv and /var/tmp ones when this
    user may create them, and one outside /tmp standing in for the others."""
    made: list[Path] = []
    uid = os.getuid()
    for parent in (Path(f"/run/user/{uid}"), Path("/srv"), Path("/var/tmp")):
        folder = parent / f"symergion-attack-{uuid.uuid4().hex[:12]}"
        try:
            folder.mkdir(parents=True)
        except OSError:
            continue
        folder.chmod(0o755)
        made.append(folder)
    try:
        yield made
    finally:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_unix_socket_of_the_host_cannot_be_reached(calc_repo: Path, host_dirs: list[Path]) -> None:
    assert host_dirs, "no host directory outside /tmp could be created for the socket"
    servers = [UnixServer(folder / "bus") for folder in host_dirs]
    paths = [str(s.path) for s in servers]
    try:
        result = verify_attack(calc_repo, f"""
reached = []
for path in {paths!r}:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
        reached.append(path + " " + client.recv(100).decode())
    except OSError as exc:
        print("blocked", path, exc)
    finally:
        client.close()
self.assertEqual(reached, [])
""")
    finally:
        for server in servers:
            server.close()
    assert [s.connections for s in servers] == [0] * len(servers)
    assert result.passed == 1 and result.ok, detail(result)


def test_a_secret_outside_the_checkout_cannot_be_read(calc_repo: Path, host_dirs: list[Path]) -> None:
    assert host_dirs, "no host directory outside /tmp could be created for the secret"
    secrets = []
    for folder in host_dirs:
        (folder / "token").write_text("s3cr3t-token\n")
        (folder / "token").chmod(0o644)
        secrets.append(str(folder / "token"))
    # The repository the tests run from, and the one being verified: other repositories. (A
    # venv inside a clone, as CI keeps it, makes the clone's folder exist: its git data must not.)
    repos = [str(Path.cwd()), str(calc_repo)]
    result = verify_attack(calc_repo, f"""
for path in {secrets!r}:
    with self.assertRaises(FileNotFoundError):
        open(path).read()
self.assertEqual({{"run", "var", "srv", "home", "mnt", "opt"}} & set(os.listdir("/")), set())
self.assertEqual([p for p in {repos!r} if os.path.exists(os.path.join(p, ".git"))], [])
""")
    assert result.passed == 1 and result.ok, detail(result)


FILL = """
chunk = b"x" * (32 * 1024 * 1024)
for i in range(64):
    with open(f"FOLDERfill-{i}", "wb") as handle:
        handle.write(chunk)
self.fail("wrote 2 GiB to 'FOLDER'")
"""


# Files below the file-size limit, so only the size of the place written can stop them.
@pytest.mark.parametrize("folder", [
    pytest.param("/tmp/", id="a_two_gib_write_to_tmp"),
    pytest.param("", id="a_fill_of_the_checkout"),
    pytest.param("/tmp/home/", id="a_fill_of_home"),
    pytest.param("/dev/shm/", id="a_fill_of_shared_memory"),
])
def test_is_stopped(calc_repo: Path, folder: str) -> None:
    result = verify_attack(calc_repo, FILL.replace("FOLDER", folder), Limits(timeout=60, disk=128 * MiB))
    outcome = detail(result)
    assert not result.ok
    assert "No space left on device" in outcome, outcome
