"""Guided generation of a TestCase file: one short test per public name of the module under test.

Left to itself, a small model writes one test and stops, or repeats one assertion until its
budget runs out; either way most of the module is never called. Guiding it is cheap: the file is
written in segments, and each segment starts from an opener the method writes itself, a test
method that already calls a public function (or constructs a public class) of the module::

    def test_rgb_to_hls(self):
        self.assertEqual(colorsys.rgb_to_hls(

A function with required parameters gets a test that binds each of them to a local variable of
the same name first, one line each, the model completing only the value; the method then writes
the call with those names and opens the assertion on its result::

    def test_fnmatch(self):
        name = 'a.txt'
        pat = '*.txt'
        result = fnmatch.fnmatch(name, pat)
        self.assertEqual(result, True)

A parameter's name says what it holds (``pathname``, ``pattern``, ``data``, ``n``), so the model
picks values of the right type more often than inside a bare call, and every name the call uses
is defined. A class is constructed the same way, and its methods are called on that instance.

The model only completes the arguments, an expected value and perhaps a few more lines. A
segment ends when the model leaves the method (a line indented less than its body), after
``max_lines`` lines, or at its token share; the longest prefix of it that keeps the file valid
Python is kept (or the whole test is left out). Expected values the model gets wrong are the
repairs' work (``symergion.verify.repair`` pins them to what the code returned), failing calls
the prune's.

Each segment's prompt is the previous one plus the text kept so far, so an engine that reuses a
KV-cache prefix evaluates only the new tokens. A test is written as a generator of the prompts
it asks the model to complete (``symergion.verify.drive``): the greedy round serves them one
after another, a variant round, given ``sample_many``, serves all its targets' tests together
in one batch per step, each from the file as it stood at the round's start.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from symergion.verify.drive import Ask, GenerateMany, Writing, capped, run_one, run_together
from symergion.verify.drive import Generate as Generate  # the guide's callers name it here
from symergion.verify.finish import Finisher
from symergion.verify.fixture import instance_target, needs_fixture, with_fixture
from symergion.verify.objects import IMPORTED, INSTANCE, module_values
from symergion.verify.openers import (
    BODY,
    DEFAULT_TARGETS,
    FIXTURE_VALUES,
    WRITTEN,
    Target,
    bound_parameters,
    call_text,
    class_variable,
    method_opener,
    openings,
    roundtrips,
    targets,
    value_kinds,
    value_seeds,
)
from symergion.verify.segment import class_construction, keep_valid, segment_lines
from symergion.verify.syntax import top_level_names

MAIN_GUARD = '\n\nif __name__ == "__main__":\n    unittest.main()\n'
DEFAULT_SEGMENT_TOKENS = 80
DEFAULT_MAX_LINES = 3
DEFAULT_VALUE_TOKENS = 24  # one bound argument's value: a literal on one line
_BUILTINS = frozenset(dir(builtins))
# Part of the response cache key of a guided file: bump when the method writes other files.
GUIDE_VERSION = 8

# ``drive.Generate`` sampled with a seed (temperature above 0): another candidate for the same opener.
Sample = Callable[[str, int, int, int], Iterable[str]]


@dataclass
class Guided:
    """The file written, what it cost, and which targets got a test."""

    text: str
    tokens: int = 0
    tested: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # targets whose segment did not parse
    variants: list[str] = field(default_factory=list)  # targets that got a sampled test besides
    kept_tokens: int = 0  # the tokens of the tests the file holds
    cut: bool = False  # the time ran out before every test was written
    discarded: dict[str, int] = field(default_factory=dict)  # the others' tokens, by why

    def discard(self, reason: str, tokens: int) -> None:
        """Count generated tokens no test of the file holds."""
        if tokens > 0:
            self.discarded[reason] = self.discarded.get(reason, 0) + tokens


# What closes each opening (``params.OPENING``) when the model did not.
_CLOSING = {"'": "'", "b'": "'", "[": "]", "['": "']", "{": "}", "(": ")"}
def value_ok(value: str, defined: Iterable[str]) -> bool:
    """Return whether a bound value is one expression that uses only builtins and ``defined`` names."""
    try:
        tree = ast.parse(value.strip(), mode="eval")
    except SyntaxError:
        return False
    allowed = _BUILTINS | set(defined)
    return bool(value.strip()) and all(n.id in allowed for n in ast.walk(tree) if isinstance(n, ast.Name))


def _complete_line(prompt: str, max_tokens: int, stable_prefix: int) -> Writing[tuple[str, int]]:
    """Return the model's completion of ``prompt`` up to the end of its line, and the tokens it took."""
    generated, count = "", 0
    piece = yield Ask(prompt, max_tokens, stable_prefix)
    while piece is not None:
        count += 1
        generated += piece
        if "\n" in generated:
            break
        piece = yield None
    return generated.split("\n", 1)[0], count


