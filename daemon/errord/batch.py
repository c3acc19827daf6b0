"""The batch: read → parse → feed → policy → commit | rollback, with its tally.

This is where CONTRACT §7 is made true. One :meth:`Batch.step` reads what the source has
(at most ``BATCH_BYTES``), parses it, feeds the events to the engine and runs the notice
policy for every line that may notify; then the positions the lines reached, the
incidents they changed and the notices they made are committed in ONE journal
transaction. If that fails, the engine and the source roll back to the last commit (the
same lines are read again later: nothing is counted twice, nothing is skipped) and the
batch backs off before the next try. Nothing before the commit is durable.

Why a class of its own: the daemon (``daemon.Daemon``) keeps the lifecycle, reload,
watchdog, MongoDB recovery and the sinks; the batch is the one place a line passes
through, so the stages of the next issues (muting, limits: ``policy.pipeline``) plug in
here without an ``if`` in this loop. The per-event loop in :meth:`_read` is the hot path
(``bench/run.py``): it binds what it calls to locals, feeds with ``Engine.feed_quiet``
(a suppressed repeat, most error lines, builds no ``Transition``) and makes no object
per line; the tally is plain dicts, published only once the batch is durable.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from errord.backoff import backoff
from errord.config import RunConfig
from errord.deferral import DEFER_MAX_BYTES, DEFER_SLACK, may_defer
from errord.engine import Engine
from errord.engine_flap import FLAP_META
from errord.errors import JournalError
from errord.health import BatchTally, Health
from errord.model import Kind, LogEvent, Notice
from errord.parse.journalentry import JournalParser
from errord.parse.layouts import EnvelopeParser, make_parser
from errord.parse.lines import LineParser
from errord.parse.linewarnings import LineWarnings
from errord.parse.result import parse_contained
from errord.policy.base import Context
from errord.policy.pipeline import NoticePolicy
from errord.sources.base import Chunk, Source
from errord.sources.zonecheck import ZoneCheck
from errord.store.journal import Journal

if TYPE_CHECKING:
    from errord.fleet.gate import FleetGate  # pymongo: imported only with [fleet]

__all__ = ["BATCH_BYTES", "READ_BYTES", "Batch", "Committed"]

logger = logging.getLogger(__name__)

# Read at most this much per journal transaction (one fsync each): 2 MiB made ingest ~10%
# slower (twice the commits). Within a batch the lines are read and parsed READ_BYTES at a
# time, so only one read's bytes are held: the daemon's peak RSS no longer grows with
# BATCH_BYTES (holding a whole 4 MiB batch cost ~3 MB more).
TIMERS_EVERY = 1.0  # seconds between checks of reminders and auto-resolve (CONTRACT §9: at least once a second)
QUIET_META = "quiet_clocks"  # meta key: {source index: [newest event time, daemon clock when read]}
BATCH_BYTES = 4 << 20
READ_BYTES = 1 << 20
SKIP_WARN_EVERY = 60.0  # seconds between skipped-line (or unusable-field) warnings for one file
RETRY_MIN, RETRY_MAX = 0.5, 30.0  # journal write retry backoff

Parser = LineParser | EnvelopeParser | JournalParser


class Committed(NamedTuple):
    """What one step did: ``ok`` False when the journal refused the batch (all of it was
    rolled back); else how many notices and changed incidents it committed. ``held``: the
    step read lines that notify nobody and kept its batch open (see ``Batch.step``)."""

    ok: bool
    notices: int
    incidents: int
    held: bool = False


class Batch:
    """Reads, parses, feeds and commits batches of lines from ``source``; see the module doc.

    ``publish`` gets each committed batch's tally (the metrics); ``count_kinds`` makes
    the tally count transition kinds too (only the metrics read them).
    """

    def __init__(
        self,
        source: Source,
        engine: Engine,
        policy: NoticePolicy,
        journal: Journal,
        config: RunConfig,
        *,
        health: Health,
        publish: Callable[[BatchTally], None] | None = None,
        count_kinds: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.engine = engine
        self.policy = policy
        self.journal = journal
        self.health = health
        self.publish = publish
        self.count_kinds = count_kinds
        self._clock = clock
        self.fleet: FleetGate | None = None  # [fleet] (CONTRACT §13): set by the daemon
        self._warnings = LineWarnings(SKIP_WARN_EVERY)  # skipped lines, unusable fields, misplaced codes
        self._zones = ZoneCheck()
        self._failures = 0  # commits refused in a row
        self.retry_delay = 0.0  # seconds to wait before the next step (the journal refused the last)
        self.lines_read = 0
        # the open batch: read (and fed) but not committed yet; None between batches
        self._tally: BatchTally | None = None
        self._opened = 0.0  # time.monotonic() of its first read
        self._bytes = 0  # read into it
        self._hold = 0.0  # how long it may stay open (the hold of the step that kept it)
        # the last step's reads used their whole budget without draining the source (a
        # backlog): its batch is not held, since there is more to read right now
        self._more = False
        # CONTRACT §9's quiet clock per source: (newest event time read, daemon clock when
        # read), committed with the batches (meta) so a restart judges quiet as live
        # reading would have; the next time the reminders/auto-resolves are checked
        self._quiet: dict[int, tuple[float, float]] = {}
        self._quiet_loaded = False
        self._quiet_dirty = False
        self._quiet_before: dict[int, tuple[float, float]] = {}
        self._next_timers = 0.0
        # chunks read into the open batch but not parsed yet (``deferral``), with the
        # parser and read time they are parsed with
        self._deferred: list[tuple[Chunk, Parser, float]] = []
        self.configure(config)
        self._load_quiet()

    def quiet_clock(self, src: int, now: float) -> float:
        """Q of source ``src`` at daemon clock ``now`` (CONTRACT §9): its newest event time
        read plus the time since that line was read, never ahead of ``now``; a source
        nothing was read from yet: ``now``."""
        seen = self._quiet.get(src)
        if seen is None:
            return now
        newest, read_at = seen
        return min(now, newest + max(0.0, now - read_at))

    def timers(self) -> Committed | None:
        """The reminders and auto-resolves due now (checked once a second when any code
        has them), committed at once (with the open batch, if any); None when none was due."""
        if not self._timed:
            return None
        mono = time.monotonic()
        if mono < self._next_timers:
            return None
        self._next_timers = mono + TIMERS_EVERY
        self._load_quiet()
        now = self._clock()
        fresh = self._tally is None
        if fresh:
            self._tally = BatchTally()
            self._opened, self._bytes = mono, 0
            self._quiet_before = dict(self._quiet)
            self.engine.begin(now)
        tally = self._tally
        assert tally is not None
        # the lines read before this tick go through the engine before it (their order)
        notices: list[Notice] = self._drain(tally) if self._deferred else []
        transitions = self.engine.tick(lambda src: self.quiet_clock(src, now))
        if not transitions and not notices:
            if fresh:
                self._tally = None
            return None
        s = self.config
        ctx = Context(now=now, server_id=s.server_id, node_name=s.node_name, tags_for=s.tags_for)
        kinds = tally.kinds if self.count_kinds else None
        for t in transitions:
            if kinds is not None:
                kinds[t.kind] = kinds.get(t.kind, 0) + 1
            notices += self.policy.apply([t], ctx)
        return self._commit(notices, tally)

    def _load_quiet(self) -> None:
        if self._quiet_loaded:
            return
        self._quiet_loaded = True
        try:
            text = self.journal.get_meta(QUIET_META)
            if text:
                self._quiet = {int(k): (float(v[0]), float(v[1])) for k, v in json.loads(text).items()}
            self.engine.flaps.load(self.journal.get_meta(FLAP_META))
        except (JournalError, ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
            logger.warning("quiet clocks or flap states not restored (%s): judged from now on", exc)

    def configure(self, config: RunConfig) -> None:
        """Use ``config`` from the next step on (start, SIGHUP): a parser per source."""
        self.config = config
        self._timed = config.noise_timed
        self.parsers = [make_parser(src) for src in config.sources]

    def step(self, hold: float = 0.0) -> Committed | None:
        """Read, parse and feed what the source has, then commit the batch; None when there
        was nothing to read (and nothing due to commit).

        ``hold`` > 0 (a daemon following files): a batch whose lines notify nobody stays
        open up to ``hold`` seconds: the next steps read on into it, and the first that
        brings a notice, finds it ``hold`` old or ``BATCH_BYTES`` big commits all of it in
        ONE transaction (``flush()`` too). A file written every 10 ms is then not one
        fsync per write; a notice is never held, nor a batch whose source is not
        ``settled()`` (a file new, renamed, truncated, closed or deleted: its identity is made
        durable at once, so a crash cannot lose track of it). Until the commit nothing of it is durable
        (a crash reads those lines again, as for any batch).
        """
        if self._tally is None:
            self._tally = BatchTally()
            self._opened, self._bytes = time.monotonic(), 0
            self._quiet_before = dict(self._quiet)  # a refused commit restores it
            self.engine.begin(self._clock())
        tally = self._tally
        notices = self._read(tally, hold)
        if notices is None:
            # nothing new, yet a file of the open batch may have gone or changed (deleted,
            # truncated, renamed): what it read of that file is committed now
            if self._bytes and (self.due_in() == 0.0 or not self.source.settled()):
                return self._commit([], tally)
            if not self._bytes:
                self._tally = None  # nothing read: no batch (begin() again next time)
            return None
        self._hold = hold
        # A backlog's batch is never held: line-aligned reads fall just short of READ_BYTES,
        # so four of them stay under BATCH_BYTES, and holding such a batch made the daemon
        # sleep READ_GAP once per 4 MiB of backlog (the bulk-ingest regression of issue 13)
        if notices or self._more or self._bytes >= BATCH_BYTES or self.due_in() == 0.0 or not self.source.settled():
            return self._commit(notices, tally)
        return Committed(True, 0, 0, held=True)

    def due_in(self) -> float | None:
        """Seconds until the open batch is due to be committed; None when none is open."""
        if self._tally is None or not self._bytes:
            return None
        return max(0.0, self._opened + self._hold - time.monotonic())

    def flush(self) -> Committed | None:
        """Commit the open batch now (stop, reload); None when none is open."""
        if self._tally is None or not self._bytes:
            return None
        return self._commit([], self._tally)

    def _read(self, tally: BatchTally, hold: float = 0.0) -> list[Notice] | None:
        """Read, parse and feed one batch; returns its notices, or None when there was
        nothing to read. Nothing durable happens here.

        A batch is at most ``BATCH_BYTES // READ_BYTES`` reads of ``READ_BYTES``, each
        parsed as soon as it is read: one read's bytes are held at a time, not the batch's.
        With ``hold`` (following), a chunk that can only repeat (``deferral``) is kept
        unparsed in the batch instead, and parsed before the next that may notify or the
        batch's commit.
        """
        now = self._clock()
        source = self.source
        notices: list[Notice] = []
        defer = self._may_defer if hold > 0 else None
        anything = False
        self._more = False
        for _ in range(BATCH_BYTES // READ_BYTES):
            chunks = source.read(READ_BYTES)
            if not chunks:
                break
            anything = True
            # a read well short of READ_BYTES found the source drained: another read now
            # would find nothing (a followed file: a few lines; a backlog reads full ones)
            drained = sum(len(c.data) for c in chunks) < READ_BYTES // 2
            while chunks:
                chunk = chunks.pop(0)  # dropped once parsed
                self._bytes += len(chunk.data) or 1  # (an empty chunk still moved a position)
                parser = self.parsers[chunk.source]
                if defer is not None and defer(chunk, parser, now):
                    self._deferred.append((chunk, parser, now))
                    continue
                if self._deferred:
                    notices += self._drain(tally)
                notices += self._feed(chunk, parser, now, tally)
                del chunk
            if drained:
                break
        else:
            self._more = anything  # every read was (nearly) full: the source has more
        return notices if anything else None

    def _feed(self, chunk: Chunk, parser: Parser, now: float, tally: BatchTally) -> list[Notice]:
        """Parse one chunk and feed its events; the notices they make (rendered as of ``now``)."""
        source = self.source
        feed = self.engine.feed_quiet  # None for a suppressed repeat: no Transition built
        apply = self.policy.apply
        repeat = Kind.REPEAT
        notices: list[Notice] = []
        ctx: Context | None = None  # made for the first notice: most chunks make none
        kinds = tally.kinds if self.count_kinds else None
        mutes = self.engine.mutes
        if mutes is not None:
            mutes.now = now  # what silences are judged by for these lines (CONTRACT §8)
        name = chunk.name if type(parser) is EnvelopeParser else ""  # app_from's (CONTRACT §12)
        res = parse_contained(parser, chunk.data, chunk.offset, now, chunk.path, chunk.layout, name)
        skipped = res.skipped + chunk.skipped_long
        source.account(chunk.key, res.lines + chunk.skipped_long, skipped)
        self.lines_read += res.lines + chunk.skipped_long
        tally.add_chunk(chunk.source, res.lines + chunk.skipped_long, res.reasons, chunk.skipped_long)
        if skipped:
            first = res.first_skip
            if first is None and chunk.long_offsets:
                first = (chunk.long_offsets[0], "too_long")
            self._warn(self._warnings.skipped(chunk.path, skipped, first))
        if res.warnings:
            for text in self._warnings.messages(chunk.path, res.warnings):
                self._warn(text)
        # zone hints read plain lines: not an envelope's (their times are UTC anyway)
        if chunk.data and self._zones.due(chunk.path, now) and type(parser) is LineParser:
            self._check_zone(chunk, parser, now)
        src = self.engine.src = chunk.source
        if res.events:
            self._saw(src, res.events, now)
        for ev in res.events:
            transitions = feed(ev)
            if transitions is None:  # a suppressed repeat (most error lines): nothing to render
                if kinds is not None:
                    kinds[repeat] = kinds.get(repeat, 0) + 1
                continue
            if kinds is not None:
                for t in transitions:
                    kinds[t.kind] = kinds.get(t.kind, 0) + 1
            # the policy only for what notifies (a clear and an error on one line
            # may give a notice per distinct set of targets, never two to one target)
            if transitions and (transitions[0].notify or transitions[-1].notify):
                if ctx is None:
                    s = self.config
                    ctx = Context(
                        now=now, server_id=s.server_id, node_name=s.node_name, tags_for=s.tags_for, style=s.notice_style
                    )
                notices += apply(transitions, ctx)
        return notices

    def _may_defer(self, chunk: Chunk, parser: Parser, now: float) -> bool:
        """Whether ``chunk`` may wait unparsed in the open batch (``deferral``): a small
        read of plain JSON lines only (an envelope's or a journal entry's keys are not
        where its bytes say)."""
        if type(parser) is not LineParser or len(chunk.data) > DEFER_MAX_BYTES:
            return False
        engine, app = self.engine, parser.app
        return may_defer(
            chunk.data,
            lambda code, re_alert: engine.quiet_until(code, app, re_alert),
            self.quiet_clock(chunk.source, now) + DEFER_SLACK,
            parser.duration,
        )

    def _drain(self, tally: BatchTally) -> list[Notice]:
        """Parse and feed the deferred chunks, in the order read, each as of its read."""
        notices: list[Notice] = []
        deferred, self._deferred = self._deferred, []
        for chunk, parser, now in deferred:
            notices += self._feed(chunk, parser, now, tally)
        return notices

    def _saw(self, src: int, events: list[LogEvent], now: float) -> None:
        """Move source ``src``'s quiet clock on to the newest event time among these."""
        newest = max(ev.time for ev in events)
        seen = self._quiet.get(src)
        if seen is None:
            self._load_quiet()
            seen = self._quiet.get(src)
        if seen is None or newest > seen[0]:
            self._quiet[src] = (newest, now)
            self._quiet_dirty = True

    def _commit(self, notices: list[Notice], tally: BatchTally) -> Committed:
        """One transaction for the batch; on failure undo the batch in memory and back off."""
        if self._deferred:
            notices = notices + self._drain(tally)
        self._tally = None
        cp = self.source.checkpoint()
        incidents = self.engine.pending()
        muted = tally.add_muted(self.engine.muted())
        meta = cp.meta
        if self._quiet_dirty:
            meta = {**meta, QUIET_META: json.dumps({str(k): v for k, v in self._quiet.items()})}
        if self.engine.flaps.dirty:
            meta = {**meta, FLAP_META: self.engine.flaps.dump()}
        if self.fleet is not None and notices:
            notices = self.fleet.gate(notices, incidents, self._clock())  # bounded wait, fails open
        if cp or incidents or notices:
            try:
                self.journal.commit(incidents, cp.positions, notices, self._clock(), meta=meta, silenced=muted)
            except JournalError as exc:
                if self.fleet is not None:
                    self.fleet.rolled_back()  # its claims stay unannounced: asked again on the retry
                self.engine.rollback()
                self.source.rollback()
                self._quiet = self._quiet_before  # what was read is read again: so are its times
                self._failures += 1
                self.retry_delay = backoff(self._failures - 1, RETRY_MIN, RETRY_MAX)
                self.health.journal_failed(str(exc))
                logger.error("cannot write the journal (%s); reading paused, retrying in %.1fs", exc, self.retry_delay)
                return Committed(False, 0, 0)
            if self._failures:
                logger.info("journal writable again; reading resumed")
                self._failures, self.retry_delay = 0, 0.0
                self.health.journal_ok()
        self._quiet_dirty = False
        if self.fleet is not None:
            self.fleet.committed(self._clock())
        self.engine.commit()
        # committed: an open incident's message is in the journal now, read from there when
        # a notice needs it, not held by each of them (issue 13: ~80 B or more apiece)
        source = self.journal.message_of
        for inc in incidents:
            if inc.active and isinstance(inc.message_of, str):
                inc.keep_message_in(source)
        self.engine.freeze(incidents)  # untouched from now on: packed (engine_cold), ~0.1 KB less each
        self.source.committed()
        if self.publish is not None:
            self.publish(tally)
        return Committed(True, len(notices), len(incidents))

    @staticmethod
    def _warn(text: str | None) -> None:
        if text is not None:
            logger.warning("%s", text)

    def _check_zone(self, chunk: Chunk, parser: LineParser, now: float) -> None:
        """One warning per file whose zone-less times, read live, sit a zone offset away
        from this host's clock (``zonecheck``)."""
        self._warn(
            self._zones.check(
                chunk,
                parser,
                now,
                f"sources.{chunk.source}.timezone",
                self.config.sources[chunk.source].timezone,
            )
        )
