"""No module over 500 lines and no function over 80: the design stays readable in parts."""

from __future__ import annotations

import ast
from pathlib import Path

import symergion

MODULE_LINES = 500
FUNCTION_LINES = 80


def oversized(root: Path) -> list[str]:
    """Return each module of ``root`` over ``MODULE_LINES`` lines and each function (or method)
    over ``FUNCTION_LINES``, as ``path: what, lines``, sorted."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(root.parent).as_posix()
        lines = len(text.splitlines())
        if lines > MODULE_LINES:
            found.append(f"{name}: module, {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    found.append(f"{name}:{node.lineno}: function {node.name}, {length} lines")
    return found


def test_no_module_or_function_of_the_package_is_over_its_limit() -> None:
    found = oversized(Path(symergion.__file__).parent)
    assert not found, ("split these into named parts (docs/architecture.md, 'Size'):\n"
                       + "\n".join(found))


def test_the_count_sees_a_long_module_and_a_long_method(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    body = "".join(f"        x{i} = {i}\n" for i in range(FUNCTION_LINES))
    (package / "sub" / "long.py").write_text(f"class C:\n    def method(self):\n{body}", encoding="utf-8")
    (package / "short.py").write_text("def f():\n" + body.replace("        ", "    "), encoding="utf-8")
    (package / "big.py").write_text("x = 1\n" * (MODULE_LINES + 1), encoding="utf-8")
    (package / "fits.py").write_text("x = 1\n" * MODULE_LINES, encoding="utf-8")
    assert oversized(package) == [
        f"pkg/big.py: module, {MODULE_LINES + 1} lines",
        f"pkg/short.py:1: function f, {FUNCTION_LINES + 1} lines",
        f"pkg/sub/long.py:2: function method, {FUNCTION_LINES + 1} lines",
    ]
