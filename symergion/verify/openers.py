"""The targets of a guided test file: the module's public names, and how each one's test opens.

``targets`` picks the public functions, classes and methods a guided file writes a test for
(the largest first when there are more than the file may have), ``roundtrips`` the pairs of
functions that undo each other; ``bindings`` names the required parameters a test binds before
its call, ``openings`` and ``value_seeds`` say how their values start and what the variant rounds
bind them to, and ``method_opener`` and ``call_text`` write the lines that open a test.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from symergion.verify.constants import constant_values
from symergion.verify.params import (
    OPENING,
    SEEDS,
    class_values,
    definition,
    function_aliases,
    numeric_parameter,
    passed_to,
    value_kind,
)

# A test method's body is indented by eight spaces (class body four, method body eight).
BODY = " " * 8
DEFAULT_TARGETS = 12
_NOT_CALLED = ("property", "staticmethod", "classmethod")  # not called on an instance as a method
_RESERVED = frozenset({"self", "result"})  # names a test method uses itself


@dataclass(frozen=True)
class Target:
    """A public name of the module and the opener of the test that calls it."""

    name: str
    kind: str  # "function", "class", "method" (of ``owner``), or "roundtrip" (``inverse(name(x))``)
    opener: str
    owner: str = ""  # a method's class; its test starts with the line that built one
    # Required parameters, bound one line each before the call: (variable, argument as passed).
    binds: tuple[tuple[str, str], ...] | None = None  # None: the opener is the bare call
    inverse: str = ""  # a "roundtrip" target's second function, which undoes ``name``
    access: str = "call"  # "property": a method target read as an attribute, not called


def public_names(source_text: str) -> list[tuple[str, str]]:
    """Return the module's public functions and classes as (name, kind), in source order.

    A literal ``__all__`` decides what is public; without one, or when it names no function or
    class the file defines, names without a leading underscore are. Names defined only
    conditionally or imported are left out: a test of them
    tests another module. Returns [] when the source does not parse.
    """
    try:
        tree = ast.parse(source_text)
    except SyntaxError:
        return []
    exported: set[str] | None = None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                 for t in node.targets)):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                exported = set(value)
    defined = {node.name for node in tree.body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    aliases = function_aliases(tree)
    if exported is not None and not exported & (defined | set(aliases)):
        exported = None  # it lists only data or imported names: test what the file defines
    names: list[tuple[str, str]] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            public = node.name in exported if exported is not None else not node.name.startswith("_")
            if public and not any(n == node.name for n, _ in names):
                names.append((node.name, "class" if isinstance(node, ast.ClassDef) else "function"))
    for alias, function in aliases.items():
        # A name bound to a function at import time (``getpass = unix_getpass``): public when
        # ``__all__`` lists it, or, without one, when the function it names is private (the
        # alias is then the only way in).
        public = alias in exported if exported is not None else (
            not alias.startswith("_") and function.startswith("_"))
        if public and alias not in defined:
            names.append((alias, "function"))
    return names


def public_methods(source_text: str, class_name: str) -> list[str]:
    """Return the public methods a top-level class defines itself, in source order.

    Properties are read, not called; static and class methods are called too (on an instance,
    as on the class): ``public_members`` tells them apart.
    """
    return [name for name, how in public_members(source_text, class_name) if how != "property"]


def public_members(source_text: str, class_name: str) -> list[tuple[str, str]]:
    """Return the public members a top-level class defines itself as (name, how), in order.

    ``how`` is "method", "property" (read on an instance: its getter runs), "staticmethod"
    or "classmethod". A property's setter or deleter (``@x.setter``) is no member of its own.
    """
    try:
        tree = ast.parse(source_text)
    except SyntaxError:
        return []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            members: list[tuple[str, str]] = []
            for n in node.body:
                if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) or n.name.startswith("_"):
                    continue
                if any(isinstance(d, ast.Attribute) for d in n.decorator_list):
                    continue  # @x.setter, @x.deleter, @abc.abstractmethod: another object's decorator
                how = _decorated(n)
                if how not in ("method", "property", "staticmethod", "classmethod"):
                    continue
                if not any(name == n.name for name, _ in members):
                    members.append((n.name, how))
            return members
    return []


def _decorated(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """Return how a method is reached: "method", or the first of ``_NOT_CALLED`` it is decorated with.

    A decorator named alone (``@cache``) leaves a method a method; one that is called
    (``@functools.wraps(f)``, ``@retry(3)``) makes it "wrapped", which is left alone.
    """
    for decorator in function.decorator_list:
        if isinstance(decorator, ast.Name) and decorator.id in _NOT_CALLED:
            return decorator.id
        if isinstance(decorator, ast.Call):
            return "wrapped"
    return "method"


def _snake(name: str) -> str:
    """Return a class name in snake case: ``TopologicalSorter`` -> ``topological_sorter``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def class_variable(name: str, alias: str) -> str:
    """Return the variable a test keeps an instance of a class in (never the module's alias)."""
    variable = _snake(name)
    return variable if variable != alias else f"{variable}_object"


