"""A few-shot prompt for the TestCase template: one small module and a good test file for it.

A small base model copies what it sees. Placed before the module under test, a worked example
(a module, then a test file that imports it and asserts concrete values of its functions) shows
the shape of a useful answer; a code starter that imports the module under test and opens a
TestCase class makes the model continue in that shape instead of starting from nothing.

Both are plain data and functions so a prompt builder can use them for the built-in template
(or a template that opts in) and leave a config in the original format as it is:

- ``few_shot_files(source, destination)`` -> the (path, text) pairs to put before the source;
- ``test_case_starter(source, destination)`` -> the code starter for the module under test;
- ``test_method_starter(source, destination, source_text)`` -> the same, going on into a first
  test that calls the module's first public function, so the model starts from a real name.
"""

from __future__ import annotations

import ast
from pathlib import PurePosixPath

from symergion.config.schema import DEFAULT_CONFIG
from symergion.verify.names import import_line, module_name, render_code_starter, test_class_name

__all__ = ["EXAMPLE_SOURCE", "few_shot_files", "import_line", "module_alias", "public_functions",
           "test_case_starter", "test_class_name", "test_method_starter"]

EXAMPLE_NAMES = ("temperature", "thermometer_units")

EXAMPLE_SOURCE = '''"""Convert and compare temperatures."""


def celsius_to_fahrenheit(celsius):
    """Return a temperature in degrees Fahrenheit."""
    return celsius * 9 / 5 + 32


def clamp(value, low, high):
    """Return value limited to the range low..high."""
    if value < low:
        return low
    if value > high:
        return high
    return value


def format_reading(value, unit="C"):
    """Return a reading as text, like '21.5 C'."""
    return f"{value:.1f} {unit}"


def parse_reading(text):
    """Return the value and unit of a reading like '21.5 C'."""
    value, unit = text.split()
    return float(value), unit


class Thermometer:
    """Collect readings and average them."""

    def __init__(self, unit="C"):
        self.unit = unit
        self.readings = []

    def record(self, value):
        self.readings.append(value)
        return len(self.readings)

    def mean(self):
        if not self.readings:
            raise ValueError("no readings")
        return sum(self.readings) / len(self.readings)
'''

# The test body of the example; its head is the same code starter the module under test gets,
# and its tests open like the openers of guided generation (symergion.verify.guide).
_EXAMPLE_TESTS = '''    def test_celsius_to_fahrenheit(self):
        celsius = 100
        result = {alias}.celsius_to_fahrenheit(celsius)
        self.assertEqual(result, 212.0)

    def test_clamp(self):
        value = 11
        low = 0
        high = 10
        result = {alias}.clamp(value, low, high)
        self.assertEqual(result, 10)

    def test_format_reading(self):
        value = 21.5
        result = {alias}.format_reading(value)
        self.assertEqual(result, '21.5 C')

    def test_parse_reading(self):
        text = '70.0 F'
        result = {alias}.parse_reading(text)
        self.assertEqual(result, (70.0, 'F'))

    def test_thermometer(self):
        thermometer = {alias}.Thermometer()
        self.assertIsInstance(thermometer, {alias}.Thermometer)

    def test_thermometer_record(self):
        thermometer = {alias}.Thermometer()
        value = 3
        result = thermometer.record(value)
        self.assertEqual(result, 1)

    def test_thermometer_mean(self):
        thermometer = {alias}.Thermometer()
        with self.assertRaises(ValueError):
            thermometer.mean()


if __name__ == "__main__":
    unittest.main()
'''


module_alias = module_name


def test_case_starter(source: str, destination: str) -> str:
    """Return a code starter that imports the module under test and opens its TestCase class.

    It is the built-in TestCase template's code starter, rendered for these paths.

    Args:
        source: the module under test, a repository path (``lib/x.py``).
        destination: the test file, a repository path.
    """
    return render_code_starter(DEFAULT_CONFIG["templates"]["TestCase"]["code_starter"], source, destination)


def public_functions(source_text: str) -> list[str]:
    """Return the module's public top-level functions, in source order ([] if it does not parse)."""
    try:
        tree = ast.parse(source_text)
    except SyntaxError:
        return []
    return [n.name for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and not n.name.startswith("_")]


def test_method_starter(source: str, destination: str, source_text: str) -> str:
    """Return the TestCase starter followed by a first test calling the first public function.

    Falls back to ``test_case_starter`` when the module has no public top-level function.
    """
    starter = test_case_starter(source, destination)
    functions = public_functions(source_text)
    if not functions:
        return starter
    name = functions[0]
    return starter + f"    def test_{name}(self):\n        self.assertEqual({module_alias(source)}.{name}("


def few_shot_files(source: str, destination: str) -> list[tuple[str, str]]:
    """Return the example module and its test file, laid out like the task's files.

    The example lives next to the source and its test next to the destination, so its import
    line has the same shape as the one the model is to write.
    """
    taken = {module_alias(source), module_alias(destination)}
    name = next(n for n in EXAMPLE_NAMES if n not in taken and f"test_{n}" not in taken)
    example_source = str(PurePosixPath(source).with_name(f"{name}.py"))
    example_test = str(PurePosixPath(destination).with_name(f"test_{name}.py"))
    tests = test_case_starter(example_source, example_test) + _EXAMPLE_TESTS.format(alias=name)
    return [(example_source, EXAMPLE_SOURCE), (example_test, tests)]
