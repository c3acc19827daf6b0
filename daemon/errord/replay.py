"""``errord replay``: the engine over log files, offline — a what-if tool.

Runs the same parser, engine, mute oracle (inhibition and mute times by event time;
silences, judged by the daemon's clock, are ignored) and notice policy (``policy.pipeline.standard_policy``:
routing and rendering) as the daemon over whole files, in order, and yields the notices
they would have produced, as one target would get them (a resolve only after that target
was sent a failure or warning of the incident). Nothing is written: no journal,
no ``state_dir``, no positions. ``re_alert`` overrides the configured re-alert interval
(the default and the per-code ones) to show what another setting would have sent;
a line's own ``re_alert_time`` still wins, as in the daemon (CONTRACT §2), unless
``ignore_line_intervals`` is set.

What the parser could not use in a line (``linewarnings``) is said once per file and
kind (a misplaced code once per place), in the daemon's words, to ``on_warning`` and in
``warnings``. The daemon's warning about times hours away from its clock needs live
reading, so replay never gives it.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO
from zoneinfo import ZoneInfo

from errord.config import RunConfig
from errord.engine import Engine, Policy
from errord.errors import ErrordError
from errord.model import Kind, Notice, NoticeType
from errord.noise import Noise
from errord.parse.chunks import nul_free_parts
from errord.parse.layouts import AUTO, CRI, DOCKER, EnvelopeParser, make_parser, whole_joins
from errord.parse.lines import LineParser
from errord.parse.linewarnings import LineWarnings
from errord.parse.result import parse_contained
from errord.policy.base import Context
from errord.policy.digest import host_of
from errord.policy.limit import Send
from errord.policy.limitsim import Sent, TargetSim
from errord.policy.mute import MuteOracle
from errord.policy.pipeline import standard_policy
from errord.policy.route import Router

__all__ = [
    "LIMIT_HEADERS",
    "SUMMARY_HEADERS",
    "CodeSummary",
    "OverridePolicy",
    "ProgressBar",
    "Replay",
    "progress_line",
    "summary_table",
]

READ_BYTES = 1 << 20
_OCCURRENCE = frozenset({Kind.NEW, Kind.FLAPPING, Kind.REPEAT, Kind.REALERT, Kind.ANNOUNCE})  # a line raising the code


class OverridePolicy:
    """``Policy`` with re-alert intervals replaced: ``per_code`` first, then ``default``,
    then the wrapped policy. Notify decisions stay the wrapped policy's."""

    def __init__(self, base: Policy, default: float | None, per_code: Mapping[str, float]) -> None:
        self.base = base
        self.default = default
        self.per_code = dict(per_code)

    def re_alert_for(self, code: str) -> float:
        if code in self.per_code:
            return self.per_code[code]
        return self.default if self.default is not None else self.base.re_alert_for(code)

    def notify_for(self, code: str) -> bool:
        return self.base.notify_for(code)

    def noise_for(self, code: str) -> Noise:
        return self.base.noise_for(code)


@dataclass
class CodeSummary:
    """What one code did over the replay."""

    code: str
    lines: int = 0  # lines raising it (occurrences)
    incidents: int = 0  # incidents opened
    muted: int = 0  # failures and warnings an inhibition or a mute time kept back (CONTRACT §8)
    sent: int = 0  # notices the target got as they are, or in a group_wait group (CONTRACT §9)
    held: int = 0  # notices the storm limit held: they went out in a digest
    digests: int = 0  # digests that named it
    notices: dict[NoticeType, int] = field(default_factory=lambda: {t: 0 for t in NoticeType})

    @property
    def total(self) -> int:
        return sum(self.notices.values())


