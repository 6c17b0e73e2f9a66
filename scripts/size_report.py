"""The package's shape in figures: lines per top-level part, the largest modules, the longest functions.

For two trees, to compare the package before and after a change:

    git archive OLD symergion | tar -x -C /tmp/old
    python scripts/size_report.py /tmp/old/symergion symergion --top 8

Lines are physical lines of ``.py`` files; a function's length runs from its ``def`` (its
decorators included) to its last line, as ``tests/unit/test_sizes.py`` counts them.
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path


def _functions(tree: ast.AST) -> list[tuple[str, int, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found.append((node.name, node.lineno, (node.end_lineno or node.lineno) - start + 1))
    return found


def measure(package: Path, top: int) -> dict[str, object]:
    """Return the figures of one package directory."""
    parts: dict[str, int] = {}
    modules: list[tuple[str, int]] = []
    functions: list[tuple[str, int]] = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        part = relative.parts[0] if len(relative.parts) > 1 else "(top-level modules)"
        parts[part] = parts.get(part, 0) + lines
        modules.append((str(relative), lines))
        functions += [(f"{relative}:{line} {name}", length)
                      for name, line, length in _functions(ast.parse(text))]
    modules.sort(key=lambda m: -m[1])
    functions.sort(key=lambda f: -f[1])
    return {
        "lines": sum(lines for _name, lines in modules),
        "modules": len(modules),
        "top_level_modules": sum(1 for name, _ in modules if "/" not in name and name != "__init__.py"),
        "parts": dict(sorted(parts.items(), key=lambda p: -p[1])),
        "largest_modules": modules[:top],
        "longest_functions": functions[:top],
        "modules_over_500": sum(1 for _n, lines in modules if lines > 500),
        "functions_over_80": sum(1 for _n, length in functions if length > 80),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+", type=Path, help="package directories to measure")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args()
    figures = {str(p): measure(p, args.top) for p in args.packages}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for name, data in figures.items():
        print(f"== {name}: {data['lines']} lines in {data['modules']} modules "
              f"({data['top_level_modules']} top-level); over 500 lines: {data['modules_over_500']}, "
              f"functions over 80: {data['functions_over_80']}")
        for part, lines in data["parts"].items():  # type: ignore[attr-defined]
            print(f"   {lines:6d}  {part}")
        print("   largest modules:", ", ".join(f"{n} {v}" for n, v in data["largest_modules"]))  # type: ignore[attr-defined]
        print("   longest functions:", ", ".join(f"{n} {v}" for n, v in data["longest_functions"]))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