def _assigned(lines: str) -> set[str]:
    """Return the names the simple assignments of some test lines bind."""
    return set(re.findall(rf"^{BODY}(\w+) = ", lines, flags=re.MULTILINE))


@dataclass(frozen=True)
class GuidedTask:
    """What a guided file is written for: the prompt it continues and the module it tests.

    Attributes:
        prompt_text: the rendered prompt, ending with ``code_starter``.
        code_starter: the file's opening (imports and the TestCase class line).
        source_text: the module under test's code (its public names).
        alias: how the test file refers to the module (``colorsys`` for ``from lib import colorsys``).
        destination: the test file's path (the finisher's language check).
    """

    prompt_text: str
    code_starter: str
    source_text: str
    alias: str
    destination: str


@dataclass(frozen=True)
class GuideOptions:
    """How a guided file is generated: its budgets, its rounds, and what the caller is told.

    Attributes:
        budget: the most tokens to generate for the whole file.
        limit: the most targets to write a test for.
        segment_tokens: the most tokens one test may take (its bound values included).
        max_lines: the most lines one test may have after its opener (the first line included).
        bind: bind required parameters to named variables before the call (see the module doc).
        value_tokens: the most tokens one bound value may take.
        hint: open a bound value the way a value of its parameter's kind starts (``'`` for a
            string, ``[`` for a list: ``parameter_kind``), so the model completes one of that kind.
        variants: tests per target: the greedy one, then ``variants - 1`` rounds over the targets
            with ``sample`` (seeds 1, 2, ...), each a test of its own (``test_f_2``) unless it
            repeats another test; the prune's ``redundant`` keeps those that add coverage.
        sample: sampled generation, ``(prompt, max_tokens, stable_prefix, seed) -> pieces``;
            without it only the greedy round runs.
        sample_many: sampled generation of several prompts together (``drive.GenerateMany``):
            with it, each variant round writes its targets' tests together, each from the file
            as the round found it (a variant does not see the round's earlier variants).
        room: the tokens a prompt leaves of the model's context; the file ends, with the tests
            written so far, before a test that might not fit (twice ``segment_tokens``).
        on_shared: told, whenever the file grows, the length of the prompt start (prompt and file
            so far) that every later prompt of this file begins with: an engine keeps its KV
            (``Engine.generate``'s ``marks``) instead of evaluating the file again per test.
        out_of_time: asked before each test; when it says so, the file ends with the tests
            written so far (``Guided.cut``).
        on_test: told after each test tried, kept or not: how many were tried, of how many
            the file may have (for an estimate of the time left).
    """

    budget: int
    limit: int = DEFAULT_TARGETS
    segment_tokens: int = DEFAULT_SEGMENT_TOKENS
    max_lines: int = DEFAULT_MAX_LINES
    bind: bool = True
    value_tokens: int = DEFAULT_VALUE_TOKENS
    hint: bool = True
    variants: int = 1
    sample: Sample | None = None
    sample_many: GenerateMany | None = None
    room: Callable[[str], int] | None = None
    on_shared: Callable[[int], None] | None = None
    out_of_time: Callable[[], bool] | None = None
    on_test: Callable[[int, int], None] | None = None


def guided_file(generate: Generate, task: GuidedTask, options: GuideOptions) -> Guided:
    """Write a test file one target at a time, within ``options.budget`` generated tokens.

    Args:
        generate: the engine's generation, ``(prompt, max_tokens, stable_prefix) -> pieces``.
        task: the prompt, the file's opening and the module under test.
        options: the budgets, the variant rounds, and the hooks the caller is told through.
    """
    if not task.prompt_text.endswith(task.code_starter):
        raise ValueError("the prompt must end with the code starter")
    return _Writer(generate, task, options).write()


