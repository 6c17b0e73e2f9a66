"""The literals the code of a module under test compares a parameter with.

Each takes a branch of the code a model's guess may miss: the variant rounds bind them
(``openers.seeds``), and the repairs give a rejected argument one of its kind.
"""

from __future__ import annotations

import ast

from symergion.verify.params import SEEDS, is_number


def _literals(node: ast.expr, containers: dict[str, list[ast.expr]]) -> list[ast.expr]:
    """Return the constants a comparison's other side stands for: itself, a literal collection's
    items, or the items (a dict's keys) of a module-level literal collection it names."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return list(node.elts)
    if isinstance(node, ast.Dict):
        return [k for k in node.keys if k is not None]
    if isinstance(node, ast.Name) and node.id in containers:
        return containers[node.id]
    return [node]


def constant_values(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str
                    ) -> list[str]:
    """Return the literals the code compares a parameter with, in source order (``SEEDS`` at most).

    ``p == 'x'``, ``p in ('a', 'b')``, ``p in TABLE`` (a module-level literal dict's keys or a
    collection's items), ``p.startswith('x')`` and the number of ``p < 10`` (a boundary): each
    value takes a branch a model's guess may miss (the constant seeding of search-based test
    generators). Strings, bytes and numbers only.
    """
    containers: dict[str, list[ast.expr]] = {}
    for statement in tree.body:
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and isinstance(statement.value, (ast.Tuple, ast.List, ast.Set, ast.Dict))):
            containers[statement.targets[0].id] = _literals(statement.value, {})
    found: list[str] = []

    def add(candidates: list[ast.expr]) -> None:
        for candidate in candidates:
            if (isinstance(candidate, ast.Constant) and type(candidate.value) in (str, bytes, int, float)
                    and repr(candidate.value) not in found and len(repr(candidate.value)) <= 40):
                found.append(repr(candidate.value))

    for node in ast.walk(function):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for index, op in enumerate(node.ops):
                left, right = sides[index], sides[index + 1]
                if isinstance(op, (ast.Lt, ast.Gt, ast.LtE, ast.GtE)):
                    # A boundary the code compares against: a number on the other side.
                    if isinstance(left, ast.Name) and left.id == name and is_number(right):
                        add([right])
                    elif isinstance(right, ast.Name) and right.id == name and is_number(left):
                        add([left])
                    continue
                if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                    continue
                if isinstance(left, ast.Name) and left.id == name:
                    add(_literals(right, containers))
                elif isinstance(right, ast.Name) and right.id == name and isinstance(op, (ast.Eq, ast.NotEq)):
                    add([left])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith") and isinstance(node.func.value, ast.Name)
              and node.func.value.id == name and node.args):
            add(_literals(node.args[0], containers))
    return found[:SEEDS]
