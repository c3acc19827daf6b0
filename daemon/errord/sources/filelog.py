"""Per-file log lines of one scan (where each file starts reading, what was found), the
first ``FILES_LOGGED`` in full and the rest counted by kind, so 20,000 files give 21
lines, not 20,000."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

__all__ = ["FILES_LOGGED", "FileLog"]

FILES_LOGGED = 20  # per-file lines of one scan logged in full; the rest are summarised


class FileLog:
    """Collects one scan's per-file lines for ``log``; ``emit()`` writes them."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.lines: list[tuple[int, str, tuple[Any, ...]]] = []
        self.more: Counter[str] = Counter()

    def add(self, kind: str, level: int, msg: str, *args: Any) -> None:
        if len(self.lines) < FILES_LOGGED:
            self.lines.append((level, msg, args))
        else:
            self.more[kind] += 1

    def emit(self) -> None:
        for level, msg, args in self.lines:
            self.log.log(level, msg, *args)
        if self.more:
            self.log.info(
                "... and %s more file(s): %s",
                f"{sum(self.more.values()):,}",
                ", ".join(f"{n:,} {kind}" for kind, n in self.more.most_common()),
            )
