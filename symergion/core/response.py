"""A model's answer to one prompt: the finished file (or an earlier commit's), with its figures.

A ``Response`` travels from where it is made (the engine's result, the guided writer, an
earlier commit on the branch) to the commit that holds it. It is a dict only in the response
store: ``to_record`` and ``from_record`` are that boundary, and a record read back and written
again is the same record, so caches made before stay valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The keys of a stored record, in the order they are stored (a pickled dict keeps its order).
RECORD_KEYS = ("text", "tokens", "budget", "seconds", "stop", "trimmed_chars", "trimmed_lines",
               "parses", "kept_tokens", "discarded", "decode_seconds")
# What every record has; a record stored by an earlier version may lack the others (None here).
_REQUIRED = frozenset({"text", "tokens", "seconds", "stop", "trimmed_chars", "trimmed_lines"})


@dataclass(frozen=True)
class Response:
    """The finished file for a prompt, or the blob of an earlier commit's, and what it cost.

    Exactly one of ``text`` and ``blob`` is set: ``text`` is the file the model wrote ("" when
    nothing it wrote is a valid file); ``blob`` is the file an earlier commit on the branch
    holds for the same prompt, whose figures come from that commit's trailers.

    ``tokens`` are all the tokens decoded and ``seconds`` the whole generation; ``kept_tokens``
    are those of the finished file and ``decode_seconds`` the time spent decoding (None where
    the answer does not record them); ``discarded`` counts decoded tokens no file holds, by
    reason. ``cache`` says whether the answer was generated in this pass ("miss") or not, and
    ``cut`` why the time budget cut it short; ``hand`` names the hand commit whose file a
    reused ``blob`` is. None of these three is stored.
    """

    text: str | None = None
    blob: str | None = None
    tokens: int = 0
    seconds: float = 0.0
    stop: str = "eos"
    trimmed_chars: int = 0
    trimmed_lines: int = 0
    budget: int | None = None
    parses: bool | None = None
    kept_tokens: int | None = None
    discarded: Mapping[str, int] | None = None
    decode_seconds: float | None = None
    cache: str = "hit"
    cut: str = ""
    hand: str | None = None  # the hand commit whose file ``blob`` is (see ``Action.hand``)

    def __post_init__(self) -> None:
        if (self.text is None) == (self.blob is None):
            raise ValueError("a response holds either a file's text or an earlier commit's blob")

    @property
    def reused(self) -> bool:
        """Return whether the file is an earlier commit's (its blob), not text made now."""
        return self.blob is not None

    @property
    def has_file(self) -> bool:
        """Return whether there is a valid file to commit."""
        return self.blob is not None or bool(self.text)

    @property
    def generated(self) -> str:
        """Return the text the model wrote.

        Raises:
            ValueError: the response reuses an earlier commit's blob and holds no text.
        """
        if self.text is None:
            raise ValueError("a reused response holds a blob, not text")
        return self.text

    def to_record(self) -> dict[str, Any]:
        """Return the record the response store keeps (without ``cache`` and ``cut``).

        Raises:
            ValueError: the response reuses an earlier commit's file, which is never stored.
        """
        return {"text": self.generated, "tokens": self.tokens, "budget": self.budget,
                "seconds": self.seconds, "stop": self.stop, "trimmed_chars": self.trimmed_chars,
                "trimmed_lines": self.trimmed_lines, "parses": self.parses,
                "kept_tokens": self.kept_tokens,
                "discarded": dict(self.discarded) if self.discarded is not None else None,
                "decode_seconds": self.decode_seconds}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Response:
        """Return the response a stored record holds; it was made before, so it is a hit.

        Raises:
            ValueError: the record has a key a response does not know, or lacks one it needs.
        """
        unknown = set(record) - set(RECORD_KEYS)
        missing = _REQUIRED - set(record)
        if unknown or missing:
            raise ValueError(f"not a response record: unknown keys {sorted(unknown)}, "
                             f"missing {sorted(missing)}")
        discarded = record.get("discarded")
        return cls(text=record["text"], tokens=record["tokens"], budget=record.get("budget"),
                   seconds=record["seconds"], stop=record["stop"],
                   trimmed_chars=record["trimmed_chars"], trimmed_lines=record["trimmed_lines"],
                   parses=record.get("parses"), kept_tokens=record.get("kept_tokens"),
                   discarded=dict(discarded) if discarded is not None else None,
                   decode_seconds=record.get("decode_seconds"), cache="hit")


def cached(record: Mapping[str, Any] | None) -> Response | None:
    """Return the response a store entry holds, or None for a miss.

    The store is only a cache: an entry that does not read as a response (written by another
    version, or damaged) is a miss, and the pass generates again instead of failing.
    """
    if record is None:
        return None
    try:
        return Response.from_record(record)
    except (ValueError, TypeError):
        return None


__all__ = ["RECORD_KEYS", "Response", "cached"]