class Replay:
    """One offline run over ``paths``; iterate ``notices()``, then read ``summary``."""

    def __init__(
        self,
        config: RunConfig,
        paths: Sequence[Path],
        *,
        re_alert: float | None = None,
        re_alert_codes: Mapping[str, float] | None = None,
        ignore_line_intervals: bool = False,
        progress: Callable[[int, int], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        target: int | None = None,
        routes: Sequence[tuple[str, Sequence[str]]] = (),
    ) -> None:
        self.config = config
        self.paths = list(paths)
        policy: Policy = config
        if re_alert is not None or re_alert_codes:
            policy = OverridePolicy(config, re_alert, re_alert_codes or {})
        self.engine = Engine(
            policy,
            scope=config.scope,
            server_id=config.server_id,
            node_name=config.node_name,
            max_open_incidents=config.limits.max_open_incidents,
        )
        # inhibition and mute times by event time, as the daemon; silences are the
        # daemon's clock's, not the files': replay ignores them (CONTRACT §8)
        self.engine.mutes = MuteOracle.for_config(config)
        # The daemon's chain, for one target (CONTRACT §9: `--target notify.N`, default
        # the first): its tags route; with no [[notify]], the implicit target that takes
        # every notice, as the daemon's "stderr" one does. ``--render`` (CONTRACT §11) gives
        # the targets it renders for (``routes``), so each notice goes where its tags send it.
        index = 0 if target is None else target
        if config.notify and not 0 <= index < len(config.notify):
            raise ErrordError(f"--target notify.{index}: the config has notify.0 to notify.{len(config.notify) - 1}")
        if not config.notify and target not in (None, 0):
            raise ErrordError(f"--target notify.{index}: the config has no [[notify]] target")
        chosen = config.notify[index] if config.notify else None
        if routes:
            self.policy = standard_policy(Router(routes))
        else:
            self.policy = standard_policy(Router([(chosen.key, chosen.tags)] if chosen is not None else ()))
        # [limits] by event time (CONTRACT §9); None: every notice goes out as it is made
        self.limits = (
            TargetSim(config.limits.rule, host_of(config.server_id, config.node_name))
            if config.limits.rule.active
            else None
        )
        self.ignore_line_intervals = ignore_line_intervals
        self.progress = progress
        self.summary: dict[str, CodeSummary] = {}
        self.lines_read = 0
        self.lines_skipped = 0
        self.on_warning = on_warning
        self.warnings: list[str] = []  # each at most once per file and kind (or place)
        self._warnings = LineWarnings(None)  # once per file and kind (or place)

    def total_bytes(self) -> int:
        """Sum of the files' sizes now (for the progress bar)."""
        total = 0
        for p in self.paths:
            try:
                total += os.stat(p).st_size
            except OSError as exc:
                raise ErrordError(f"cannot read {p}: {exc.strerror}") from None
        return total

    def notices(self) -> Iterator[Notice]:
        """The notices the daemon would have sent, in file order (files in the order given)."""
        s = self.config
        total, done = self.total_bytes(), 0
        ctx = Context(
            now=time.time(), server_id=s.server_id, node_name=s.node_name, tags_for=s.tags_for, style=s.notice_style
        )
        # CONTRACT §9: in replay the quiet clock Q is the newest event time read; reminders
        # and auto-resolves are checked whenever it moves on by a second, and at the end
        timed = s.noise_timed
        q, next_tick = float("-inf"), float("-inf")
        for path in self.paths:
            parser = self._parser_for(path)
            for data, offset, layout in _pieces_for(path, parser):
                res = parse_contained(parser, data, offset, time.time(), str(path), layout)
                self.lines_read += res.lines
                self.lines_skipped += res.skipped
                if res.warnings:
                    self._warn(str(path), res.warnings)
                for ev in res.events:
                    if self.ignore_line_intervals:
                        ev.re_alert = None
                    if timed and ev.time > q:
                        q = ev.time
                        if q >= next_tick:
                            next_tick = q + 1.0
                            yield from self._tick(q, ctx)
                    transitions = self.engine.feed(ev)
                    for t in transitions:
                        if t.kind in _OCCURRENCE:
                            entry = self._entry(t.incident.code if t.incident else t.key)
                            entry.lines += 1
                            entry.incidents += t.kind is Kind.NEW or t.kind is Kind.FLAPPING
                            entry.muted += t.muted is not None
                    for notice in self.policy.apply(transitions, ctx):
                        if not notice.targets:
                            continue  # the target's tags do not take it
                        self._entry(notice.code).notices[notice.type] += 1
                        if self.limits is None:
                            self._entry(notice.code).sent += 1
                            yield notice
                        else:
                            for sent in self.limits.offer(notice, ev.time):
                                yield self._count(sent)
                done += len(data)
                if self.progress is not None:
                    self.progress(done, total)
        if timed and q > float("-inf"):
            yield from self._tick(q, ctx)
        if self.limits is not None:  # what is still held at the end: a final digest
            for sent in self.limits.flush():
                yield self._count(sent)

    def _count(self, sent: Sent) -> Notice:
        if sent.how is Send.DIGEST:
            for code in {n.code for n in sent.members}:
                self._entry(code).digests += 1
            for n in sent.members:
                self._entry(n.code).held += 1
        else:
            for n in sent.members:
                self._entry(n.code).sent += 1
        return sent.notice

    def _tick(self, q: float, ctx: Context) -> Iterator[Notice]:
        """The reminders and auto-resolves due at quiet clock ``q``, as the daemon's tick."""
        for t in self.engine.tick(lambda src: q):
            self._entry(t.incident.code if t.incident else t.key).muted += t.muted is not None
            for notice in self.policy.apply([t], ctx):
                if not notice.targets:
                    continue
                self._entry(notice.code).notices[notice.type] += 1
                if self.limits is None:
                    self._entry(notice.code).sent += 1
                    yield notice
                else:
                    for sent in self.limits.offer(notice, q):
                        yield self._count(sent)

    def _warn(self, path: str, warnings: list[tuple[int, str, str]]) -> None:
        for text in self._warnings.messages(path, warnings):
            self.warnings.append(text)
            if self.on_warning is not None:
                self.on_warning(text)

    def open_at_end(self) -> int:
        """Incidents still open after the last line."""
        return self.engine.open_count()

    def _entry(self, code: str) -> CodeSummary:
        entry = self.summary.get(code)
        if entry is None:
            entry = self.summary[code] = CodeSummary(code)
        return entry

    def _parser_for(self, path: Path) -> LineParser | EnvelopeParser:
        """The parser of the first source whose glob matches ``path`` (its app, timezone,
        line limit), else a plain one."""
        resolved = str(path.resolve())
        for src in self.config.sources:
            if src.path is not None and fnmatch.fnmatch(resolved, src.path):
                return make_parser(src)  # type: ignore[return-value]  # a path source: never a journal parser
        return LineParser(app=None, tz=ZoneInfo("UTC"), max_line_bytes=1 << 20)


def _pieces_for(path: Path, parser: LineParser | EnvelopeParser) -> Iterator[tuple[bytes, int, str]]:
    """``_read_lines`` with the format of a docker/CRI/auto file, no joined line split
    between two pieces (the daemon's follower holds them back the same way)."""
    if isinstance(parser, EnvelopeParser) and parser.fmt in (DOCKER, CRI, AUTO):
        yield from whole_joins(_read_lines(path), parser.fmt, parser.max_line_bytes)
        return
    for data, offset in _read_lines(path):
        yield data, offset, ""


def _read_lines(path: Path, chunk: int = READ_BYTES) -> Iterator[tuple[bytes, int]]:
    """Complete lines of a file in large pieces, with the offset of each piece. NUL runs
    are cut out as the daemon's follower does (``lines.nul_free_parts``): the text before
    a run ends a line there, the text after it starts the next."""
    try:
        with open(path, "rb") as f:
            yield from _pieces(f, chunk)
    except OSError as exc:  # opening it, or a read failing on the way
        raise ErrordError(f"cannot read {path}: {exc.strerror}") from None


def _pieces(f: BinaryIO, chunk: int) -> Iterator[tuple[bytes, int]]:
    offset, rest = 0, b""
    while True:
        data = f.read(chunk)
        if not data:
            break
        data = rest + data
        if b"\0" in data:
            parts = nul_free_parts(data)
            for start, end in parts[:-1]:
                if end > start:
                    yield data[start:end], offset + start
            start = parts[-1][0]
            data, offset = data[start:], offset + start
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut], offset
            offset += cut
        rest = data[cut:]
    if rest:
        yield rest, offset


