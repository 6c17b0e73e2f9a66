"""What the code of a module under test says about its functions' parameters.

Where a function is defined (aliases included), what kind of value a parameter holds (the code's
evidence, else its name) and which classes the code checks it against (the literals it compares
it with are in ``constants.py``). Guided generation binds parameters with these; the repairs
give a rejected argument a value of its kind with them.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable

from symergion.verify.objects import (
    IMPORTED,
    INSTANCE,
    annotated_class,
    buildable_classes,
    imported_class,
    member_votes,
)


def is_number(node: ast.AST) -> bool:
    """Return whether a node is a number literal (not a bool)."""
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def function_aliases(tree: ast.Module) -> dict[str, str]:
    """Return the module-level names bound to a function of the file: ``getpass = unix_getpass``.

    Assignments in a module-level ``if`` or ``try`` count (a platform's choice); of several, the
    first one in the source is taken, as a reader would.
    """
    functions = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    found: dict[str, str] = {}

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Name)
                    and node.value.id in functions):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id != node.value.id:
                        found.setdefault(target.id, node.value.id)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)

    visit(tree.body)
    return found


def definition(tree: ast.Module, name: str, owner: str = ""
               ) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """Return the top-level function ``name`` (or the one a module-level alias ``name`` names), or
    the method ``name`` of the top-level class ``owner``."""
    body: list[ast.stmt] = tree.body
    if owner:
        cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner), None)
        body = cls.body if cls is not None else []
    functions = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    found = next((n for n in functions if n.name == name), None)
    if found is None and not owner:
        named = function_aliases(tree).get(name)
        found = next((n for n in functions if n.name == named), None)
    return found


# What a value of each kind starts with: the method writes it, the model completes the rest.
OPENING = {"str": "'", "bytes": "b'", "list": "[", "strlist": "['", "dict": "{", "tuple": "("}


_ANNOTATIONS = {"str": "str", "bytes": "bytes", "list": "list", "List": "list", "Sequence": "list",
                "Iterable": "list", "dict": "dict", "Dict": "dict", "Mapping": "dict", "tuple": "tuple",
                "Tuple": "tuple"}


_METHODS = {
    "str": set(dir(str)) - set(dir(list)) - set(dir(dict)) - {"decode"},
    "bytes": {"decode"},
    "list": set(dir(list)) - set(dir(str)) - set(dir(dict)),
    "dict": set(dir(dict)) - set(dir(str)) - set(dir(list)),
}


_STRING_CALLS = ("os.path.", "os.fspath", "open", "re.", "fnmatch.", "posixpath.", "ntpath.")


# Calls that need their argument to name a file or a folder that exists: a made-up name only
# takes the error path. Such a parameter is bound to the test's fixture (``FIXTURE``).
_FILE_CALLS = frozenset({"open", "io.open", "os.open", "os.stat", "os.lstat", "os.path.getsize",
                         "os.path.getmtime", "os.path.isfile", "tokenize.open", "codecs.open"})


_FOLDER_CALLS = frozenset({"os.listdir", "os.scandir", "os.walk", "os.path.isdir", "glob.glob"})


# What a parameter's name says it holds, when the code gives no evidence (``name_kind``).
_NAMED = {
    "path": {"file", "filename", "fname", "filepath", "path", "pathname", "fullname", "infile",
             "outfile", "in_file", "out_file", "src", "dst", "source_path"},
    "folder": {"dir", "directory", "dirname", "dirpath", "folder", "root", "topdir", "basedir"},
    "str": {"s", "text", "string", "name", "line", "word", "prefix", "suffix", "pattern", "pat",
            "sep", "title", "label", "mode", "encoding", "errors", "msg", "message", "url", "host",
            "char", "chars", "fmt", "format", "template", "modname", "attr", "attribute",
            "identifier", "token", "tag"},
    "bytes": {"data", "buf", "buffer", "payload", "blob", "raw", "octets", "bytes_data"},
    "list": {"items", "seq", "sequence", "lst", "values", "args", "argv", "lines", "names",
             "elements", "iterable", "parts", "paths", "files", "words", "rows"},
    "dict": {"mapping", "kwargs", "env", "environ", "options", "opts", "attrs", "params",
             "headers", "namespace", "globals", "locals", "dict"},
    "callable": {"func", "function", "callback", "fn", "factory", "hook", "handler", "predicate",
                 "callable"},
}


_READS = frozenset({"read", "readline", "readlines", "readinto", "seek", "tell"})


# Attributes only a class has; a function has a ``__name__`` and ``__qualname__`` too, which
# count for less (``_class_evidence``).
_CLASS_ATTRIBUTES = frozenset({"__mro__", "__bases__", "__subclasses__"})
_NAME_ATTRIBUTES = frozenset({"__name__", "__qualname__"})


_WRITES = frozenset({"write", "writelines", "flush"})


def name_kind(name: str) -> str:
    """Guess what a parameter holds from its name alone (``path``, ``folder``, ``str``, ...) or "".

    ``path`` and ``folder`` are an existing file and folder (the fixture's); a name that ends like
    one (``srcfile``, ``config_path``, ``cachedir``, ``module_name``) counts as it.
    """
    lowered = name.lower().rstrip("_")
    for kind, names in _NAMED.items():
        if lowered in names:
            return kind
    for kind, endings in (("path", ("file", "filename", "_path", "path")), ("folder", ("dir", "_folder")),
                          ("str", ("name", "_str", "_text", "_string", "_prefix", "_suffix")),
                          ("bytes", ("_bytes", "_data")), ("list", ("_list",)), ("dict", ("_dict", "_map")),
                          ("callable", ("_func", "function", "_callback", "_hook", "_handler", "_factory"))):
        if lowered.endswith(endings) and len(lowered) > 3:
            return kind
    return ""


def value_kind(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> str:
    """Return what a parameter holds: the code's evidence (``parameter_kind``), else its name's.

    A name that says the value is one the method writes itself wins over the class its
    annotation imports: a file or folder that exists (``path: Path``), a callable
    (``func: AnyCallable``, where an imported type alias is no class to build).
    """
    kind = parameter_kind(tree, function, name)
    named = name_kind(name)
    if not kind or (kind.startswith(IMPORTED) and named in ("path", "folder", "callable")):
        return named
    return kind


def _kind_votes(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef,
                is_param: Callable[[ast.AST], bool], depth: int) -> dict[str, int]:
    """Return the votes of ``parameter_kind``'s evidence for what ``is_param`` matches in a function."""
    votes: dict[str, int] = {}

    def vote(kind: str, weight: int = 1) -> None:
        votes[kind] = votes.get(kind, 0) + weight

    # Names a loop binds to the parameter's items: ``for arg in args``.
    items = {n.target.id for n in ast.walk(function) if isinstance(n, (ast.For, ast.comprehension))
             and is_param(n.iter) and isinstance(n.target, ast.Name)}

    def is_item(node: ast.AST) -> bool:
        """An item of the parameter: ``args[0]``, or a loop's name for one."""
        if isinstance(node, ast.Subscript):
            return is_param(node.value) and not isinstance(node.slice, ast.Slice)
        return isinstance(node, ast.Name) and node.id in items

    indexed = False
    for node in ast.walk(function):
        if weight := _class_evidence(tree, node, is_param):
            vote("class", weight)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and is_param(func.value):
                for kind, methods in _METHODS.items():
                    if func.attr in methods:
                        vote(kind, 2)
            if isinstance(func, ast.Attribute) and is_item(func.value) and func.attr in _METHODS["str"]:
                vote("strlist", 2)  # ``args[0].startswith('-')``: a list of strings
            dotted = ast.unparse(func)
            positions = [i for i, a in enumerate(node.args) if is_param(a)]
            if is_param(func) or (dotted == "callable" and positions == [0]):
                vote("callable", 3)  # called: no literal would do
            elif dotted == "isinstance" and positions == [0] and len(node.args) == 2:
                kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                for checked in kinds:
                    if isinstance(checked, ast.Name) and checked.id in OPENING:
                        vote(checked.id)
            elif positions and dotted in _FILE_CALLS:
                vote("path", 3)  # it must exist: more than a string
            elif positions and dotted in _FOLDER_CALLS:
                vote("folder", 3)
            elif positions and dotted.split(".")[-1] == "BytesIO":
                vote("bytes", 2)
            elif positions and (dotted.split(".")[-1] in ("open", "StringIO")
                                or dotted.startswith(_STRING_CALLS)):
                vote("str", 2)
            elif depth > 0 and (passed := passed_to(tree, node, is_param)) is not None:
                kind = parameter_kind(tree, *passed, depth - 1)
                if kind:
                    vote(kind, 2)
        elif isinstance(node, ast.Attribute) and is_param(node.value) and node.attr in _READS | _WRITES:
            vote("reader" if node.attr in _READS else "writer", 3)  # a file object: a method called, passed
        elif isinstance(node, (ast.For, ast.comprehension)) and is_param(node.iter):
            vote("list")
        elif isinstance(node, ast.Subscript) and is_param(node.value):
            indexed = True
        elif isinstance(node, (ast.Compare, ast.BinOp)):
            sides = ([node.left, *node.comparators] if isinstance(node, ast.Compare)
                     else [node.left, node.right])
            if any(is_param(side) for side in sides):
                for side in sides:
                    if isinstance(side, ast.Constant) and isinstance(side.value, (str, bytes)):
                        vote("str" if isinstance(side.value, str) else "bytes")
            elif isinstance(node, ast.Compare) and any(is_item(side) for side in sides) and any(
                    isinstance(side, ast.Constant) and isinstance(side.value, str) for side in sides):
                vote("strlist", 2)  # ``args[0] == "--"``: more than iterating it says
    if indexed:
        vote("list")  # once however often: a string is indexed too, and any string evidence wins
    return votes


def _class_evidence(tree: ast.Module, node: ast.AST, is_param: Callable[[ast.AST], bool]) -> int:
    """Return how strongly a node says the parameter is a class, or 0.

    ``issubclass(it, ...)``, ``isinstance(x, it)``, ``except it:``, ``it is SyntaxError`` (a class
    a test can name) and reading ``__mro__``, ``__bases__`` or ``__subclasses__`` say so; reading
    ``__name__`` or ``__qualname__`` less, as a function has them too.
    """
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        arguments = node.args
        if node.func.id == "issubclass" and arguments and is_param(arguments[0]):
            return 3
        if node.func.id == "isinstance" and len(arguments) == 2 and is_param(arguments[1]):
            return 3
    elif isinstance(node, ast.Attribute) and is_param(node.value):
        return 3 if node.attr in _CLASS_ATTRIBUTES else 2 if node.attr in _NAME_ATTRIBUTES else 0
    elif isinstance(node, ast.ExceptHandler) and node.type is not None:
        caught = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        return 3 if any(is_param(kind) for kind in caught) else 0
    elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
        sides = [node.left, *node.comparators]
        if any(is_param(side) for side in sides) and any(_names_class(tree, side) for side in sides):
            return 3
    return 0


def passed_to(tree: ast.Module, call: ast.Call, is_param: Callable[[ast.AST], bool]
              ) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef, str] | None:
    """Return the module's own function a call passes what ``is_param`` matches to, and its
    parameter there: ``helper(x)`` or ``helper(data=x)``, or a class of the module built with it
    (its ``__init__``, past ``self``). None when the call is to anything else."""
    if not isinstance(call.func, ast.Name):
        return None
    callee = definition(tree, call.func.id)
    skip = 0
    if callee is None:
        callee, skip = definition(tree, "__init__", call.func.id), 1
    if callee is None:
        return None
    positional = [*callee.args.posonlyargs, *callee.args.args][skip:]
    for index, argument in enumerate(call.args):
        if isinstance(argument, ast.Starred):
            return None  # the positions after it are unknown
        if is_param(argument):
            return (callee, positional[index].arg) if index < len(positional) else None
    named = {a.arg for a in [*callee.args.args, *callee.args.kwonlyargs]}
    for keyword in call.keywords:
        if keyword.arg in named and is_param(keyword.value):
            return callee, keyword.arg
    return None


def _owner(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.ClassDef | None:
    """Return the top-level class a function is a method of, or None."""
    return next((n for n in tree.body if isinstance(n, ast.ClassDef) and function in n.body), None)


def _kept_as(function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> list[str]:
    """Return the attributes a method stores a parameter in as it is: ``self.left = a``."""
    return [target.attr for node in ast.walk(function) if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Name) and node.value.id == name
            for target in node.targets if isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name) and target.value.id == "self"]


def parameter_kind(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str,
                   depth: int = 2) -> str:
    """Guess what a parameter holds: ``str``, ``bytes``, ``list``, ``strlist`` (of strings),
    ``dict``, ``tuple``, ``path``, ``folder``, ``callable``, ``class``, ``text reader``,
    ``binary writer``, ``instance Reader`` (an object of one of the module's classes:
    ``objects.py``), ``imported argparse.Namespace`` (a class the module imports, named by the
    annotation of a parameter the code gives no other evidence for), ..., or "".

    The evidence is generic: its annotation; the methods called on it (``.startswith`` is a
    string's, ``.append`` a list's, ``.decode`` bytes'); ``isinstance`` checks; iterating or
    indexing it (a list, of strings when an item gets a string's method or is compared with a
    string: ``args[0].startswith('-')``); a comparison with or addition of a string; passing
    it to ``os.path``, ``re`` or ``io.StringIO`` (a string) or ``io.BytesIO`` (bytes); passing
    it to ``open``, ``os.stat`` and the like (an existing file: ``path``) or ``os.listdir``
    (``folder``); and (``depth`` levels deep) what the module's own function or class it is
    passed to (by position or keyword) does with it. Calling it, or ``callable(it)``, makes it
    a ``callable``; reading its ``__name__``, ``__mro__`` or ``__bases__``, ``issubclass(it, ...)``,
    ``isinstance(x, it)``, ``except it:`` or ``it is SyntaxError`` (a class the test can name)
    make it a ``class``; calling ``.read()``, ``.readline()``, ``.seek()`` on it a reader,
    ``.write()`` a writer, of bytes when the function has a bytes literal. A constructor's
    parameter that it keeps as an attribute (``self.left = a``) counts what the class's other
    methods do with the attribute.
    """
    argument = next((a for a in [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]
                     if a.arg == name), None)
    if argument is not None and argument.annotation is not None:
        annotation = argument.annotation
        base = annotation.value if isinstance(annotation, ast.Subscript) else annotation
        label = (base.id if isinstance(base, ast.Name)
                 else base.attr if isinstance(base, ast.Attribute) else "")
        if label in _ANNOTATIONS:
            return _ANNOTATIONS[label]
    classes = buildable_classes(tree)
    if argument is not None and (named := annotated_class(argument.annotation, classes)):
        return INSTANCE + named

    def is_param(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == name

    votes = _kind_votes(tree, function, is_param, depth)
    for cls, count in member_votes(function, is_param, classes).items():
        votes[INSTANCE + cls] = votes.get(INSTANCE + cls, 0) + 3 * count  # ``reader.peek(1)``
    owner = _owner(tree, function)
    if owner is not None and function.name == "__init__":
        # A constructor that keeps the parameter (``self.left = a``): what the other methods do
        # with ``self.left`` says what it holds.
        for kept in _kept_as(function, name):
            def is_kept(node: ast.AST, attribute: str = kept) -> bool:
                return (isinstance(node, ast.Attribute) and node.attr == attribute
                        and isinstance(node.value, ast.Name) and node.value.id == "self")
            for method in owner.body:
                if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) and method is not function:
                    for kind, weight in _kind_votes(tree, method, is_kept, depth).items():
                        votes[kind] = votes.get(kind, 0) + weight
    if not votes:
        # No evidence from the code: a class the annotation names that the module imports.
        imported = imported_class(tree, argument.annotation) if argument is not None else ""
        return IMPORTED + imported if imported else ""
    kind = max(votes, key=lambda kind: votes[kind])
    if kind == "str" and ("path" in votes or "folder" in votes):
        # A name that must exist is a string too: joining or formatting it says nothing against.
        kind = max(("path", "folder"), key=lambda located: votes.get(located, 0))
    if kind in ("reader", "writer"):
        # Bytes literals in the function say its stream holds bytes (``if c in b' \t'``).
        binary = any(isinstance(n, ast.Constant) and isinstance(n.value, bytes) for n in ast.walk(function))
        kind = f"{'binary' if binary else 'text'} {kind}"
    return kind


_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)


