"""Secret detection for every text symergion writes where others read it.

detect-secrets' plugins and filters flag secrets; each flagged value is replaced with
``[redacted <type>]``, a private key from its BEGIN line to its END line. ``harvest`` redacts
dataset rows with a ``Scrubber``; ``redact`` does the same for one text, such as a test report
bound for a commit message.
"""

from __future__ import annotations

import functools
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Scrubber:
    """Redact what detect-secrets' plugins flag, caching per distinct text."""

    def __init__(self, workdir: Path) -> None:
        self._path = workdir / "scan.txt"
        self._cache: dict[str, tuple[str, int]] = {}
        self.found: Counter[str] = Counter()

    def scrub(self, text: str) -> tuple[str, int]:
        """Return the text with every flagged secret redacted, and how many were."""
        if text not in self._cache:
            self._cache[text] = self._scrub(text)
        return self._cache[text]

    def _scrub(self, text: str) -> tuple[str, int]:
        from detect_secrets.core.scan import scan_file

        # scan_file runs the plugins with detect-secrets' own false-positive filters, which
        # its ad-hoc string scan skips; it reads the file in the locale's encoding.
        self._path.write_text(text, encoding=_locale_encoding(), errors="replace")
        hits = sorted({(s.line_number, s.type, s.secret_value or "")
                       for s in scan_file(str(self._path))})
        if not hits:
            return text, 0
        lines = text.split("\n")
        for line_number, kind, value in hits:
            self.found[kind] += 1
            index = line_number - 1
            if kind == "Private Key":
                # The plugin flags the BEGIN line; the key body follows it up to the END line.
                end = next((i for i in range(index, len(lines))
                            if "END" in lines[i] and "PRIVATE KEY" in lines[i]), len(lines) - 1)
                for i in range(index, end + 1):
                    lines[i] = f"[redacted {kind}]" if i == index else ""
                continue
            if 0 <= index < len(lines) and value:
                lines[index] = lines[index].replace(value, f"[redacted {kind}]")
        return "\n".join(lines), len(hits)


def _locale_encoding() -> str:
    import locale

    return locale.getpreferredencoding(False)


@contextmanager
def scrubber() -> Iterator[Scrubber]:
    """Yield a scrubber with detect-secrets' default plugins and filters enabled."""
    from detect_secrets.settings import default_settings

    with default_settings(), tempfile.TemporaryDirectory(prefix="symergion-scan-") as tmp:
        yield Scrubber(Path(tmp))


_lock = threading.Lock()


@functools.lru_cache(maxsize=1024)
def redact(text: str) -> str:
    """Return ``text`` with every secret detect-secrets flags replaced (cached per text)."""
    if not text.strip():
        return text
    # detect-secrets keeps its settings in a global: one scan at a time.
    with _lock, scrubber() as scrub:
        return scrub.scrub(text)[0]