def summary_table(summaries: Mapping[str, CodeSummary], *, limited: bool = False) -> list[list[object]]:
    """Rows for the summary table (most notices first), with a TOTAL row when useful;
    ``limited`` ([limits] on): also SENT, HELD, DIGESTS (``LIMIT_HEADERS``)."""
    ordered = sorted(summaries.values(), key=lambda s: (-s.total, s.code))
    counts = [
        [
            s.lines,
            s.incidents,
            s.notices[NoticeType.FAILURE],
            s.notices[NoticeType.WARNING],
            s.notices[NoticeType.SUCCESS],
            s.total,
            s.muted,
            *((s.sent, s.held, s.digests) if limited else ()),
        ]
        for s in ordered
    ]
    rows: list[list[object]] = [[s.code, *c] for s, c in zip(ordered, counts, strict=True)]
    if len(rows) > 1:
        rows.append(["TOTAL", *(sum(col) for col in zip(*counts, strict=True))])
    return rows


SUMMARY_HEADERS = ["CODE", "LINES", "INCIDENTS", "NEW", "RE-ALERT", "RESOLVED", "NOTICES", "MUTED"]
# with [limits] (CONTRACT §9): sent as made or grouped, held into digests, digests naming it
LIMIT_HEADERS = ["SENT", "HELD", "DIGESTS"]


def progress_line(done: int, total: int, width: int = 30) -> str:
    """``[##########----------]  50%  12.0/24.0 MiB`` for a terminal."""
    frac = 1.0 if total <= 0 else min(done / total, 1.0)
    filled = int(frac * width)
    mib = 1024 * 1024
    return f"[{'#' * filled}{'-' * (width - filled)}] {frac * 100:3.0f}%  {done / mib:.1f}/{total / mib:.1f} MiB"


class ProgressBar:
    """``progress_line`` on a terminal's stderr, redrawn at most ten times a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._next = 0.0
        self._shown = False

    def update(self, done: int, total: int) -> None:
        """Redraw for ``done`` of ``total`` bytes (at the end always, else when due)."""
        now = time.monotonic()
        if now < self._next and done < total:
            return
        self._next = now + 0.1
        self.stream.write("\r" + progress_line(done, total))
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the bar, if shown, so a line can be printed where it was."""
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False