def numeric_parameter(function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
    """Return whether the code does arithmetic with a parameter or orders it against a number."""
    def is_param(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == name

    for node in ast.walk(function):
        if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
            if ((is_param(node.left) and is_number(node.right))
                    or (is_param(node.right) and is_number(node.left))):
                return True
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.Lt, ast.Gt, ast.LtE, ast.GtE))
                                                   for op in node.ops):
            sides = [node.left, *node.comparators]
            if any(is_param(side) for side in sides) and any(is_number(side) for side in sides):
                return True
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("range", "abs", "round") and any(is_param(a) for a in node.args)):
            return True
    return False


SEEDS = 4  # constants per parameter, at most: one for each variant round after the greedy one


def _names_class(tree: ast.Module, node: ast.AST) -> bool:
    """Return whether a node names a class a test can name too: a built-in class (an exception
    among them) or a top-level class of the module."""
    if not isinstance(node, ast.Name):
        return False
    if isinstance(getattr(builtins, node.id, None), type):
        return True
    return any(isinstance(n, ast.ClassDef) and n.name == node.id for n in tree.body)


def class_values(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str,
                 alias: str = "") -> list[str]:
    """Return the classes the code checks a parameter against, in source order (``SEEDS`` at most).

    ``p is SyntaxError``, ``p in (KeyError, IndexError)``, ``issubclass(p, Base)``: each takes a
    branch of the code. A built-in class is written by its name; the module's own class through
    ``alias`` (the name the test imported the module as), and left out without one.
    """
    found: list[str] = []

    def add(node: ast.AST) -> None:
        candidates = node.elts if isinstance(node, ast.Tuple) else [node]
        for candidate in candidates:
            if not _names_class(tree, candidate):
                continue
            assert isinstance(candidate, ast.Name)
            if isinstance(getattr(builtins, candidate.id, None), type):
                written = candidate.id
            elif alias:
                written = f"{alias}.{candidate.id}"
            else:
                continue
            if written not in found:
                found.append(written)

    def is_param(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == name

    for node in ast.walk(function):
        if isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.Is, ast.IsNot, ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
            sides = [node.left, *node.comparators]
            if any(is_param(side) for side in sides):
                for side in sides:
                    if not is_param(side):
                        add(side)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "issubclass"
              and len(node.args) == 2 and is_param(node.args[0])):
            add(node.args[1])
    return found[:SEEDS]
