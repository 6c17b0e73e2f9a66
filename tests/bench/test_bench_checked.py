"""The checked-sync rows of the sync benchmark: efficiency and the table (figures not asserted)."""

from __future__ import annotations

from symergion.bench.sync import efficiency, format_checked
from symergion.core.report import Spend


def test_efficiency_is_the_engine_time_at_reference_speeds_over_the_wall() -> None:
    spend = Spend(prompt_tokens=1200, decoded_tokens=300).as_dict()
    # 1200 / 600 + 300 / 60 = 2 + 5 = 7 seconds of engine work in 14 s of wall.
    assert efficiency(spend, 14.0, 600.0, 60.0) == 0.5
    assert efficiency(spend, 0.0, 600.0, 60.0) == 0.0


def test_the_table_shows_the_median_run_split() -> None:
    spend = Spend(wall_seconds=20.0, load_seconds=1.0, prompt_tokens=1500, reused_tokens=3000,
                  prompt_seconds=3.0, decoded_tokens=700, kept_tokens=400, decode_seconds=11.0,
                  verify_runs=12, verify_seconds=4.0, git_calls=40, git_seconds=0.5).as_dict()
    run = {"module": "lib/bisect.py", "lines": 110, "seconds": 21.0, "verify": "4 passed",
           "spend": spend, "prompt_speed": 600.0, "gen_speed": 60.0, "efficiency": 0.69}
    found = {"model": "m.gguf", "threads": 2, "repeats": 1,
             "rows": [{"module": "lib/bisect.py", "lines": 110, "seconds_median": 21.0,
                       "efficiency_median": 0.69, "median_run": run}]}
    lines = format_checked(found)
    row = next(line for line in lines if line.startswith("lib/bisect.py (110 lines)"))
    # wall, efficiency, load, prompt, decode, verify, git, other (20 - 19.5), start (21 - 20)
    assert row.split()[3:13] == ["21.0", "0.69", "1.0", "3.0", "11.0", "4.0", "0.5", "0.5", "1.0",
                                 "700/400"]
    assert any("1500 tokens evaluated, 3000 reused" in line for line in lines)
