"""Wires the parts together and owns their lifecycle: startup, the batch loop, shutdown.

Shaped like uvicorn's ``Server``: signal handlers only set flags; shutdown drains within a
deadline; a second SIGTERM/SIGINT forces the exit. The batch loop is where CONTRACT §7
is made true: the positions, the incident changes and the notices of one batch of lines
are committed in one journal transaction, or not at all (engine and tailer roll back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

from errord.engine import Engine
from errord.errors import ConfigError, ErrordError, JournalError, NotifyError
from errord.journal import STDERR_TARGET, Journal
from errord.lines import LineParser
from errord.model import Notice
from errord.notices import render
from errord.runstate import RunLock
from errord.settings import Settings
from errord.sinks.notify import NotifySink
from errord.systemd import SystemdNotifier
from errord.tail import Chunk, Tailer

__all__ = ["Daemon"]

logger = logging.getLogger(__name__)

BATCH_BYTES = 8 << 20  # read at most this much per journal transaction
SKIP_WARN_EVERY = 60.0  # seconds between skipped-line warnings for one file
STOP_DEADLINE = 8.0  # seconds from SIGTERM to exit (CONTRACT §7 allows 10)
RETRY_MIN, RETRY_MAX = 0.5, 30.0  # journal write retry backoff
SIGNAL_REPEAT_GRACE = 0.5  # seconds in which a repeated stop signal is the same request
PRUNE_EVERY = 3600.0  # seconds between prunes of delivered notices


class Daemon:
    """The running errord. ``await Daemon(settings).run()`` until SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, *, notifier: SystemdNotifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or SystemdNotifier()
        self.lock = RunLock(settings.state_dir)
        self.journal: Journal | None = None
        self.engine = Engine(
            settings,
            scope=settings.scope,
            server_id=settings.server_id,
            node_name=settings.node_name,
        )
        self.tailer: Tailer | None = None
        self.sink: NotifySink | None = None
        self.parsers: list[LineParser] = []
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reload_requested = False
        self._first_signal: float | None = None
        self._skip_warned: dict[str, float] = {}
        self._retry_delay = 0.0
        self._next_prune = 0.0
        self.lines_read = 0
        self.notices_made = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Start, loop until asked to stop, then shut down cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        try:
            await self.startup()
            watchdog = asyncio.create_task(self._watchdog())
            try:
                await self.main_loop()
            finally:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
        finally:
            await self.shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def startup(self) -> None:
        s = self.settings
        s.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.lock.acquire()
        self.journal = Journal(s.state_dir)
        self.engine.restore(self.journal.load_active())
        positions = self.journal.load_positions()
        first_start = self.journal.get_meta("initialized") is None
        self._apply_targets(self._make_sink(s))
        self.parsers = self._make_parsers(s)
        self.tailer = Tailer(s.sources, positions, first_start=first_start)
        await self.tailer.open()
        # Persist where the first start put each file (start_at = "end") together with the
        # flag that says the first start is over, so a crash here cannot redo it differently.
        self.journal.commit([], self.tailer.checkpoint(), [], time.time(), meta={"initialized": "1"})
        self.tailer.committed()
        self.lock.update(ready=True)
        self.notifier.ready(self._status_line())
        logger.info(
            "errord started: %d source(s), %d open incident(s), %s, state in %s",
            len(s.sources),
            len(self.engine.active()),
            f"{len(s.notify)} notify target(s)" if s.notify else "notices to stderr",
            s.state_dir,
        )

    async def shutdown(self) -> None:
        """Stop reading, commit what was read, give the sink a few seconds, release all."""
        deadline = time.monotonic() + STOP_DEADLINE
        self.notifier.stopping()
        if self.tailer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.tailer.close(), timeout=2.0)
        if self.sink is not None:
            await asyncio.to_thread(self.sink.stop, max(deadline - 1.0, time.monotonic()))
        if self.journal is not None:
            self.journal.close()
        self.lock.release()
        self.notifier.close()
        logger.info("errord stopped")

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        now = time.monotonic()
        if self._first_signal is not None:
            # The same signal often arrives twice at once (to the process and to its
            # group, e.g. from `timeout` or make); only a later one means "force".
            if now - self._first_signal < SIGNAL_REPEAT_GRACE:
                return
            logger.warning("second %s: exiting now", sig.name)
            os._exit(1)  # everything committed so far is durable; nothing is lost
        self._first_signal = now
        logger.info("%s received: stopping", sig.name)
        self._stop.set()
        self._wake.set()

    def _on_reload_signal(self) -> None:
        self._reload_requested = True
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------

    async def main_loop(self) -> None:
        assert self.tailer is not None
        while not self._stop.is_set():
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            if self._retry_delay:
                await self._sleep(self._retry_delay)
                if self._stop.is_set():
                    break
            else:
                await self._wait_for_input()
            await self.pump()
            self._maybe_prune()

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune or self.journal is None:
            return
        self._next_prune = now + PRUNE_EVERY
        try:
            pruned = self.journal.prune(time.time())
        except JournalError as exc:
            logger.warning("could not prune delivered notices: %s", exc)
            return
        if pruned:
            logger.info("pruned %d delivered notice(s) older than a week", pruned)

    async def _wait_for_input(self) -> None:
        assert self.tailer is not None
        waiter = asyncio.create_task(self.tailer.wait(1.0))
        woken = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait({waiter, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, woken):
                task.cancel()
            await asyncio.gather(waiter, woken, return_exceptions=True)
            self._wake.clear()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def pump(self) -> None:
        """Read and commit batches until nothing is left (or stop/reload is asked)."""
        assert self.tailer is not None
        while True:
            chunks = self.tailer.read(BATCH_BYTES)
            if not chunks:
                return
            notices = self._process(chunks)
            if not self._commit(notices, chunks):
                return
            if self._stop.is_set() or self._reload_requested:
                return
            await asyncio.sleep(0)  # let signals and watch events in between batches

    def _process(self, chunks: list[Chunk]) -> list[Notice]:
        """Parse and feed one batch; returns its notices. Nothing durable happens here."""
        assert self.tailer is not None
        now = time.time()
        s = self.settings
        feed = self.engine.feed
        notices: list[Notice] = []
        self.engine.begin()
        for chunk in chunks:
            res = self.parsers[chunk.source].parse_chunk(chunk.data, chunk.offset, now, chunk.path)
            skipped = res.skipped + chunk.skipped_long
            self.tailer.account(chunk.key, res.lines + chunk.skipped_long, skipped)
            self.lines_read += res.lines + chunk.skipped_long
            if skipped:
                first = res.first_skip
                if first is None and chunk.long_offsets:
                    first = (chunk.long_offsets[0], "too_long")
                self._warn_skipped(chunk.path, skipped, first, now)
            for ev in res.events:
                notice = render(feed(ev), server_id=s.server_id, node_name=s.node_name, tags_for=s.tags_for)
                if notice is not None:
                    notices.append(notice)
        return notices

    def _commit(self, notices: list[Notice], chunks: list[Chunk]) -> bool:
        """One transaction for the batch; on failure undo the batch in memory and back off."""
        assert self.journal is not None and self.tailer is not None
        positions = self.tailer.checkpoint()
        incidents = self.engine.pending()
        if not (positions or incidents or notices):
            self.engine.commit()
            self.tailer.committed()
            return True
        try:
            self.journal.commit(incidents, positions, notices, time.time())
        except JournalError as exc:
            self.engine.rollback()
            self.tailer.rollback()
            self._retry_delay = min(max(self._retry_delay * 2, RETRY_MIN), RETRY_MAX)
            logger.error("cannot write the journal (%s); reading paused, retrying in %.1fs", exc, self._retry_delay)
            return False
        if self._retry_delay:
            logger.info("journal writable again; reading resumed")
            self._retry_delay = 0.0
        self.engine.commit()
        self.tailer.committed()
        if notices:
            self.notices_made += len(notices)
            if self.sink is not None:
                self.sink.wake()
        return True

    def _warn_skipped(self, path: str, count: int, first: tuple[int, str] | None, now: float) -> None:
        last = self._skip_warned.get(path, 0.0)
        if now - last < SKIP_WARN_EVERY:
            return
        self._skip_warned[path] = now
        where = f" (first at offset {first[0]}: {first[1]})" if first else ""
        logger.warning("skipped %d line(s) in %s%s; further warnings for this file muted for %ds",
                       count, path, where, int(SKIP_WARN_EVERY))

    # -- config ------------------------------------------------------------------------

    @staticmethod
    def _make_parsers(s: Settings) -> list[LineParser]:
        return [LineParser(app=src.app, tz=src.tzinfo, max_line_bytes=src.max_line_bytes) for src in s.sources]

    def _apply_targets(self, sink: NotifySink) -> None:
        """Route later notices to ``sink``'s targets and hand the outbox over to it."""
        assert self.journal is not None
        self.journal.set_targets(sink.routes)
        keep = {key for key, _ in sink.routes} or {STDERR_TARGET}
        dropped = self.journal.drop_target_deliveries(keep)
        if dropped:
            logger.warning("dropped %d pending notice(s) for notify targets no longer configured", dropped)
        if self.sink is not None:
            self.sink.stop(time.monotonic() + 2.0)
        self.sink = sink
        sink.start()

    @staticmethod
    def _make_sink(s: Settings) -> NotifySink:
        """A sink for the configured targets; an unusable Apprise URL is a config error."""
        try:
            return NotifySink(s.state_dir, s.notify)
        except NotifyError as exc:
            index = next((i for i, t in enumerate(s.notify) if t.redacted in str(exc)), 0)
            raise ConfigError(f"notify.{index}.url: {exc}") from None

    def reload(self) -> None:
        """SIGHUP: re-read the config file; keep the old one if the new one is invalid."""
        path = self.settings.config_path
        try:
            new = Settings.load(path)
        except ConfigError as exc:
            logger.error("reload refused, keeping the old config: %s", str(exc).replace("\n", "; "))
            return
        if new.state_dir != self.settings.state_dir:
            logger.warning("state_dir cannot change on reload (restart instead); keeping %s", self.settings.state_dir)
            new = new.model_copy(update={"state_dir": self.settings.state_dir})
        old = self.settings
        targets_changed = [(t.url, t.tags) for t in new.notify] != [(t.url, t.tags) for t in old.notify]
        sink = None
        if targets_changed:
            try:
                sink = self._make_sink(new)
            except ConfigError as exc:
                logger.error("reload refused, keeping the old config: %s", exc)
                return
        self.settings = new
        self.engine.policy = new
        self.engine.server_id, self.engine.node_name = new.server_id, new.node_name
        self.parsers = self._make_parsers(new)
        assert self.tailer is not None
        self.tailer.reconfigure(new.sources)
        if sink is not None:
            self._apply_targets(sink)
        logger.info("config reloaded: %d source(s), %d notify target(s)", len(new.sources), len(new.notify))

    # -- systemd -----------------------------------------------------------------------

    def _status_line(self) -> str:
        pending = self.journal.pending_notices() if self.journal is not None else 0
        return (f"{len(self.engine.active())} open incident(s), {self.lines_read} lines read, "
                f"{pending} notice(s) pending")

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            self.notifier.watchdog(self._status_line())
            await asyncio.sleep(interval)


def run_daemon(settings: Settings) -> None:
    """Blocking entry point for ``errord run``."""
    try:
        asyncio.run(Daemon(settings).run())
    except ErrordError:
        raise
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the handlers were installed
        pass
