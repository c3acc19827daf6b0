"""Apprise delivery: drains the journal's outbox, one worker thread per target.

Each target (keyed by ``TargetLike.key``) has its own thread, its own ``Journal``
connection and its own ``apprise.Apprise`` object, so a slow or dead target only delays
itself. Within a target, notices go out strictly in the order they were committed: when
one fails, the target backs off (``base * 2**attempts``, capped, with a little jitter)
and sends nothing newer until that one got through.

Timeouts: ``cto``/``rto`` (Apprise's connect / read timeout URL parameters, honoured by
its HTTP plugins) are appended to every URL that does not set them. Apprise is told to
send in the worker's own (daemon) thread rather than in its executor, whose threads
the interpreter joins at exit: a hung send can then delay only its own target, never
the process's exit. (A plugin that ignores cto/rto can stall its worker; it stays alone.)

Secrets: the URL is never logged. Our messages name a target by ``redacted``; a filter
on the ``apprise`` and ``urllib3`` loggers masks the URL and its secret-looking parts
(password, long tokens) in their records while a worker or ``send_test`` runs
(``sinks.secrets``).

No target configured: the pseudo-target ``"stderr"`` writes one line per notice to
``stream`` and always succeeds.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TextIO
from urllib.parse import parse_qsl

import apprise

from errord.backoff import backoff
from errord.errors import JournalError, NotifyError
from errord.model import Notice
from errord.notices import clean_text
from errord.policy.digest import digest, group
from errord.policy.limit import NO_LIMITS, LimitRule, LimitState, Send, decide
from errord.policy.route import STDERR_TARGET
from errord.ratelimit import RateLimit
from errord.sinks.base import NoticeSink, TargetLike
from errord.sinks.capture import capturing
from errord.sinks.secrets import Scrub, url_secrets
from errord.sinks.templates import digest_vars
from errord.store.journal import Journal

if TYPE_CHECKING:
    from errord.sinks.templates import CompiledTemplate

__all__ = ["NotifySink", "SendResult", "with_timeouts"]

logger = logging.getLogger(__name__)

_POLL = 1.0  # seconds between outbox looks while something waits (a retry, a failing journal)
# seconds between looks at an empty outbox: the daemon's wake() says when there is more,
# this is only the net under it (each look is a wake-up of an idle process)
_EMPTY_POLL = 10.0
_BATCH = 50
# Most notices one digest stands for (read at once); more held than this go out as
# several digests, each a send of the budget (a bigger storm holds on, never one by one).
_DIGEST_MAX = 100_000
_GROUP_MAX = 1_000  # most notices one group_wait message lists (the rest: the next group)
# Each accepted notice is recorded (marked delivered) at once, before the next send, so a
# kill -9 repeats at most the one notice in flight (CONTRACT §7). What made that cost a
# quarter of the helper's time in a burst was the fsync of each mark, not the transaction:
# the workers' connections commit with synchronous=NORMAL (WAL), which survives a killed
# process but not a power loss; once a target's outbox drains, one WAL sync (``Journal.sync``:
# an fdatasync of the -wal file) makes them durable, so a power loss can repeat at most the
# current burst.
_SCRUBBED_LOGGERS = ("apprise", "urllib3.connectionpool")
_REJECTED = -1.0  # _Outcome.retry_after of a send refused for good (a webhook's 4xx)
JOURNAL_WARN_EVERY = 60.0  # seconds between "journal" warnings of one target while it fails


class SendResult(NamedTuple):
    """One target's answer to ``NotifySink.send_test``: accepted, and if not, why (Apprise's
    reason, e.g. "… (Connection refused)"; "" when accepted)."""

    ok: bool
    reason: str


class _Outcome(NamedTuple):
    ok: bool
    error: str  # "" when accepted
    retry_after: float | None  # seconds the target asked to wait (HTTP Retry-After)


def with_timeouts(url: str, timeout: float) -> str:
    """``url`` with ``cto``/``rto`` set to ``timeout`` unless the user already set them."""
    query = url.split("?", 1)[1] if "?" in url else ""
    present = {k.lower() for k, _ in parse_qsl(query, keep_blank_values=True)}
    extra = [f"{k}={timeout:g}" for k in ("cto", "rto") if k not in present]
    if not extra:
        return url
    sep = "&" if "?" in url else "?"
    if url.endswith(("?", "&")):
        sep = ""
    return url + sep + "&".join(extra)


# One sender per (state_dir, target) in the process. A sink stopped at its deadline may
# leave a worker inside a send (a hung endpoint); the sink that replaces it (SIGHUP) must
# not send the same head notice meanwhile. Process-wide on purpose: it guards a resource
# (the outbox rows of one target) that is itself shared across sink instances.
_SENDER_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_SENDER_LOCKS_GUARD = threading.Lock()


def _sender_lock(state_dir: Path, key: str) -> threading.Lock:
    with _SENDER_LOCKS_GUARD:
        return _SENDER_LOCKS.setdefault((str(state_dir.resolve()), key), threading.Lock())


class _Target:
    """One delivery target as a worker sees it."""

    def __init__(
        self,
        key: str,
        name: str,
        url: str | None,
        tags: tuple[str, ...],
        fmt: str = "text",
        template: CompiledTemplate | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.key = key
        self.headers = headers  # not None: a webhook (CONTRACT §11), POSTed without Apprise
        self.fmt = fmt  # the Apprise body format (CONTRACT §11)
        self.template = template  # None: the built-in text
        self.name = name  # redacted, for logs
        self.url = url  # None: the stderr pseudo-target
        self.tags = tags
        self.wakeup = threading.Event()
        self.sending = False  # inside a send (for the shutdown warning)
        self.thread: threading.Thread | None = None
        # delivery id -> when the target accepted it, not recorded yet (recording failed:
        # the journal locked or failing): recorded later, never sent again
        self.accepted: dict[int, float] = {}
        self.unsynced = False  # marks recorded without an fsync since the outbox last drained
        # a limited send accepted but not recorded yet (the journal failing): recorded
        # before anything else, never sent again
        self.unrecorded: tuple[dict[int, float], LimitState] | None = None


class NotifySink(NoticeSink):
    """Delivers the journal's outbox through Apprise; see the module doc."""

    def __init__(
        self,
        state_dir: Path,
        targets: Sequence[TargetLike],
        *,
        stream: TextIO = sys.stderr,
        backoff: tuple[float, float] = (1.0, 300.0),
        timeout: float = 10.0,
        limits: LimitRule = NO_LIMITS,
        host: str = "",
        templates: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.stream = stream
        self.limits = limits  # [limits] notices / group_wait, per target (policy.limit)
        self.host = host  # server_id/node_name, for the title of a digest or group
        self.backoff = backoff
        self.timeout = timeout
        self._targets: list[_Target] = []
        secrets: set[str] = set()
        problems: list[str] = []
        counts = {"notify": 0, "webhook": 0}
        for t in targets:
            kind = "webhook" if getattr(t, "kind", "") == "webhook" else "notify"
            index = counts[kind]
            counts[kind] += 1
            fmt = str(getattr(t, "format", "text"))
            section = "webhooks" if kind == "webhook" else "notify"
            tpl = _compiled(getattr(t, "template", None), templates or {}, fmt, f"{section}.{index}", problems)
            if kind == "webhook":  # no Apprise: the URL is POSTed as it is
                headers = dict(getattr(t, "headers", {}) or {})
                self._targets.append(_Target(t.key, t.redacted, t.url, tuple(t.tags), fmt, tpl, headers))
                secrets |= url_secrets(t.url) | {v for v in headers.values() if len(v) >= 4}
                continue
            url = with_timeouts(t.url, timeout)
            # Apprise logs the URL it loaded at DEBUG, tokens in the path included
            check = Scrub(url_secrets(t.url) | url_secrets(url))
            for name in _SCRUBBED_LOGGERS:
                logging.getLogger(name).addFilter(check)
            try:
                with capturing() as seen:  # Apprise logs why it cannot use a URL
                    usable = apprise.Apprise.instantiate(url) is not None
            finally:
                for name in _SCRUBBED_LOGGERS:
                    logging.getLogger(name).removeFilter(check)
            if not usable:
                why = check.scrub(seen.reason())
                problems.append(
                    f"notify.{index}.url: {t.redacted}: not a usable Apprise URL" + (f" ({why})" if why else "")
                )
                continue
            self._targets.append(_Target(t.key, t.redacted, url, tuple(t.tags), fmt, tpl))
            secrets |= url_secrets(t.url) | url_secrets(url)
        if problems:
            raise NotifyError(problems)
        if not self._targets:
            self._targets.append(_Target(STDERR_TARGET, STDERR_TARGET, None, ()))
        self._scrub = Scrub(secrets)
        self._scrub_users = 0  # workers / send_test calls running: filter attached while > 0
        self._scrub_lock = threading.Lock()
        self._stop = threading.Event()  # hard stop: leave now
        self._deadline: float | None = None  # set by stop(): drain until then
        self._started = False
        # Called from the worker threads after each send: (redacted target name, accepted).
        self.on_result: Callable[[str, bool], None] | None = None
        # Called when a template failed at run time and the built-in text went out instead.
        self.on_template_failure: Callable[[str], None] | None = None
        # A journal that stays unusable fails every retry (each second): told once a minute.
        self._journal_warn = RateLimit(JOURNAL_WARN_EVERY)

    # -- public ------------------------------------------------------------------------

    @property
    def routes(self) -> list[tuple[str, tuple[str, ...]]]:
        """The routing table for ``policy.route.Router.set_routes``.

        Empty when no target is configured: the router then routes every notice,
        tagged or not, to the ``"stderr"`` pseudo-target this sink drains.
        """
        return [(t.key, t.tags) for t in self._targets if t.url is not None]

    def start(self) -> None:
        """Start one daemon worker thread per target."""
        if self._started:
            return
        self._started = True
        for t in self._targets:
            self._scrub_enter()  # left by the worker itself, which may outlive stop()
            t.thread = threading.Thread(target=self._worker, args=(t,), name=f"errord-notify-{t.key}", daemon=True)
            t.thread.start()

    def wake(self) -> None:
        """New notices were committed: look at the outbox now. Cheap, thread-safe."""
        for t in self._targets:
            t.wakeup.set()

    def stop(self, deadline: float) -> None:
        """Deliver what is due until every queue is empty or ``deadline``
        (``time.monotonic()``) passes, then stop the workers. Returns by the deadline;
        a worker stuck in a send is left behind (daemon thread) and exits after it."""
        self._deadline = deadline
        self.wake()
        for t in self._targets:
            if t.thread is not None:
                t.thread.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        self.wake()
        for t in self._targets:
            if t.thread is not None:
                t.thread.join(max(0.0, min(0.2, deadline - time.monotonic())))
                if t.thread.is_alive() and t.sending:
                    logger.warning(
                        "notify target %s: still sending at shutdown; if the process exits first,"
                        " that notice is sent again at the next start",
                        t.name,
                    )

    def pending(self) -> int:
        """Notices waiting for delivery, all targets (opens a short-lived connection)."""
        with Journal(self.state_dir) as j:
            return j.outbox.pending()

    def send_test(self, title: str, body: str) -> dict[str, SendResult]:
        """Send one notice to every target now, bypassing the outbox.

        Returns ``{redacted target: SendResult(accepted, reason)}``; the reason names what
        Apprise said (connection refused, the HTTP status, a plugin's complaint).
        """

        def one(t: _Target) -> SendResult:
            if t.url is None:
                self._write_stderr("info", title, body)
                return SendResult(True, "")
            if t.headers is not None:  # a webhook: a test body of the same shape
                from errord.sinks.webhook import post

                payload: dict[str, object] = {
                    "type": "info",
                    "title": title,
                    "body": body,
                    "incident": None,
                    "labels": {},
                }
                hook = post(t.url, t.headers, payload, self.timeout, time.time())
                return SendResult(hook.ok, self._scrub.scrub(hook.error))
            got = self._send(self._apprise(t), t, title, body, "info")
            if not got.ok:
                logger.debug("test notice to %s failed: %s", t.name, got.error)  # the CLI prints it
            return SendResult(got.ok, got.error)

        self._scrub_enter()
        try:
            with ThreadPoolExecutor(max_workers=min(8, len(self._targets))) as pool:
                results = list(pool.map(one, self._targets))
        finally:
            self._scrub_exit()
        out: dict[str, SendResult] = {}
        for t, ok in zip(self._targets, results, strict=True):
            name, n = t.name, 2
            while name in out:  # two targets may redact to the same text
                name, n = f"{t.name} #{n}", n + 1
            out[name] = ok
        return out

    # -- worker ------------------------------------------------------------------------

    def _worker(self, t: _Target) -> None:
        journal: Journal | None = None
        ap = self._apprise(t) if t.url is not None and t.headers is None else None
        lock = _sender_lock(self.state_dir, t.key)
        journal_failing = False
        try:
            while not self._stop.is_set():
                t.wakeup.clear()
                if not lock.acquire(timeout=0.05):  # a previous sink's worker still sending
                    wait = self._idle(0.05)
                    if wait is None:
                        return
                    continue
                try:
                    if journal is None:
                        journal = Journal(self.state_dir, durable=False)  # see _record
                    wait = self._deliver(journal, t, ap)
                    if journal_failing:
                        journal_failing = False
                        self._journal_warn.forget(t.key)
                        logger.info("notify target %s: journal readable again; delivering", t.name)
                except Exception as e:  # a worker never dies: log, start afresh, retry
                    if isinstance(e, JournalError):
                        journal_failing = True
                        if self._journal_warn.allow(t.key):
                            logger.warning(
                                "notify target %s: journal: %s (retrying every %gs; further journal"
                                " errors of this target muted for %ds)",
                                t.name,
                                e,
                                _POLL,
                                int(JOURNAL_WARN_EVERY),
                            )
                    else:
                        logger.exception("notify target %s: unexpected error", t.name)
                    if journal is not None:
                        journal.close()
                        journal = None
                    wait = self._idle(_POLL)
                finally:
                    lock.release()
                if wait is None:
                    return  # draining and nothing more can go out before the deadline
                t.wakeup.wait(wait)
        finally:
            if journal is not None:
                journal.close()
            self._scrub_exit()

    def _scrub_enter(self) -> None:
        with self._scrub_lock:
            if self._scrub_users == 0:
                for name in _SCRUBBED_LOGGERS:
                    logging.getLogger(name).addFilter(self._scrub)
            self._scrub_users += 1

    def _scrub_exit(self) -> None:
        with self._scrub_lock:
            self._scrub_users -= 1
            if self._scrub_users == 0:
                for name in _SCRUBBED_LOGGERS:
                    logging.getLogger(name).removeFilter(self._scrub)

    def _deliver(self, j: Journal, t: _Target, ap: apprise.Apprise | None) -> float | None:
        """Send what is due; return how long to wait, or None to exit (draining)."""
        if self.limits.active:
            return self._deliver_limited(j, t, ap)
        while not self._stop.is_set():
            now = time.time()
            head = j.outbox.head(t.key)
            if head is None:
                if t.unsynced:  # the burst is out: make its marks durable against a power loss too
                    j.sync()
                    t.unsynced = False
                return None if self._deadline is not None else _EMPTY_POLL
            if head.next_at > now:
                return self._idle(head.next_at - now)
            batch = j.outbox.due_deliveries(t.key, _BATCH, now)
            for did, notice in batch:
                if did in t.accepted:  # sent already; only its record is missing
                    continue
                if self._stop.is_set() or self._past_deadline():
                    self._record(j, t)
                    return self._idle(0.0)
                t.sending = True
                try:
                    ok, err, retry_after = self._send_notice(ap, t, notice)
                finally:
                    t.sending = False
                if not ok and retry_after == _REJECTED:  # a webhook's 4xx: refused for good
                    if self.on_result is not None:
                        self.on_result(t.name, False)
                    self._record(j, t)
                    logger.warning(
                        "notify target %s: notice %s (%s) rejected, not retried: %s",
                        t.name,
                        notice.id,
                        clean_text(notice.code, 200, single_line=True),
                        err,
                    )
                    j.outbox.mark_rejected(did, err, time.time())
                    continue
                if self.on_result is not None:
                    self.on_result(t.name, ok)
                if ok:
                    t.accepted[did] = time.time()
                    self._record(j, t)  # before the next send; raising keeps it in accepted
                    continue
                self._record(j, t)  # what was accepted before this one, first
                attempts = head.attempts if did == head.id else 0
                delay = backoff(attempts, *self.backoff, jitter=0.1)
                asked = ""
                if retry_after is not None:  # never sooner than the target asked; capped as the backoff
                    delay = min(self.backoff[1], max(delay, retry_after))
                    asked = f" (Retry-After: {retry_after:g}s)"
                logger.warning(
                    "notify target %s: notice %s (%s) failed, attempt %d, retry in %.1fs%s: %s",
                    t.name,
                    notice.id,
                    clean_text(notice.code, 200, single_line=True),  # log text: one line
                    attempts + 1,
                    delay,
                    asked,
                    err,
                )
                j.outbox.mark_failed(did, err, time.time() + delay)
                return self._idle(delay)
            self._record(j, t)
        self._record(j, t)
        return _POLL

    def _deliver_limited(self, j: Journal, t: _Target, ap: apprise.Apprise | None) -> float | None:
        """``_deliver`` under a storm limit or ``group_wait``: ``policy.limit.decide`` says
        what goes out (the head, a group, a digest of everything held) and when."""
        rule = self.limits
        if t.unrecorded is not None:
            j.limits.record(t.key, t.unrecorded[1], t.unrecorded[0])
            t.unrecorded = None
        state = j.limits.load(t.key)
        while not self._stop.is_set():
            now = time.time()
            head = j.outbox.head(t.key)
            if head is None:
                if t.unsynced:
                    j.sync()
                    t.unsynced = False
                return None if self._deadline is not None else _EMPTY_POLL
            if head.next_at > now:
                return self._idle(head.next_at - now)
            # only what the decision can take: all held for a digest, a group's worth, the head
            want = _DIGEST_MAX if state.held_since is not None else _GROUP_MAX if rule.group_wait > 0 else 1
            queue = j.limits.queued(t.key, want)
            act = decide(rule, state, [q[1] for q in queue], now)
            if act.sends == 0:
                if act.hold:
                    j.limits.hold(t.key, state, now)
                    logger.info(
                        "notify target %s: %d notices sent in %gs: holding the rest for a digest",
                        t.name,
                        rule.budget,
                        rule.window,
                    )
                # sleep until then, not in 1 s polls: a commit (wake) or stop() wakes it sooner
                wait = max(0.0, (act.until or now) - now)
                if self._deadline is not None and time.monotonic() + wait >= self._deadline:
                    return None
                return wait
            if self._past_deadline():
                return None
            picked = queue[: act.sends]
            notes = [q[2] for q in picked]
            if act.how is Send.DIGEST:
                notice = digest(notes, self.host)
                notice.vars = digest_vars(notice, self.host)  # for a template, a webhook (CONTRACT §11)
            elif act.how is Send.GROUP:
                notice = group(notes, self.host)
            else:
                notice = notes[0]
            t.sending = True
            try:
                ok, err, retry_after = self._send_notice(ap, t, notice)
            finally:
                t.sending = False
            if self.on_result is not None:
                self.on_result(t.name, ok)
            if not ok and retry_after == _REJECTED:  # a webhook's 4xx: refused for good, move on
                logger.warning("notify target %s: %d notice(s) rejected, not retried: %s", t.name, len(picked), err)
                for q in picked:
                    j.outbox.mark_rejected(q[0], err, time.time())
                continue
            if ok:
                when = time.time()
                state.sent(rule, when, digest=len(notes) if act.how is Send.DIGEST else 0)
                if act.how is Send.DIGEST and len(queue) >= want:
                    state.held_since = when  # more held than one digest takes: still holding
                accepted = {q[0]: when for q in picked}
                t.unrecorded = (accepted, state)
                j.limits.record(t.key, state, accepted)  # raising keeps it in t.unrecorded
                t.unrecorded = None
                t.unsynced = True
                continue
            delay = backoff(head.attempts, *self.backoff, jitter=0.1)
            if retry_after is not None:
                delay = min(self.backoff[1], max(delay, retry_after))
            logger.warning(
                "notify target %s: %s failed, attempt %d, retry in %.1fs: %s",
                t.name,
                "a digest" if act.how is Send.DIGEST else "a group" if act.how is Send.GROUP else f"notice {notice.id}",
                head.attempts + 1,
                delay,
                err,
            )
            j.outbox.mark_failed(head.id, err, time.time() + delay)
            return self._idle(delay)
        return _POLL

    @staticmethod
    def _record(j: Journal, t: _Target) -> None:
        """Mark what ``t`` accepted as delivered, in one transaction; raising (the journal
        failing) keeps it in ``t.accepted``, to be recorded later and never sent again."""
        if t.accepted:
            j.outbox.mark_accepted(t.accepted)
            t.accepted.clear()
            t.unsynced = True

    def _idle(self, wait: float) -> float | None:
        """Wait ``wait`` seconds (at most a poll), or None when draining past the deadline."""
        if self._deadline is not None and time.monotonic() + wait >= self._deadline:
            return None
        return min(wait, _POLL)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    # -- sending -----------------------------------------------------------------------

    def _apprise(self, t: _Target) -> apprise.Apprise:
        assert t.url is not None  # the stderr pseudo-target never gets here
        # Send in the calling worker thread: Apprise's own pool threads are not daemon
        # threads, and one stuck in a hung request would hold the process at exit.
        asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)
        ap = apprise.Apprise(asset=asset)
        if not ap.add(t.url):
            # Validated in __init__; kept as a failure, not a crash, just in case.
            logger.error("notify target %s: Apprise rejected the URL", t.name)
        return ap

    def _send_notice(self, ap: apprise.Apprise | None, t: _Target, n: Notice) -> _Outcome:
        if t.headers is not None and t.url is not None:
            from errord.sinks.webhook import post, webhook_body

            title, body = self.present(t, n)
            got = post(t.url, t.headers, webhook_body(n, title, body, self.host), self.timeout, time.time())
            if got.permanent:
                return _Outcome(False, self._scrub.scrub(got.error), _REJECTED)
            return _Outcome(got.ok, self._scrub.scrub(got.error), got.retry_after)
        if ap is None:
            self._write_stderr(n.type.value, n.title, n.body)
            return _Outcome(True, "", None)
        title, body = self.present(t, n)
        return self._send(ap, t, title, body, n.type.value, t.fmt)

    def present(self, t: _Target, n: Notice) -> tuple[str, str]:
        """The title and body ``t`` gets for ``n``: its template's, else the built-in text
        (made safe for its format). A template failing here falls back to the built-in text
        with a warning and ``on_template_failure``: a notice is never lost to a template."""
        from errord.sinks.templates import present

        title, body, error = present(n.title, n.body, n.vars, t.fmt, t.template)
        if error is not None:
            logger.warning("notify target %s: notice %s: %s; sent in the built-in text", t.name, n.id, error)
            if self.on_template_failure is not None:
                self.on_template_failure(t.name)
        return title, body

    def _send(self, ap: apprise.Apprise, t: _Target, title: str, body: str, kind: str, fmt: str = "text") -> _Outcome:
        """One Apprise send; a failure names Apprise's reason and the Retry-After it saw."""
        with capturing() as seen:
            try:
                result = ap.notify(
                    title=title,
                    body=body or title,  # Apprise refuses an empty body
                    notify_type=apprise.NotifyType(kind),
                    body_format=apprise.NotifyFormat(fmt),
                )
            except Exception as e:  # a plugin bug must not kill the worker
                return _Outcome(False, self._scrub.scrub(f"{type(e).__name__}: {e}"), None)
        if result:
            return _Outcome(True, "", None)
        why = seen.reason() or f"not accepted ({_status(result)})"
        return _Outcome(False, self._scrub.scrub(why), seen.retry_after())

    def _write_stderr(self, kind: str, title: str, body: str) -> None:
        flat = " | ".join(body.splitlines())
        try:
            self.stream.write(f"[errord notice] {kind} {title} | {flat}\n")
            self.stream.flush()
        except (OSError, ValueError) as e:  # closed or broken stream: nothing to retry
            logger.warning("cannot write notice to stderr: %s", e)


def _compiled(
    name: str | None, templates: Mapping[str, Mapping[str, str]], fmt: str, where: str, problems: list[str]
) -> CompiledTemplate | None:
    """Target ``index``'s template compiled for ``fmt`` (None: the built-in text); a
    problem is appended to ``problems`` (the config was validated: only a race gets here)."""
    if name is None:
        return None
    keys = templates.get(name)
    if keys is None:
        problems.append(f"{where}.template: no [templates.{name}] table")
        return None
    from errord.sinks.templates import TemplateError, compile_template  # imports Jinja2

    try:
        return compile_template(name, keys, fmt)
    except TemplateError as e:
        problems.append(str(e))
        return None


def _status(result: object) -> str:
    status = getattr(result, "status", None)
    return str(getattr(status, "value", status or "failed")).lower()
