"""Module names, placeholders and the import check."""

from __future__ import annotations

import pytest

from symergion.verify.names import command_values, fill, imports_module, module_of, render_code_starter


def test_module_of() -> None:
    assert module_of("utils/capture_output.py") == "utils.capture_output"
    assert module_of("test_x.py") == "test_x"
    assert module_of("pkg/__init__.py") == "pkg"


def test_code_starter_placeholders() -> None:
    starter = "import unittest\n\nfrom {module} import *\n"
    assert render_code_starter(starter, "utils/capture_output.py", "test_c.py") == (
        "import unittest\n\nfrom utils.capture_output import *\n")


def test_code_starter_without_placeholders_is_kept_byte_for_byte() -> None:
    original = "import unittest\nDATA = {'a': {1, 2}}\nprint(f'{DATA}')\n{unknown}\n"
    assert render_code_starter(original, "utils/x.py", "test_x.py") == original


def test_command_placeholders_name_destination_and_source() -> None:
    values = command_values("utils/x.py", "tests/test_x.py", python="/py")
    assert fill("{python} -m unittest {module}", values) == "/py -m unittest tests.test_x"
    assert fill("{destination} {destination_module} {source} {source_module} {other}", values) == (
        "tests/test_x.py tests.test_x utils/x.py utils.x {other}")


@pytest.mark.parametrize(("text", "expected"), [
    ("import utils.x\n", True),
    ("import utils.x as x\n", True),
    ("from utils.x import f\n", True),
    ("from utils import x\n", True),
    ("from utils.x.sub import f\n", True),
    ("def t():\n    from utils.x import f\n", True),
    ("from . import x\n", True),
    ("import utils\n", False),
    ("import utils.xy\n", False),
    ("from utils import y\n", False),
    ("import unittest\n", False),
    ("this is not python (\n", False),
])
def test_imports_module(text: str, expected: bool) -> None:
    assert imports_module(text, "utils.x", "utils/test_x.py") is expected


def test_built_in_starter_placeholders_import_the_module_and_name_its_test_class() -> None:
    from symergion.config.schema import DEFAULT_CONFIG
    from symergion.core.prompt import code_starter

    starter = DEFAULT_CONFIG["templates"]["TestCase"]["code_starter"]
    assert render_code_starter(starter, "utils/bit_ops.py", "tests/test_bit_ops.py") == (
        "import unittest\n\nfrom utils import bit_ops\n\n\nclass TestBitOps(unittest.TestCase):\n")
    assert render_code_starter("{import_module} as {module_name}\n", "calc.py", "test_calc.py") == (
        "import calc as calc\n")
    # The pass fills a task's starter from its note; a task without a source keeps it as written.
    params = {"source": "pkg/__init__.py", "destination": "test_pkg.py"}
    assert code_starter(starter, params).splitlines()[2] == "import pkg"
    assert code_starter(starter, {"destination": "notes.md"}) == starter
    assert code_starter("import unittest\n", params) == "import unittest\n"