def required_parameters(function: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool = False,
                        tree: ast.Module | None = None) -> list[tuple[str, bool]]:
    """Return a function's parameters without a default as (name, keyword only), in order.

    ``*args`` and ``**kwargs`` are never required; a method's first parameter is its instance.
    With the module's ``tree``, the first parameter that defaults to None but holds a file, a
    folder or a stream (``parameter_kind``, else ``name_kind``) follows, passed by keyword: its
    default usually skips the code that does the work (``LZMAFile(filename=None)`` raises). So
    does each parameter whose None or empty default the code rejects (``rejects_missing``).
    """
    args = function.args
    positional = [*args.posonlyargs, *args.args][1 if method else 0:]
    defaults = len(args.defaults)
    required = [(a.arg, False) for a in positional[:len(positional) - defaults if defaults else None]]
    required += [(a.arg, True) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if tree is not None:
        every = [*args.posonlyargs, *args.args]
        optional = [*zip(every[len(every) - defaults:], args.defaults, strict=True),
                    *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                      if d is not None)]
        located = False
        for argument, default in optional:
            if argument in args.posonlyargs or not isinstance(default, ast.Constant):
                continue  # it cannot be passed by keyword, or its default is no placeholder
            if (default.value is None and not located
                    and value_kind(tree, function, argument.arg) in FIXTURE_VALUES):
                required.append((argument.arg, True))
                located = True
            elif not default.value and rejects_missing(tree, function, argument.arg):
                required.append((argument.arg, True))
    return required


