"""How a model samples its tokens: the engine's input, apart from the rest of the config.

The engines import this module alone, so loading a model never pulls in the config's parsing.
"""

from __future__ import annotations

from dataclasses import dataclass

# The settings a checkpoint's ``sampling`` object may name, with the type each is read as.
SAMPLING_KEYS: dict[str, type[float] | type[int]] = {
    "temperature": float,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "repeat_penalty": float,
    "seed": int,
}


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; the defaults decode greedily, which makes responses reproducible."""

    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict[str, float | int]:
        """Return the settings as a plain dict (stable key order, for cache keys)."""
        return {k: getattr(self, k) for k in SAMPLING_KEYS}
