"""Engine test settings: the threads a real model runs on (the machine has two cores)."""

from __future__ import annotations

THREADS = 2