def _takes_arguments(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Return whether a function has any parameter at all (``*args`` and ``**kwargs`` included)."""
    args = function.args
    return bool(args.posonlyargs or args.args or args.kwonlyargs or args.vararg or args.kwarg)


def bindings(function: ast.FunctionDef | ast.AsyncFunctionDef | None, alias: str, *, method: bool = False,
             taken: frozenset[str] = frozenset(), tree: ast.Module | None = None
             ) -> tuple[tuple[str, str], ...]:
    """Return the (variable, argument) pairs that bind and pass a function's required parameters.

    The variable is the parameter's name unless that would shadow the module, the instance or the
    result (then ``<name>_value``); a keyword-only parameter is passed as ``name=variable``.
    """
    if function is None:
        return ()
    pairs: list[tuple[str, str]] = []
    for name, keyword in required_parameters(function, method=method, tree=tree):
        variable = name if name not in _RESERVED | taken | {alias} else f"{name}_value"
        pairs.append((variable, f"{name}={variable}" if keyword else variable))
    return tuple(pairs)


# The values of a parameter that holds a file, a folder or a stream: the fixture's (``guide.FIXTURE``).
FIXTURE_VALUES = {"path": "self.path", "folder": "self.folder",
                  # A file object, opened on the copy or on a new file in the folder, closed
                  # after the test (``self.addCleanup``).
                  "text reader": "open(self.path)", "binary reader": "open(self.path, 'rb')",
                  "text writer": "open(self.folder + '/output', 'w')",
                  "binary writer": "open(self.folder + '/output', 'wb')"}
# Values the method writes itself, the model never asked: the fixture's, and a callable that
# takes anything (a small model's ``func = 1`` only raises TypeError when it is called).
WRITTEN = {**FIXTURE_VALUES, "callable": "lambda *args, **kwargs: None"}


def rejects_missing(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str,
                    depth: int = 2) -> bool:
    """Return whether a function raises when a parameter keeps a None or empty default.

    ``if p is None: raise ...`` or ``if not p: raise ...``, in the function or (``depth`` levels
    deep) in the module's own function or class it passes the parameter to: the parameter is
    required in practice (``hmac.new``'s ``digestmod``), so a test that leaves it out tests the
    error only.
    """
    def is_param(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == name

    for node in ast.walk(function):
        if isinstance(node, ast.If) and node.body and isinstance(node.body[0], ast.Raise):
            test = node.test
            if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and is_param(test.operand):
                return True
            if (isinstance(test, ast.Compare) and is_param(test.left) and len(test.ops) == 1
                    and isinstance(test.ops[0], ast.Is) and isinstance(test.comparators[0], ast.Constant)
                    and test.comparators[0].value is None):
                return True
        elif isinstance(node, ast.Call) and depth > 0:
            passed = passed_to(tree, node, is_param)
            if passed is not None and rejects_missing(tree, *passed, depth - 1):
                return True
    return False


def targets(source_text: str, alias: str, limit: int = DEFAULT_TARGETS, *, bind: bool = True) -> list[Target]:
    """Return up to ``limit`` targets: public functions, then each public class and its methods.

    With more than ``limit``, those with the most statements are kept (``_largest``).

    Functions come first because a call with literal arguments is what a small model gets
    right most often, and what a pinned expected value can check. A method's opener is
    completed when the class's own test has been written (``method_opener``). With ``bind``,
    a function with required parameters (or none at all), a class and a method get their
    parameters bound first (``Target.binds``); their opener is the method's first line only.
    """
    found = public_names(source_text)
    try:
        tree = ast.parse(source_text)
    except SyntaxError:
        return []
    result: list[Target] = []
    for name, _ in (n for n in found if n[1] == "function"):
        function = definition(tree, name)
        binds = bindings(function, alias, tree=tree) if bind else ()
        if binds or (bind and function is not None and not _takes_arguments(function)):
            # A function that takes no argument at all gets its call written too: left the bare
            # opener, the model passes one it made up (``getuser(1)``) and the call raises.
            result.append(Target(name, "function", f"    def test_{name}(self):\n", binds=binds))
            continue
        opener = f"    def test_{name}(self):\n{BODY}self.assertEqual({alias}.{name}("
        result.append(Target(name, "function", opener))
    for name, _ in (n for n in found if n[1] == "class"):
        variable = class_variable(name, alias)
        if bind:
            binds = bindings(definition(tree, "__init__", name), alias, method=True,
                             taken=frozenset({variable}), tree=tree)
            result.append(Target(name, "class", f"    def test_{variable}(self):\n", binds=binds))
        else:
            opener = f"    def test_{variable}(self):\n{BODY}{variable} = {alias}.{name}("
            result.append(Target(name, "class", opener))
        for member, how in public_members(source_text, name):
            if how == "property":
                # Read, not called: ``result = box.size`` runs its getter.
                result.append(Target(f"{name}.{member}", "method", "", owner=name,
                                     binds=() if bind else None, access="property"))
                continue
            function = definition(tree, member, name)
            passed = (bindings(function, alias, method=how != "staticmethod", taken=frozenset({variable}),
                               tree=tree) if bind else None)
            result.append(Target(f"{name}.{member}", "method", "", owner=name, binds=passed))
    return _largest(tree, result, limit)


def _statements(function: ast.FunctionDef | ast.AsyncFunctionDef | None) -> int:
    """Return how many statements a function's body has, nested ones included."""
    if function is None:
        return 0
    return sum(isinstance(node, ast.stmt) for node in ast.walk(function)) - 1


def _largest(tree: ast.Module, found: list[Target], limit: int) -> list[Target]:
    """Return ``limit`` of the targets, in their order: those with the most statements to run.

    Coverage is what the tests are for, so when there are more targets than tests, the larger
    functions go first (a method takes its class along, which its test builds on; a class
    weighs what its ``__init__`` runs). Of equals, the earlier one stays.
    """
    if len(found) <= limit:
        return found

    def weight(target: Target) -> int:
        if target.kind == "class":
            return _statements(definition(tree, "__init__", target.name))
        if target.kind == "method":
            return _statements(definition(tree, target.name.rsplit(".", 1)[-1], target.owner))
        return _statements(definition(tree, target.name))

    classes = {t.name: t for t in found if t.kind == "class"}
    kept: set[int] = set()
    for target in sorted(found, key=lambda t: -weight(t)):  # stable: source order among equals
        wanted = {id(target)}
        if target.kind == "method" and target.owner in classes:
            wanted.add(id(classes[target.owner]))
        if len(kept | wanted) <= limit:
            kept |= wanted
    return [t for t in found if id(t) in kept]


def method_opener(target: Target, construction: str, alias: str) -> str:
    """Return a method's opener: the class's constructing line, then an assertion calling the method."""
    variable = class_variable(target.owner, alias)
    method = target.name.rsplit(".", 1)[-1]
    head = f"    def test_{variable}_{method}(self):\n{construction}\n"
    if target.binds is not None:
        return head
    if target.access == "property":
        return head + f"{BODY}self.assertEqual({variable}.{method}, "
    return head + f"{BODY}self.assertEqual({variable}.{method}("


def call_text(target: Target, alias: str) -> str:
    """Return the call a bound target's test makes with its bound variables."""
    arguments = ", ".join(argument for _, argument in target.binds or ())
    if target.kind == "method":
        attribute = f"{class_variable(target.owner, alias)}.{target.name.rsplit('.', 1)[-1]}"
        return attribute if target.access == "property" else f"{attribute}({arguments})"
    if target.kind == "roundtrip":
        spread = "*" if len(target.binds or ()) > 1 else ""
        return f"{alias}.{target.inverse}({spread}{alias}.{target.name}({arguments}))"
    return f"{alias}.{target.name}({arguments})"


# Names of functions that undo each other; ``a_to_b`` and ``b_to_a``, ``to_x`` and ``from_x`` too.
_INVERSES = (("compress", "decompress"), ("encode", "decode"), ("dumps", "loads"), ("dump", "load"),
             ("encrypt", "decrypt"), ("serialize", "deserialize"), ("quote", "unquote"),
             ("escape", "unescape"), ("pack", "unpack"), ("wrap", "unwrap"))
ROUNDTRIPS = 3  # round-trip tests at most, besides the targets


def roundtrips(tree: ast.Module, found: list[Target]) -> list[Target]:
    """Return a round-trip test for each pair of public functions that undo each other.

    ``decompress(compress(data))`` must give ``data`` back: an oracle no model has to guess,
    and a call of the second function on a value it can take (the model's own value for it is
    usually one that raises). The first function's bound values are the model's (none that
    the method writes itself: a file, a stream, a callable); the second takes its result
    (spread when both take the same number of values, more than one). One direction per pair.
    """
    functions = {t.name: t for t in found if t.kind == "function" and t.binds
                 and not set(openings(tree, t)) & set(WRITTEN.values())}
    pairs: list[tuple[str, str]] = []
    for name in functions:
        inverses = [name.replace(a, b, 1) for a, b in _INVERSES if a in name]
        if (match := re.fullmatch(r"(\w+?)_to_(\w+)", name)) is not None:
            inverses.append(f"{match[2]}_to_{match[1]}")
        if name.startswith("to_"):
            inverses.append("from_" + name[3:])
        for inverse in inverses:
            known = {(name, inverse), (inverse, name)} & set(pairs)
            if inverse in functions and inverse != name and not known:
                pairs.append((name, inverse))
    result: list[Target] = []
    for name, inverse in pairs:
        first, second = functions[name], functions[inverse]
        assert first.binds is not None and second.binds is not None
        if len(second.binds) != 1 and len(second.binds) != len(first.binds):
            continue
        if len(second.binds) == 1 and len(first.binds) != 1:
            continue  # the first one's result is not all the second one takes
        opener = f"    def test_{name}_{inverse}(self):\n"
        result.append(Target(name, "roundtrip", opener, binds=first.binds, inverse=inverse))
    return result[:ROUNDTRIPS]


def bound_parameters(tree: ast.Module, target: Target
                     ) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef | None, list[str]]:
    """Return the function a target calls (a class's ``__init__``) and the parameters it binds."""
    owner = target.owner or (target.name if target.kind == "class" else "")
    name = "__init__" if target.kind == "class" else target.name.rsplit(".", 1)[-1]
    function = definition(tree, name, owner)
    if function is None or target.access == "property":
        return None, []
    instance = bool(owner) and _decorated(function) != "staticmethod"  # a first parameter to skip
    return function, [n for n, _ in required_parameters(function, method=instance, tree=tree)]


def value_kinds(tree: ast.Module, target: Target, hint: bool = True) -> list[str]:
    """Return what each bound value of a target holds: the code's evidence, else its name's, or ""."""
    function, names = bound_parameters(tree, target)
    if not hint or function is None:
        return [""] * len(target.binds or ())
    return [value_kind(tree, function, parameter) for parameter in names]


def openings(tree: ast.Module, target: Target, hint: bool = True) -> list[str]:
    """Return how each bound value of a target starts: its kind's opening, a value the method
    writes itself (the fixture's file or folder, a callable), or ""."""
    return [WRITTEN.get(kind) or OPENING.get(kind, "") for kind in value_kinds(tree, target, hint)]


# The edge cases of a kind: what code so often branches on (``if not data``, ``if n < 0``).
_EDGES = {"str": ("''",), "bytes": ("b''",), "list": ("[]",), "strlist": ("[]",), "dict": ("{}",),
          "tuple": ("()",), "number": ("0", "-1"), "class": ("object",)}


def seeds(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> list[str]:
    """Return the values the variant rounds bind a parameter to, without the model (``SEEDS`` at most).

    The constants the code compares it with (``constant_values``: its own branches), then the
    edge cases of its kind (empty, zero, negative; for a class, the built-in classes the code
    checks it against, then ``object``): each round's test has other inputs than the greedy
    one's and each other's, not the same literal again.
    """
    constants = constant_values(tree, function, name)
    kind = value_kind(tree, function, name) or ("number" if numeric_parameter(function, name) else "")
    if kind == "class":  # the built-in classes it is checked against: ``exc_type is SyntaxError``
        constants = [*constants, *class_values(tree, function, name)]
    return [*constants, *(e for e in _EDGES.get(kind, ()) if e not in constants)][:SEEDS]


def value_seeds(tree: ast.Module, target: Target) -> list[list[str]]:
    """Return, for each bound value of a target, its variant rounds' values (``seeds``)."""
    function, names = bound_parameters(tree, target)
    if function is None:
        return [[] for _ in target.binds or ()]
    return [seeds(tree, function, parameter) for parameter in names]
