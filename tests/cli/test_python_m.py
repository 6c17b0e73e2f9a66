"""`python -m symergion`, as a user runs it (`symergion demo` is in tests/model/test_demo.py)."""

from __future__ import annotations

import subprocess
import sys


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "symergion", "--help"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0
    assert "ergon" in proc.stdout and "feedback" in proc.stdout