class _Writer:
    """One guided file being written: the prompt's start, the file so far, and what each test did."""

    def __init__(self, generate: Generate, task: GuidedTask, options: GuideOptions) -> None:
        self.generate = generate
        self.task = task
        self.options = options
        self.base = task.prompt_text[: len(task.prompt_text) - len(task.code_starter)]
        self.known = frozenset(top_level_names(task.source_text))
        try:
            self.tree = ast.parse(task.source_text)
        except SyntaxError:
            self.tree = ast.Module(body=[], type_ignores=[])
        source, alias, bind = task.source_text, task.alias, options.bind
        self.chosen = targets(source, alias, options.limit, bind=bind)
        self.pairs = roundtrips(self.tree, targets(source, alias, len(source), bind=bind)) if bind else []
        fixture = options.hint and needs_fixture(self.tree, self.chosen)
        self.text = with_fixture(task.code_starter, alias) if fixture else task.code_starter
        self.result = Guided(self.text)
        self.built: dict[str, str] = {}  # class -> the lines of its test that constructed one
        self.bodies: set[str] = set()  # what each test does, without its name: a variant must differ
        self.full = False  # the context is full
        sampled = options.sample is not None or options.sample_many is not None
        self.rounds = max(1, options.variants) if sampled else 1
        self.planned = len(self.chosen) + len(self.pairs) + (self.rounds - 1) * len(self.chosen)
        self.tried = 0

    def write(self) -> Guided:
        """Write the greedy round's tests, then each variant round's, while budget and time last."""
        self.shared()
        for index in range(self.rounds):
            if index > 0 and self.options.sample_many is not None:
                self.together(index, self.options.sample_many)
                continue
            complete = self.generate if index == 0 else self.sampled(index)
            # Round trips are tested in the greedy round only: one value each.
            for target in self.chosen + self.pairs if index == 0 else self.chosen:
                if not self.attempt(target, index, complete):
                    break
        if not self.result.tested:
            self.text += "    pass\n"  # the class needs a body; a file without tests is the prune's to drop
        self.result.text = self.text.rstrip("\n") + "\n" + MAIN_GUARD
        return self.result

    def shared(self) -> None:
        """Tell the caller the length of the prompt start every later prompt begins with."""
        if self.options.on_shared is not None:
            self.options.on_shared(len(self.base) + len(self.text))

    def sampled(self, seed: int) -> Generate:
        """Return the generation of a variant round: sampled with the round's seed."""
        sample = self.options.sample
        assert sample is not None

        def complete(prompt: str, max_tokens: int, stable: int) -> Iterable[str]:
            return sample(prompt, max_tokens, stable, seed)
        return complete

    def attempt(self, target: Target, index: int, complete: Generate) -> bool:
        """Write one target's test in round ``index``; return False when the round ends before it."""
        share = min(self.options.segment_tokens, self.options.budget - self.result.tokens)
        go_on, ready = self.prepare(target, index, share, 1)
        if ready is not None:
            kept, used, constructed = run_one(complete, self.write_test(ready, share, index, frozenset()))
            self.keep(ready, index, kept, used, constructed)
        return go_on

    def together(self, index: int, sample_many: GenerateMany) -> None:
        """Write variant round ``index``'s tests together, each from the file at the round's start.

        Each test may take a test's share, as one written alone would; the round stops
        generating when the file's budget is spent (the tests in flight end where they are).
        The context must have room for all of them: the round takes the targets, in order,
        while it does.
        """
        share = min(self.options.segment_tokens, self.options.budget - self.result.tokens)
        ready: list[Target] = []
        for target in self.chosen:
            go_on, prepared = self.prepare(target, index, share, len(ready) + 1)
            if not go_on:
                break
            if prepared is not None:
                ready.append(prepared)
        writings = [self.write_test(target, share, index, frozenset()) for target in ready]
        within = capped(sample_many, self.options.budget - self.result.tokens)
        # Seeds of their own: round 1's tests take 1, 1 + rounds, ..., round 2's 2, 2 + rounds, ...
        written = run_together(within, writings, [index + self.rounds * k for k in range(len(writings))])
        for target, (kept, used, constructed) in zip(ready, written, strict=True):
            self.keep(target, index, kept, used, constructed)

    def prepare(self, target: Target, index: int, share: int, tests: int) -> tuple[bool, Target | None]:
        """Return whether round ``index`` goes on to ``target``, and the target with its opener.

        The target is None when it has no test this round (a method whose class was never
        built). ``tests`` is how many tests of the round the context must have room for.
        """
        options, result = self.options, self.result
        if share <= 0 or self.full or result.cut:
            return False, None
        if options.out_of_time is not None and options.out_of_time():
            result.cut = True  # the time budget is spent: keep the tests written so far
            return False, None
        room = options.room
        if room is not None and room(self.base + self.text) < 2 * options.segment_tokens * tests:
            self.full = tests == 1  # the file so far fills the context: keep it as it is
            return False, None
        if target.kind == "method":
            if target.owner not in self.built:
                if index == 0:
                    result.skipped.append(target.name)
                return True, None
            target = replace(target, opener=method_opener(target, self.built[target.owner], self.task.alias))
        if index > 0:  # test_f_2, test_f_3, ...
            renamed = target.opener.replace("(self):\n", f"_{index + 1}(self):\n", 1)
            target = replace(target, opener=renamed)
        return True, target

    def keep(self, target: Target, index: int, kept: str | None, used: int, constructed: str | None) -> None:
        """Count a test's tokens, and add it to the file unless it did not parse or repeats another."""
        result = self.result
        result.tokens += used
        self.tried += 1
        if self.options.on_test is not None:
            self.options.on_test(self.tried, self.planned)
        what = kept.split("\n", 1)[1] if kept is not None else ""
        label = f"{target.name}+{target.inverse}" if target.inverse else target.name
        if kept is None or what in self.bodies:
            if index == 0:
                result.skipped.append(label)
            result.discard("tests left out" if index == 0 else "variants left out", used)
            return
        result.kept_tokens += used
        self.bodies.add(what)
        self.text += kept + "\n"
        self.shared()
        (result.tested if index == 0 else result.variants).append(label)
        if constructed is not None and target.name not in self.built:
            self.built[target.name] = constructed

    def write_test(self, target: Target, share: int, round_: int, building: frozenset[str]
                   ) -> Writing[tuple[str | None, int, str | None]]:
        """Write one target's test after the file: (its text or None, tokens used, a class's construction).

        In variant round ``round_`` (1, 2, ...) a value the code compares with constants is the
        round's constant (``value_seeds``) while there is one, written without the model; a value
        the method writes in the greedy round (the fixture's, a callable) is the model's.
        """
        opener, tokens = target.opener, 0
        if target.binds is not None:
            bound, tokens = yield from self.bind(target, share, round_, building)
            if bound is None:
                return None, tokens, None  # no expression, or a name the test never defined
            opener, alias = bound, self.task.alias
            if target.kind == "roundtrip":
                values = [variable for variable, _ in target.binds]
                expected = values[0] if len(values) == 1 else f"({', '.join(values)})"
                return (f"{opener}{BODY}result = {call_text(target, alias)}\n"
                        f"{BODY}self.assertEqual(result, {expected})\n"), tokens, None
            if target.kind == "class":
                variable = class_variable(target.name, alias)
                built_line = f"{BODY}{variable} = {call_text(target, alias)}"
                written = (f"{opener}{built_line}\n"
                           f"{BODY}self.assertIsInstance({variable}, {alias}.{target.name})\n")
                return written, tokens, opener.split("\n", 1)[1] + built_line
            opener += f"{BODY}result = {call_text(target, alias)}\n{BODY}self.assertEqual(result, "
        kept, used = yield from self.complete_test(target, opener, share - tokens)
        construction = class_construction(kept) if kept is not None and target.kind == "class" else None
        return kept, tokens + used, construction

    def bind(self, target: Target, share: int, round_: int, building: frozenset[str]
             ) -> Writing[tuple[str | None, int]]:
        """Return a bound target's opener with each bound value written, and the tokens it took.

        A value the module passes the parameter itself (``objects.module_values``) is written
        without the model, one per round while there are; an object of one of the module's
        classes is built as the class's own test builds one (``instance``). The opener is None
        when the model's value is no expression, or uses a name the test never defined.
        ``building`` are the classes whose objects are being built around this value.
        """
        assert target.binds is not None
        opener, tokens = target.opener, 0
        hint, tree, alias = self.options.hint, self.tree, self.task.alias
        defined = {alias, *_assigned(opener)}
        seeds = value_seeds(tree, target) if hint and round_ else [[] for _ in target.binds]
        function, names = bound_parameters(tree, target)
        passed = ([module_values(tree, function, name) for name in names] if hint and function is not None
                  else [[] for _ in target.binds])
        for (variable, _), opening, constants, kind, own in zip(
                target.binds, openings(tree, target, hint), seeds, value_kinds(tree, target, hint), passed,
                strict=True):
            by_method = opening in WRITTEN.values()
            seeded = len(constants) >= round_ > 0
            if round_ < len(own):
                opener += f"{BODY}{variable} = {alias}.{own[round_]}\n"  # as the module passes it
                defined.add(variable)
                continue
            if kind.startswith(INSTANCE) and not seeded:
                taken = frozenset(defined | {v for v, _ in target.binds})
                built = yield from self.instance(kind[len(INSTANCE):], variable, opener, taken,
                                                 (share - tokens, round_), building)
                if built is not None:
                    lines, used = built
                    tokens += used
                    if lines is None:
                        return None, tokens
                    opener += lines
                    defined |= {variable, *_assigned(lines)}
                    continue
            if kind.startswith(IMPORTED) and round_ == 0:
                # A class the module imports, built with its defaults through the module; a
                # variant tries the model's own value, which stays when the class needs more.
                opener += f"{BODY}{variable} = {alias}.{kind[len(IMPORTED):]}()\n"
                defined.add(variable)
                continue
            if (by_method and round_ == 0) or seeded:
                value = opening if round_ == 0 else constants[round_ - 1]
                opener += f"{BODY}{variable} = {value}\n"  # the fixture's file, a callable, a constant
                if value.startswith("open("):
                    opener += f"{BODY}self.addCleanup({variable}.close)\n"
                defined.add(variable)
                continue
            if by_method:
                # The greedy test has the value that works; a variant tries the model's own, which
                # takes the branches that check it (a file name that is not there, no callable).
                opening = "'" if opening in (FIXTURE_VALUES["path"], FIXTURE_VALUES["folder"]) else ""
            prompt = self.base + self.text + opener + f"{BODY}{variable} = {opening}"
            value, used = yield from _complete_line(prompt, min(self.options.value_tokens, share - tokens),
                                                    len(self.base))
            value = opening + value
            tokens += used
            if opening and not value_ok(value, defined):
                value += _CLOSING[opening]  # a literal the model did not close within its share
            if not value_ok(value, defined):
                return None, tokens
            opener += f"{BODY}{variable} = {value.strip()}\n"
            defined.add(variable)
        return opener, tokens

    def instance(self, cls: str, variable: str, opener: str, taken: frozenset[str],
                 budget: tuple[int, int], building: frozenset[str]) -> Writing[tuple[str | None, int] | None]:
        """Build an object of one of the module's classes for a bound value, as the class's test does.

        Returns the lines that bind the constructor's parameters and call it (None when one of
        its values failed) and the tokens they took; None when an object of the class is being
        built already (a class that takes its own kind: the model writes the value).
        """
        if cls in building:
            return None
        share, round_ = budget
        target = instance_target(self.tree, cls, self.task.alias, opener, taken | {variable})
        lines, used = yield from self.bind(target, share, round_, building | {cls})
        if lines is None:
            return None, used
        return lines[len(opener):] + f"{BODY}{variable} = {call_text(target, self.task.alias)}\n", used

    def complete_test(self, target: Target, opener: str, share: int) -> Writing[tuple[str | None, int]]:
        """Let the model complete a test from its opener; return what of it parses, and the tokens."""
        head = self.text + opener
        max_lines, alias, known = self.options.max_lines, self.task.alias, self.known
        generated, tokens = "", 0
        if share > 0:
            finisher = Finisher(self.task.destination, self.task.code_starter)
            piece = yield Ask(self.base + head, share, len(self.base))
            while piece is not None:
                tokens += 1
                generated += piece
                _, ended = segment_lines(generated, max_lines, alias, known, opener)
                if ended or finisher.check(head + generated):
                    break
                piece = yield None
        lines, _ = segment_lines(generated, max_lines, alias, known, opener)
        kept = keep_valid(self.text, opener, lines)
        if kept is None and target.binds is not None:
            # The call is sound; an expected value the repairs pin is better than no test.
            kept = keep_valid(self.text, opener, ["None)"])
        return kept, tokens
