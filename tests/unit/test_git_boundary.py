"""Git runs from one package: no module outside ``symergion/gitrepo/`` starts a git process.

A scan of the source (the AST, so that comments and docstrings do not count) finds what starts
git: a process call (``subprocess``, ``os.system``, ``os.exec*``, ...) whose command is ``git``,
given as a list or tuple, a shell string or a name bound to one, and any import of GitPython,
whether at the top of a module, inside a function or only for type checking.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "symergion"
GIT_PACKAGE = PACKAGE / "gitrepo"

# The callables that start a process, by their full dotted name.
PROCESS_CALLS = {
    *(f"subprocess.{name}" for name in ("run", "Popen", "call", "check_call", "check_output",
                                        "getoutput", "getstatusoutput")),
    *(f"os.{name}" for name in ("system", "popen", "execl", "execle", "execlp", "execlpe", "execv",
                                "execve", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp",
                                "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
                                "posix_spawn", "posix_spawnp")),
    "asyncio.create_subprocess_exec", "asyncio.create_subprocess_shell", "pty.spawn",
}
IMPORT_CALLS = {"importlib.import_module", "__import__"}


def _is_gitpython(module: str) -> bool:
    return module == "git" or module.startswith("git.")


def _names_git(node: ast.expr, bound: dict[str, list[ast.expr]]) -> bool:
    """Return whether ``node`` is a command whose program is git."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        program = node.value.strip().split(" ", 1)[0]
        return program == "git" or program.endswith("/git")
    if isinstance(node, ast.JoinedStr) and node.values:
        return _names_git(node.values[0], bound)
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        return _names_git(node.elts[0], bound)
    if isinstance(node, ast.Name):
        # A name bound anywhere in the module to a git command (``command = ["git", *args]``).
        return any(_names_git(value, {}) for value in bound.get(node.id, []))
    return False


class _Scan(ast.NodeVisitor):
    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}  # local name -> the dotted name it was imported as
        self.bound: dict[str, list[ast.expr]] = {}
        self.found: list[tuple[int, str]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0])
            if _is_gitpython(alias.name):
                self.found.append((node.lineno, f"imports GitPython ({alias.name})"))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
        if node.level == 0 and _is_gitpython(module):
            self.found.append((node.lineno, f"imports GitPython ({module})"))

    def _dotted(self, node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            return f"{self._dotted(node.value)}.{node.attr}"
        return ""

    def check_call(self, node: ast.Call) -> None:
        name = self._dotted(node.func)
        values = [*node.args, *(keyword.value for keyword in node.keywords)]
        if name in PROCESS_CALLS and any(_names_git(value, self.bound) for value in values):
            self.found.append((node.lineno, f"starts git with {name}"))
        if name in IMPORT_CALLS and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and _is_gitpython(node.args[0].value):
            self.found.append((node.lineno, f"imports GitPython ({node.args[0].value})"))


def git_starts(source: str) -> list[tuple[int, str]]:
    """Return ``(line, what)`` for each place in ``source`` that starts git or imports GitPython."""
    tree = ast.parse(source)
    scan = _Scan()
    for node in ast.walk(tree):  # bindings first: a name may be used above its assignment
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    scan.bound.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            scan.bound.setdefault(node.target.id, []).append(node.value)
    scan.visit(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            scan.check_call(node)
    return sorted(scan.found)


def scan_tree(top: Path) -> list[str]:
    """Return ``path:line: what`` for every git start in the modules under ``top``."""
    return [f"{path.relative_to(ROOT)}:{line}: {what}"
            for path in sorted(top.rglob("*.py"))
            for line, what in git_starts(path.read_text(encoding="utf-8"))]


def test_no_module_outside_the_gitrepo_package_runs_git() -> None:
    modules = [p for p in PACKAGE.rglob("*.py") if GIT_PACKAGE not in p.parents]
    assert len(modules) > 50  # the scan sees the whole package, not an empty directory
    found = [hit for hit in scan_tree(PACKAGE) if not hit.startswith("symergion/gitrepo/")]
    assert found == [], "run git through symergion.gitrepo instead:\n" + "\n".join(found)


def test_the_scan_finds_how_the_gitrepo_package_itself_runs_git() -> None:
    found = scan_tree(GIT_PACKAGE)
    assert any("imports GitPython" in hit for hit in found), found
    assert any("starts git with subprocess.run" in hit for hit in found), found


@pytest.mark.parametrize("source", [
    "import subprocess\nsubprocess.run(['git', 'status'], check=True)\n",
    "import subprocess as sp\n\ndef f(args):\n    return sp.Popen(('git', *args))\n",
    "from subprocess import check_output as out\nout(['/usr/bin/git', 'log'])\n",
    "import subprocess\ncommand = ['git', 'gc']\nsubprocess.call(command)\n",
    "import subprocess\n\ndef f(args):\n    subprocess.run(args=['git', *args])\n",
    "import os\nos.system('git gc --auto')\n",
    "import os\nos.system(f'git {1}')\n",
    "import os\nos.execvp('git', ['git', 'log'])\n",
    "import asyncio\n\nasync def f():\n    await asyncio.create_subprocess_exec('git', 'log')\n",
    "import git\n",
    "import git.cmd as gitcmd\n",
    "from git import Repo\n",
    "from git.exc import GitCommandError\n",
    "def f():\n    import git\n    return git.Repo('.')\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from git.cmd import Git\n",
    "import importlib\nimportlib.import_module('git')\n",
])
def test_the_scan_finds_a_planted_git_start(source: str) -> None:
    assert len(git_starts(source)) == 1, source


@pytest.mark.parametrize("source", [
    "import subprocess, sys\nsubprocess.run([sys.executable, '-m', 'symergion', '--help'])\n",
    "import subprocess\nsubprocess.Popen(['bwrap', '--ro-bind', '/', '/', 'git'])\n",
    "import subprocess\nsubprocess.run(['gitk'])\n",
    "sections = {}\nsections['git'] = {'version': 'git version 2.43'}\n",
    "from symergion.gitrepo import GitRepo, run_git\nrun_git('--version')\n",
    "from . import git\n",
    "import gitdb\n",
    "'''subprocess.run([\"git\", \"status\"])'''\n",
])
def test_the_scan_leaves_other_processes_and_names_alone(source: str) -> None:
    assert git_starts(source) == [], source
