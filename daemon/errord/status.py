"""What the commands report about a state_dir and the source globs, looked at read-only.

``errord status`` (CONTRACT §4: per file, position and size; pending work; whether a
daemon runs) and ``check-config``'s line per source (what its glob matches now) are
answered here from the embedded store, the run state and the file system, without a
lock and while a daemon runs. ``cli`` prints what these return.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from errord.config import RunConfig, Source
from errord.errors import ErrordError, JournalError, NoStateError, StateError
from errord.model import Position
from errord.sources.fileid import expand, is_compressed
from errord.sources.journalpos import JOURNALCTL, JournalState, journalctl_found, meta_key
from errord.store.journal import Journal
from errord.store.runstate import read_run_state

__all__ = ["first_start", "matched_files", "open_readonly", "source_matches", "status_data"]


def open_readonly(config: RunConfig) -> Journal | None:
    """The embedded store read-only, or None while there is no state yet."""
    try:
        return Journal(config.state_dir, readonly=True)
    except NoStateError:
        return None


def status_data(config: RunConfig) -> dict[str, Any]:
    """The ``status --json`` object (CONTRACT §4)."""
    state = read_run_state(config.state_dir)
    positions: dict[tuple[int, int], Position] = {}
    active = pending = pending_mongo = silences = held = 0
    rejected: dict[str, int] = {}
    journals: dict[int, JournalState | None] = {}
    journal = open_readonly(config)
    if journal is not None:
        try:
            positions = {p.key: p for p in journal.positions()}
            journals = {
                i: JournalState.load(journal.get_meta(meta_key(i)))
                for i, src in enumerate(config.sources)
                if src.journal is not None
            }
            open_ids = {i.incident_id for i in journal.active()}
            active = len(open_ids)
            pending = journal.outbox.pending()
            pending_mongo = journal.mongo.pending()
            # silences and acks in force now (CONTRACT §8; mute times are not counted)
            silences = journal.control.active_count(time.time(), open_ids)
            held = _held(journal)
            rejected = journal.outbox.rejected_by_target()
        finally:
            journal.close()
    files = []
    for path in matched_files(config):
        try:
            st = os.stat(path)
        except OSError:
            continue
        pos = positions.get((st.st_dev, st.st_ino))
        files.append(
            {
                # a name that is not UTF-8 is shown with \xNN escapes (JSON cannot hold it raw)
                "path": path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"),
                "position": pos.offset if pos else 0,
                "size": st.st_size,
                "lines_read": pos.lines_read if pos else 0,
                "lines_skipped": pos.lines_skipped if pos else 0,
            }
        )
    return {
        "running": bool(state["running"] and state["ready"]),
        "pid": state["pid"],
        "active_incidents": active,
        "pending_notices": pending,
        "held_notices": held,  # of pending_notices: held by a storm limit for a digest (CONTRACT §9)
        "pending_mongo": pending_mongo,
        "silences_active": silences,
        # notices a target refused for good (a webhook's 4xx, CONTRACT §11), by redacted target
        "rejected_notices": {t.redacted: rejected[t.key] for t in config.targets if rejected.get(t.key)},
        "state_dir": str(config.state_dir),
        "files": files,
        "journals": [_journal_status(i, src, journals.get(i)) for i, src in enumerate(config.sources) if src.journal],
    }


def _journal_status(index: int, source: Source, state: JournalState | None) -> dict[str, Any]:
    """One journal source for ``status`` (CONTRACT §12): its committed cursor and entries,
    and the error journalctl gave last (None: none, or not started yet)."""
    assert source.journal is not None
    same = state is not None and state.where == source.journal.where
    return {
        "source": index,
        "journal": source.journal.where,
        "cursor": state.cursor if same and state is not None else None,
        "entries_read": state.entries_read if same and state is not None else 0,
        "error": state.error if same and state is not None else None,
    }


def _held(journal: Journal) -> int:
    """Notices held for a digest; 0 on a store from before the storm limits (read-only on
    an older schema: no ``limit_state`` table yet)."""
    try:
        return journal.limits.held()
    except JournalError:
        return 0


def matched_files(config: RunConfig) -> Iterator[str]:
    """The files the sources' globs match now, each once, skipped as the daemon skips
    them (compressed names, folders)."""
    seen: set[str] = set()
    for src in config.sources:
        if src.path is None:  # a journal source
            continue
        for path in sorted(expand(src.path)):  # glob, safe from symlink loops
            if path not in seen and not is_compressed(path) and os.path.isfile(path):
                seen.add(path)
                yield path


def first_start(config: RunConfig) -> bool:
    """Whether the daemon's next start is its very first on this state_dir (``start_at``
    applies then)."""
    try:
        journal = open_readonly(config)
        if journal is None:
            return True
        with journal:
            return journal.get_meta("initialized") is None
    except StateError:  # a store errord cannot use: `check-config` refuses it as `run` does
        raise
    except ErrordError:  # unreadable state now (locked, …): the daemon says why at start
        return False


def source_matches(source: Source, first: bool) -> str:
    """What ``source``'s glob matches now, for ``check-config`` (``first``: see
    ``first_start``); for a journal source, whether journalctl is there to read it."""
    if source.journal is not None:
        binary = journalctl_found()
        if binary is None:
            return f"reads with {JOURNALCTL}, which is not on PATH (install systemd's journalctl)"
        start = (
            ' (first start: start_at = "end" skips what it holds now)'
            if source.start_at == "end"
            else " (first start: read from its first entry)"
        )
        return f"read with {binary}" + (start if first else "")
    pattern = source.path
    assert pattern is not None  # a source has a path or a journal
    found = [p for p in expand(pattern) if not is_compressed(p)]  # skipped by name, as the daemon does
    files = sum(1 for p in found if os.path.isfile(p))
    folders = sum(1 for p in found if os.path.isdir(p))
    if not files:
        if folders:
            return (
                f"matches {_count(folders, 'folder')} and no file: a source names files, "
                f"e.g. {os.path.join(pattern, '*.jsonl')}"
            )
        return "matches nothing yet (a file that appears while errord runs is read from its start)"
    text = f"matches {_count(files, 'file')} now"
    if folders:
        text += f" (and {_count(folders, 'folder')}, skipped)"
    if first:
        text += (
            ' (first start: start_at = "end" skips what they hold now)'
            if source.start_at == "end"
            else " (first start: read from their start)"
        )
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
