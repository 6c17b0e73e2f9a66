"""Results as trailers: written, read back, ranked; summary lines of foreign commands."""

from __future__ import annotations

from symergion.verify.result import TestOutcome, VerifyResult, parse_trailer, rank, summary_counts

TRACEBACK = ('Traceback (most recent call last):\n  File "test_x.py", line 9, in test_b\n'
             "    self.assertEqual(f(1), 2)\nAssertionError: 1 != 2\n")


def sample() -> VerifyResult:
    return VerifyResult(
        source="utils/x.py", passed=6, failed=2, errors=0, skipped=1,
        tests={
            "test_x.T.test_a": TestOutcome("passed"),
            "test_x.T.test_b": TestOutcome("failed", TRACEBACK),
            "test_x.T.test_c": TestOutcome("failed", "AssertionError: boom"),
            "test_x.T.test_d": TestOutcome("error", "NameError: x", flaky=True),
        },
        coverage=41.2, exercising=5, imports_source=True, seconds=1.26,
    )


def test_trailer_matches_the_documented_shape() -> None:
    assert sample().trailer() == (
        "6 passed, 2 failed, 0 errors, 1 skipped, 1 flaky; coverage 41% of utils/x.py; "
        "5 passing exercise utils/x.py; imports utils.x; 1.3s")


def test_message_round_trip() -> None:
    result = sample()
    message = "Add tests\n\nbody\n\n" + result.message_lines()
    assert "  FAIL test_x.T.test_b: AssertionError: 1 != 2 (test_x.py:9)" in message
    back = VerifyResult.from_message(message)
    assert back is not None
    assert (back.passed, back.failed, back.errors, back.skipped) == (6, 2, 0, 1)
    assert (back.coverage, back.exercising, back.imports_source, back.seconds) == (41.0, 5, True, 1.3)
    assert back.source == "utils/x.py"
    assert back.flaky == ("test_x.T.test_d",)
    assert back.tests["test_x.T.test_b"] == TestOutcome("failed", "AssertionError: 1 != 2 (test_x.py:9)")
    assert back.trailer() == result.trailer()
    assert VerifyResult.from_message("Add tests\n\nno trailer\n") is None


def test_flags_round_trip() -> None:
    result = VerifyResult(source="a.py", timed_out=True, exit_code=2, sandboxed=False,
                          load_error="SyntaxError: bad")
    back = VerifyResult.from_message(result.message_lines())
    assert back is not None
    assert (back.timed_out, back.exit_code, back.sandboxed, back.imports_source) == (True, 2, False, False)
    assert back.load_error == "SyntaxError: bad"
    assert "unsandboxed" in result.trailer() and not back.ok


def test_rank_prefers_passing_tests_that_exercise_the_source_then_coverage() -> None:
    many = parse_trailer("5 passed, 0 failed, 0 errors; coverage 30% of a.py; 5 passing exercise a.py; "
                         "imports a; 1.0s")
    covered = parse_trailer("5 passed, 3 failed, 0 errors; coverage 60% of a.py; 5 passing exercise a.py; "
                            "imports a; 1.0s")
    idle = parse_trailer("9 passed, 0 failed, 0 errors; coverage 10% of a.py; 0 passing exercise a.py; "
                         "imports a; 1.0s")
    no_import = parse_trailer("9 passed, 0 failed, 0 errors; does not import a; 1.0s")
    imports = parse_trailer("2 passed, 0 failed, 0 errors; imports a; 1.0s")
    order = rank([("idle", idle), ("many", many), ("covered", covered)])
    assert [name for name, _ in order] == ["covered", "many", "idle"]
    assert [name for name, _ in rank([("no_import", no_import), ("imports", imports)])] == [
        "imports", "no_import"]


def test_summary_counts_of_unittest_and_pytest() -> None:
    unittest_out = "....\n----\nRan 7 tests in 0.01s\n\nFAILED (failures=2, errors=1, skipped=1)\n"
    assert summary_counts(unittest_out) == {"passed": 3, "failed": 2, "errors": 1, "skipped": 1}
    assert summary_counts("Ran 3 tests in 0.0s\n\nOK\n") == {"passed": 3, "failed": 0, "errors": 0,
                                                             "skipped": 0}
    pytest_out = "===== 4 passed, 1 failed, 2 errors in 0.12s =====\n"
    assert summary_counts(pytest_out) == {"passed": 4, "failed": 1, "errors": 2, "skipped": 0}
    assert summary_counts("nothing here") is None
