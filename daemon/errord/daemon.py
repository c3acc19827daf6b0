"""Wires the parts together and owns their lifecycle: startup, the main loop, shutdown.

Shaped like uvicorn's ``Server``: signal handlers only set flags; shutdown drains within a
deadline; a second SIGTERM/SIGINT forces the exit. The daemon owns what lives as long as
the process: the state_dir lock, the journal, the engine, the sources, the sinks (the
notify helper, the MongoDB writer), reload (SIGHUP), the systemd watchdog and the
recovery of open incidents from MongoDB (``mongostart``). Each batch of lines goes through
``batch.Batch``, where CONTRACT §7 is made true (one transaction, or a rollback).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from errord.batch import Batch, Committed
from errord.config import RunConfig
from errord.control import Controller
from errord.engine import Engine
from errord.errors import ConfigError, ErrordError, JournalError
from errord.health import BatchTally, Health, Snapshot
from errord.heaptrim import HeapTrim
from errord.mongostart import start_mongo
from errord.policy.base import Context
from errord.policy.mute import MuteOracle
from errord.policy.pipeline import standard_policy
from errord.policy.route import STDERR_TARGET, Router
from errord.reload import load_config
from errord.sinks import make_notify_sink, sink_key
from errord.sinks.base import NoticeSink, Sink
from errord.sources.fdbudget import raise_open_file_limit
from errord.sources.multi import Inputs
from errord.store.journal import Journal
from errord.store.runstate import RunLock, check_state_dir
from errord.store.schema import DB_NAME
from errord.store.upkeep import Upkeep
from errord.systemd import SystemdNotifier

if TYPE_CHECKING:
    # Imported where they are used, only when configured: pymongo ([mongodb]) and
    # prometheus_client ([metrics]) cost the daemon ~6 and ~2 MB of resident memory it
    # need not carry without them (Apprise lives in the notify helper process).
    from errord.fleet.gate import FleetGate
    from errord.http.server import ApiServer
    from errord.metrics import Metrics, MetricsServer

__all__ = ["Daemon", "run_daemon"]

logger = logging.getLogger(__name__)

STOP_DEADLINE = 8.0  # seconds from SIGTERM to exit (CONTRACT §7 allows 10)
# The test suite's alone (not a setting): a shorter stop, for tests that stop a daemon whose
# notify target is down and are not about how long it keeps trying (see stop_deadline).
TEST_STOP_DEADLINE = "ERRORD_TEST_STOP_DEADLINE"
SIGNAL_REPEAT_GRACE = 0.5  # seconds in which a repeated stop signal is the same request
MONGO_STOP = 2.0  # seconds of STOP_DEADLINE the MongoDB writer may drain; the rest stays queued
STATUS_EVERY = 30.0  # seconds between STATUS= updates to systemd when it set no watchdog
# The cadence while following. While reads find lines, the next read is READ_GAP seconds
# later (a file written every 10 ms is read ~40 times a second, not 100, with one wake-up
# each); once one finds nothing, the loop waits for the folder watch again, and input that
# wakes it sooner than READ_GAP after the last read waits for the rest (a line after a
# pause is read at once). A batch whose lines
# notify nobody is held open up to HOLD seconds (``Batch.step``), so such lines cost ~1
# transaction (fsync) a second; a notice is committed as soon as it is read.
READ_GAP = 0.025
HOLD = 1.0
# After reading on the timer this long without a pause, the sources' change notifications
# are stopped until the loop waits for input again (``Source.rest``): they only cost
# wake-ups meanwhile (issue 13). Longer than the gaps of a bursty writer, so a file
# written in bursts does not stop and start its watch at every burst.
REST_AFTER = 1.0
# While reading on the timer, the event loop gets a turn (signals, watch reports, timers,
# metrics scrapes) at least this often, not at every read: after a sleep a turn costs
# ~120 µs of CPU here (its code is cold), more than the sleep's own wake-up (~90 µs), 40
# times a second (issue 13). A stop or reload asked meanwhile is seen this much later. A
# journal source's reader is a task of the loop: with one, the loop turns at every read.
TURN_EVERY = 0.1


class Daemon:
    """The running errord. ``await Daemon(settings).run()`` until SIGTERM/SIGINT."""

    def __init__(
        self, settings: RunConfig, *, notifier: SystemdNotifier | None = None, stop_deadline: float = STOP_DEADLINE
    ) -> None:
        self.settings = settings
        self.stop_deadline = stop_deadline  # seconds from SIGTERM to exit
        self.notifier = notifier or SystemdNotifier()
        self.lock = RunLock(settings.state_dir)
        self.journal: Journal | None = None
        self.engine = Engine(
            settings,
            scope=settings.scope,
            server_id=settings.server_id,
            node_name=settings.node_name,
            max_open_incidents=settings.limits.max_open_incidents,
        )
        self.router = Router()  # who gets each notice; its routes follow the sink's targets
        self.policy = standard_policy(self.router)
        self.engine.mutes = self.mutes = MuteOracle.for_config(settings)  # CONTRACT §8: asked before alerting
        self.control: Controller | None = None  # silence/ack/resolve handed over by the CLI
        self.source: Inputs | None = None  # the files and journals (sources.multi)
        self.batch: Batch | None = None
        self.sink: NoticeSink | None = None
        self.mongo: Sink | None = None
        self.alertmanager: Sink | None = None  # [[alertmanager]] pusher (CONTRACT §11)
        self._started = False  # startup completed: only then is there a stop to log
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reload_requested = False
        self._last_read = 0.0  # time.monotonic() of the last step that read lines (READ_GAP)
        self._streaming = False  # the last pump read lines: the next read is READ_GAP later
        self._streaming_since = 0.0  # time.monotonic() of the first read of this stream
        self._turned = 0.0  # time.monotonic() of the loop's last turn in a gap (TURN_EVERY)
        self._first_signal: float | None = None
        self.upkeep: Upkeep | None = None  # once the journal is open
        self.heap = HeapTrim()  # what a burst of reading freed goes back once idle (heaptrim)
        # Prometheus counters and the HTTP server only with [metrics]; the pipeline's
        # health (systemd's watchdog and STATUS=, and /healthz when served) always.
        self.metrics: Metrics | None = None
        if settings.metrics is not None or settings.http is not None:  # [http] serves /metrics too
            from errord.metrics import Metrics

            self.metrics = Metrics()
        self.health: Health = self.metrics.health if self.metrics is not None else Health()
        self.metrics_server: MetricsServer | None = None
        self.http_server: ApiServer | None = None

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
        """Check the notify URLs, take the state_dir, open the journal and the sources;
        afterwards the daemon is ready (systemd's READY=1)."""
        s = self.settings
        # Checks the notify URLs (in the helper) before anything is created or locked.
        sink = make_notify_sink(s, helper=True)
        try:
            await self._open_state(s, sink)
        except BaseException:
            if self.sink is None:
                sink.stop(time.monotonic())
            raise
        self.lock.update(ready=True)
        self._started = True
        self.health.started()
        self.notifier.ready(self._status_line())
        logger.info(
            "errord started: %d source(s), %d open incident(s), %s, state in %s",
            len(s.sources),
            self.engine.open_count(),
            f"{len(s.notify)} notify target(s)" if s.notify else "notices to stderr",
            s.state_dir,
        )

    async def _open_state(self, s: RunConfig, sink: NoticeSink) -> None:
        """Lock and open the state, restore the engine, start the sinks, open the sources."""
        check_state_dir(s.state_dir, DB_NAME)  # not a folder, or its store lost: exit 2, one line
        try:
            s.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.lock.acquire()
        except OSError as exc:
            raise JournalError(f"cannot use state_dir {s.state_dir}: {exc.strerror or exc}") from None
        self.journal = Journal(s.state_dir)
        self.upkeep = Upkeep(self.journal)
        self.heap.release = self._release_memory
        self.mongo = await start_mongo(self.journal, s)  # before the engine is restored
        # the messages stay in the journal (read when a notice needs one: Incident.message)
        self.engine.restore(self.journal.iter_active(messages=False), pack=True)
        self.control = Controller(self.engine, self.policy, self.journal, s, self.mutes)
        self.control.load()
        positions = self.journal.positions()
        first_start = self.journal.get_meta("initialized") is None
        if self.metrics is not None:
            self.metrics.attach(asyncio.get_running_loop(), self._snapshot)
        if self.metrics is not None and s.metrics is not None and (s.http is None or s.http.listen != s.metrics.listen):
            from errord.metrics import MetricsServer

            self.metrics_server = MetricsServer(self.metrics, s.metrics.host, s.metrics.port)
            self.metrics_server.start()  # /healthz answers "starting" until the sources are open
        if s.http is not None:
            from errord.http.server import ApiServer

            metrics = self.metrics
            assert metrics is not None
            self.http_server = ApiServer(
                s.http.host, s.http.port, lambda: self.settings, self.health, metrics_text=metrics.text
            )
            self.http_server.start()  # the API, the page, /metrics and /healthz (CONTRACT §10)
        self._apply_targets(sink)
        self._start_alertmanager(s)
        # Once the state is ours (a refused start says only why) and before any log file
        # is opened: one descriptor per followed file.
        raise_open_file_limit()
        self.source = Inputs(s.sources, positions, first_start=first_start, load_meta=self.journal.get_meta)
        await self.source.open()
        # Persist where the first start put each file (start_at = "end") and each journal
        # source, together with the flag that says the first start is over, so a crash
        # here cannot redo it differently.
        cp = self.source.checkpoint()
        self.journal.commit([], cp.positions, [], time.time(), meta={**cp.meta, "initialized": "1"})
        self.source.committed()
        self.batch = Batch(
            self.source,
            self.engine,
            self.policy,
            self.journal,
            s,
            health=self.health,
            publish=self._publish if self.metrics is not None else None,
            count_kinds=self.metrics is not None,
        )
        if s.fleet is not None:  # CONTRACT §13: pymongo only with [fleet]
            from errord.fleet.start import share_silences, start_fleet

            gate = self.batch.fleet = await asyncio.to_thread(start_fleet, s)
            if gate is not None:  # silences made on one member apply to the whole fleet
                self.control.shared = share_silences(gate, s, self.journal, self.mutes)
                if not gate.down:
                    self.control.shared.sync(time.time(), self.engine.snapshot)

    def _start_alertmanager(self, s: RunConfig) -> None:
        """Start pushing open incidents to the ``[[alertmanager]]`` list (none: nothing)."""
        self.alertmanager = None
        if not s.alertmanager:
            return
        from errord import openssl_hold

        openssl_hold.let_in()  # a reload may add one: its urllib.request must do https://
        from errord.sinks.alertmanager import AlertmanagerSink

        def labels_for(code: str) -> tuple[dict[str, str], tuple[str | None, str | None]]:
            per = self.settings.codes.get(code)  # the config in force: a reload changes them
            return (dict(per.labels), (per.description, per.runbook)) if per is not None else ({}, (None, None))

        pusher = AlertmanagerSink(
            s.state_dir, s.alertmanager, notify_for=lambda code: self.settings.notify_for(code), labels_for=labels_for
        )
        pusher.start()
        self.alertmanager = pusher

    async def shutdown(self) -> None:
        """Stop reading, commit what was read, give the sink a few seconds, release all.

        Also after a failed ``startup``: it releases what was set up, without a word (the
        error that ended the start is the one line to read)."""
        # counted from the signal: CONTRACT §7 gives 10 s from SIGTERM to exit
        deadline = (self._first_signal or time.monotonic()) + self.stop_deadline
        self.notifier.stopping()
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.stop)
            self.metrics_server = None
        if self.http_server is not None:
            await asyncio.to_thread(self.http_server.stop)
            self.http_server = None
        if self.source is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.source.close(), timeout=2.0)
        # Side by side: the notify sink may use the whole deadline, MongoDB only its share
        # (what it cannot write by then waits in the outbox for the next start).
        stops = []
        if self.alertmanager is not None:
            stops.append(asyncio.to_thread(self.alertmanager.stop, time.monotonic() + 2.0))
        if self.sink is not None:
            stops.append(asyncio.to_thread(self.sink.stop, max(deadline - 1.0, time.monotonic())))
        if self.mongo is not None:
            stops.append(asyncio.to_thread(self.mongo.stop, min(time.monotonic() + MONGO_STOP, deadline - 1.0)))
        await asyncio.gather(*stops)
        if self.journal is not None:
            self.journal.close()
        self.lock.release()
        self.notifier.close()
        if self._started:  # a refused start says why, once, and claims no stop
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
        self._wake_loop()

    def _on_reload_signal(self) -> None:
        self._reload_requested = True
        self._wake_loop()

    def _wake_loop(self) -> None:
        self._wake.set()
        if self.source is not None:
            self.source.wake()

    # -- the loop ----------------------------------------------------------------------

    async def main_loop(self) -> None:
        """Until stopped: reload when asked, wait for input (or out a journal retry), pump."""
        assert self.source is not None
        while not self._stop.is_set():
            self.health.beat()
            if self._reload_requested:
                self._reload_requested = False
                if self.batch is not None:
                    self._committed(self.batch.flush())  # read with the old config: committed first
                await self.reload()
            if self.batch is not None and self.batch.retry_delay:
                await self._sleep(self.batch.retry_delay)
                if self._stop.is_set():
                    break
            elif self._streaming:
                # A file is being written: read again in READ_GAP, without waiting for its
                # watch (which rests meanwhile: one wake-up per read, like a poll)
                if time.monotonic() - self._streaming_since >= REST_AFTER:
                    self.source.rest()
                await self._gap()
            else:
                await self._wait_for_input()
                await self._coalesce()
            await self.pump(0.0 if self._stop.is_set() or self._reload_requested else HOLD)
            if self.batch is not None:
                self._committed(self.batch.timers())  # reminders, auto-resolve (CONTRACT §9)
            self._control_tick()
            if self.upkeep is not None:
                self.upkeep.tick()
            if self.batch is not None:
                self.heap.tick(self.batch.lines_read)
            if self.batch is not None and self.batch.fleet is not None:  # leases: every lease/3, lines or not
                self._fleet_tick(self.batch.fleet)
        if self.batch is not None:
            self._committed(self.batch.flush())  # stopping: what was read is committed

    async def _wait_for_input(self) -> None:
        """Until the sources may have lines, the open batch is due, a second passed, or
        stop/reload was asked (``_wake``, which also wakes the sources' wait). No task per
        wait: cheap."""
        assert self.source is not None and self.batch is not None
        if not self._wake.is_set():
            due = self.batch.due_in()
            await self.source.wait(1.0 if due is None else min(1.0, due))
        self._wake.clear()

    async def _gap(self) -> None:
        """READ_GAP between two reads of a stream. A plain sleep, then, every
        ``TURN_EVERY`` (or always, with a journal source), one turn of the loop for what
        came meanwhile (signals, watch reports, timers, a journal's pipe): an
        ``asyncio.sleep`` costs two turns of the loop and a timer, ~110 µs more CPU per
        wake-up than ``time.sleep`` on a core that was idle, and even one turn costs more
        than the sleep (issue 13). Nothing else waits on the loop for long: the API and
        the helper have threads of their own (which this sleep does not hold: it releases
        the GIL), and a stop is seen at most READ_GAP + TURN_EVERY later."""
        if self._stop.is_set() or self._reload_requested:
            return
        time.sleep(READ_GAP)
        now = time.monotonic()
        if now - self._turned >= TURN_EVERY or self._loop_reads():
            self._turned = now
            await asyncio.sleep(0)

    def _loop_reads(self) -> bool:
        """A source is read by a task of the loop (a journal source's journalctl pipe)."""
        return any(src.journal is not None for src in self.settings.sources)

    async def _coalesce(self) -> None:
        """Woken for input right after a read: let more come until READ_GAP after it."""
        left = self._last_read + READ_GAP - time.monotonic()
        if left > 0 and not self._reload_requested and not self._stop.is_set():
            await asyncio.sleep(left)  # a stop asked meanwhile waits these few ms

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def pump(self, hold: float = 0.0) -> None:
        """Commit batches until nothing is left to read (or stop/reload is asked); with
        ``hold``, until a batch is held open (``Batch.step``)."""
        assert self.batch is not None
        streamed, self._streaming = self._streaming, False
        while True:
            done = self.batch.step(hold)
            if done is None:
                return
            self._last_read = time.monotonic()
            if not streamed and not self._streaming:
                self._streaming_since = self._last_read
            self._streaming = True
            if not done.ok or done.held:
                return
            self._committed(done)
            self.health.beat()  # a long backlog is progress too
            self._control_tick()  # commands take effect within 2 s during a backlog too
            if self._stop.is_set() or self._reload_requested:
                return
            await asyncio.sleep(0)  # let signals and watch events in between batches

    def _committed(self, done: Committed | None) -> None:
        """A batch is durable: wake who delivers what it brought."""
        if done is None or not done.ok:
            return
        if done.notices and self.sink is not None:
            self.sink.wake()
        if done.incidents and self.mongo is not None:
            self.mongo.wake()
        if self.upkeep is not None:
            self.upkeep.checkpoint()

    def _release_memory(self) -> None:
        """Idle (``heaptrim``): the open incidents a command or a reload made objects again
        are packed again (``Engine.freeze_all``), then the journal lets its cache go."""
        self.engine.freeze_all()
        if self.journal is not None:
            self.journal.release_memory()

    def _control_tick(self) -> None:
        """Apply the commands the CLI handed over (``control.Controller.tick``, when due).
        A held batch is committed first when there is one to apply: a command starts a
        batch of the engine's own."""
        if self.control is None or not self.control.due():
            return
        if self.control.tick(before=self._flush) and self.sink is not None:
            self.sink.wake()

    def _flush(self) -> None:
        if self.batch is not None:
            self._committed(self.batch.flush())

    def _fleet_tick(self, gate: FleetGate) -> None:
        """Leases, the fleet's silences, and the failures owed by a take-over (CONTRACT §13):
        those are a transaction of their own, so a held batch is committed first."""
        owed = gate.tick(time.time(), self.engine.snapshot)
        if not owed or self.batch is None or self.journal is None:
            return
        self._committed(self.batch.flush())
        s = self.settings
        ctx = Context(
            now=time.time(), server_id=s.server_id, node_name=s.node_name, tags_for=s.tags_for, style=s.notice_style
        )
        if gate.send_owed(owed, self.engine, self.policy, self.journal, ctx) and self.sink is not None:
            self.sink.wake()

    def _publish(self, tally: BatchTally) -> None:
        """A batch is durable: its tally goes to the metrics."""
        assert self.metrics is not None
        self.metrics.add_batch(tally, [src.label for src in self.settings.sources])

    # -- config ------------------------------------------------------------------------

    def _apply_targets(self, sink: NoticeSink, names: Mapping[str, str] | None = None) -> None:
        """Route later notices to ``sink``'s targets and hand the outbox over to it; the
        open incidents forget the removed targets (``names``: key -> redacted URL)."""
        assert self.journal is not None
        self.router.set_routes(sink.routes)
        removed = self.engine.active_where(self.router.names_removed)  # thaws only those
        changed = self.router.forget_removed(removed, names or {})
        if changed:
            with contextlib.suppress(JournalError):  # not durable yet: forgotten again at the next start
                self.journal.commit(changed, [], [], time.time())
        self.engine.freeze_all()  # those made objects again: packed again
        keep = {key for key, _ in sink.routes} or {STDERR_TARGET}
        dropped = self.journal.outbox.drop_targets(keep)
        if dropped:
            logger.warning("dropped %d pending notice(s) for notify targets no longer configured", dropped)
        if self.sink is not None:
            self.sink.stop(time.monotonic() + 2.0)
        self.sink = sink
        sink.on_result = self.metrics.notice_result if self.metrics is not None else None
        if hasattr(sink, "on_template_failure"):
            sink.on_template_failure = self.metrics.template_failed if self.metrics is not None else None
        sink.start()

    async def reload(self) -> None:
        """SIGHUP: re-read the config file; keep the old one if the new one is invalid.

        Validated in a child process (``reload.load_config``), as ``errord run`` validated
        at start, so this process never imports pydantic. Reading waits for it (~0.5 s);
        the watchdog and /metrics go on.
        """
        path = self.settings.config_path
        try:
            new = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            logger.error("reload refused, keeping the old config: %s", str(exc).replace("\n", "; "))
            return
        if new.state_dir != self.settings.state_dir:
            logger.warning("state_dir cannot change on reload (restart instead); keeping %s", self.settings.state_dir)
            new = dataclasses.replace(new, state_dir=self.settings.state_dir)
        if new.metrics != self.settings.metrics:
            logger.warning("[metrics] cannot change on reload (restart instead); keeping the old one")
            new = dataclasses.replace(new, metrics=self.settings.metrics)
        if new.mongodb != self.settings.mongodb:
            logger.warning("[mongodb] cannot change on reload (restart instead); keeping the old one")
            new = dataclasses.replace(new, mongodb=self.settings.mongodb)
        old = self.settings
        # targets, webhooks, their templates and formats (CONTRACT §11), [limits] and the host
        # names (the workers apply [limits] and name the host): any change makes a new sink
        targets_changed = sink_key(new) != sink_key(old) or (new.limits, new.server_id, new.node_name) != (
            old.limits,
            old.server_id,
            old.node_name,
        )
        sink = None
        if targets_changed:
            try:
                sink = make_notify_sink(new, helper=True)
            except ConfigError as exc:
                logger.error("reload refused, keeping the old config: %s", exc)
                return
        self.settings = new
        self.engine.policy = new
        self.engine.max_open_incidents = new.limits.max_open_incidents
        self.engine.server_id, self.engine.node_name = new.server_id, new.node_name
        self.mutes.configure(new)
        if self.control is not None:
            self.control.config = new
        assert self.source is not None and self.batch is not None
        self.batch.configure(new)
        self.source.reconfigure(new.sources)
        if sink is not None:
            self._apply_targets(sink, {t.key: t.redacted for t in old.targets})
        if new.alertmanager != old.alertmanager:
            if self.alertmanager is not None:
                self.alertmanager.stop(time.monotonic() + 2.0)
            self._start_alertmanager(new)
        logger.info("config reloaded: %d source(s), %d notify target(s)", len(new.sources), len(new.notify))

    # -- metrics and systemd -----------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        """Scrape-time state; runs in the event loop (see ``metrics``)."""
        files = [(f.path, max(f.size - f.position, 0)) for f in self.source.files()] if self.source else []
        j = self.journal
        return Snapshot(
            pending_notices=j.outbox.pending() if j is not None else 0,
            pending_mongo=j.mongo.pending() if j is not None else 0,
            open_incidents=self.engine.open_count(),
            files=files,
            held_notices=j.limits.held() if j is not None else 0,
            digests=j.limits.totals() if j is not None else (0, 0),
        )

    def _status_line(self) -> str:
        """One line for systemd's STATUS= (``systemctl status errord``)."""
        try:
            pending: int | str = self.journal.outbox.pending() if self.journal is not None else 0
        except JournalError:  # a failing disk fails reads too: the watchdog task must go on
            pending = "?"
        lines_read = self.batch.lines_read if self.batch is not None else 0
        line = f"{self.engine.open_count()} open incident(s), {lines_read} lines read, {pending} notice(s) pending"
        ok, reason = self.health.check()
        return line if ok else f"{reason}; {line}"

    async def _watchdog(self) -> None:
        """WATCHDOG=1 at half of WatchdogSec, with STATUS=; STATUS= alone without a watchdog."""
        if not self.notifier.enabled:
            return
        interval = self.notifier.watchdog_interval
        while True:
            if interval is None or self.health.stalled():
                self.notifier.status(self._status_line())  # stalled: let systemd's watchdog fire
            else:
                self.notifier.watchdog(self._status_line())
            await asyncio.sleep(interval or STATUS_EVERY)


def stop_deadline(environ: Mapping[str, str]) -> float:
    """Seconds from SIGTERM to exit: ``STOP_DEADLINE``, or ``$ERRORD_TEST_STOP_DEADLINE``
    (1 to ``STOP_DEADLINE``) where the test suite sets it. Not a setting: it only makes
    tests whose target is down at the stop faster; the one that times the stop leaves it
    unset. A bad value is a ``ConfigError`` naming it."""
    raw = environ.get(TEST_STOP_DEADLINE)
    if raw is None:
        return STOP_DEADLINE
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 1.0 <= value <= STOP_DEADLINE:  # also NaN
        raise ConfigError(f"{TEST_STOP_DEADLINE}: must be seconds from 1 to {STOP_DEADLINE:g}, not {raw!r}")
    return value


def run_daemon(settings: RunConfig) -> None:
    """Blocking entry point for ``errord run``."""
    try:
        asyncio.run(Daemon(settings, stop_deadline=stop_deadline(os.environ)).run())
    except ErrordError:
        raise
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the handlers were installed
        pass
