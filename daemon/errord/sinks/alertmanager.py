"""``[[alertmanager]]`` (CONTRACT §11): open incidents pushed to Prometheus Alertmanager.

Each open incident is an alert. It is posted to ``URL/api/v2/alerts`` within a few
seconds of the open (the pusher looks every ``POLL`` seconds) with ``endsAt`` = now +
``ENDS_AFTER`` and re-posted every ``REPUSH`` seconds while open — Prometheus' own
convention, so the alerts of a dead errord resolve by themselves. A resolve is posted with
``endsAt`` = max(cleared_at, start_time). What each Alertmanager accepted is in the
journal's ``am_alerts`` table (``store.alerts``): a row is dropped only when that
Alertmanager accepted the resolve, so one that was down gets every resolve it missed when
it is back, across restarts too. Every open incident is pushed whatever errord's silences,
mute times and ``notification: false`` said (Alertmanager has silences of its own); a code
whose ``notify`` is false is kept out.

:func:`alert` is pure (the table → JSON); :class:`AlertmanagerSink` is one thread with its
own journal connection, for every configured Alertmanager (each HA peer gets every alert).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from errord.backoff import backoff
from errord.config import Alertmanager
from errord.model import Incident
from errord.ratelimit import RateLimit
from errord.store.journal import Journal
from errord.views import iso

__all__ = ["ENDS_AFTER", "POLL", "REPUSH", "AlertmanagerSink", "alert"]

logger = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks at the open incidents ("within a few seconds of the open")
REPUSH = 60.0  # seconds between re-posts of a firing alert
ENDS_AFTER = 240.0  # endsAt = now + 4 min: four missed re-posts and Alertmanager resolves it
_CHUNK = 500  # alerts per POST
_WARN_EVERY = 60.0


def alert(
    inc: Incident, *, labels: Mapping[str, str], notes: tuple[str | None, str | None], now: float
) -> dict[str, Any]:
    """The Alertmanager alert of ``inc`` (firing while active, resolved once closed).

    ``labels``: the code's ``[codes.X] labels`` (validated: no clash with ours); ``notes``:
    (description, runbook). Empty label values are left out (Alertmanager treats an empty
    label as absent)."""
    own = {"alertname": inc.code, "app": inc.app or "", "server_id": inc.server_id, "node_name": inc.node_name}
    all_labels = {k: v for k, v in {**own, **labels}.items() if v}
    annotations = {"summary": inc.message}
    description, runbook = notes
    if description:
        annotations["description"] = description
    if runbook:
        annotations["runbook_url"] = runbook
    if inc.active:
        ends = now + ENDS_AFTER
    else:
        ends = max(inc.cleared_at if inc.cleared_at is not None else now, inc.start_time)
    return {"labels": all_labels, "annotations": annotations, "startsAt": iso(inc.start_time), "endsAt": iso(ends)}


class AlertmanagerSink:
    """Pushes the journal's open incidents to every ``[[alertmanager]]``; see the module doc."""

    def __init__(
        self,
        state_dir: Path,
        targets: Sequence[Alertmanager],
        *,
        notify_for: Callable[[str], bool],
        labels_for: Callable[[str], tuple[Mapping[str, str], tuple[str | None, str | None]]],
        timeout: float = 10.0,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self.state_dir = Path(state_dir)
        self.targets = tuple(targets)
        self.notify_for = notify_for
        self.labels_for = labels_for
        self.timeout = timeout
        self.backoff = backoff
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures: dict[str, int] = {}
        self._next: dict[str, float] = {}
        self._warn = RateLimit(_WARN_EVERY)

    def start(self) -> None:
        if self._thread is None and self.targets:
            self._thread = threading.Thread(target=self._run, name="errord-alertmanager", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, deadline: float) -> None:
        """Stop after the push in progress (what is left is pushed at the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        journal: Journal | None = None
        try:
            while not self._stop.is_set():
                try:
                    if journal is None:
                        journal = Journal(self.state_dir, durable=False)
                        journal.alerts.drop_targets({t.key for t in self.targets})
                    self.push_once(journal, time.time())
                except Exception:  # never dies: log, reconnect, retry
                    if self._warn.allow("journal"):
                        logger.exception("alertmanager: pushing failed; retrying")
                    if journal is not None:
                        journal.close()
                        journal = None
                self._wake.wait(POLL)
                self._wake.clear()
        finally:
            if journal is not None:
                journal.close()

    def push_once(self, j: Journal, now: float) -> None:
        """One look: for each Alertmanager that is due, post what is new, due again or resolved."""
        # ids and codes only (a cheap look each second, whatever the number open); the
        # records only of what is due
        open_ids = {iid for iid, code in j.active_codes().items() if self.notify_for(code)}
        for t in self.targets:
            if self._next.get(t.key, 0.0) > now:
                continue  # backing off
            known = j.alerts.known(t.key)
            due = [iid for iid in open_ids if now - known.get(iid, -REPUSH) >= REPUSH]
            records = j.by_ids(due) if due else {}
            firing = [records[i] for i in due if i in records and records[i].active]
            gone = [i for i in known if i not in open_ids]
            ended: list[Incident] = []
            forget: list[str] = []
            if gone:
                rows = j.by_ids(gone)
                for iid in gone:
                    inc = rows.get(iid)
                    if inc is None:  # pruned: nothing to say
                        forget.append(iid)
                        continue
                    if inc.active:  # open, but its code's notify is false now: resolved now
                        inc.active, inc.cleared_at = False, now
                    ended.append(inc)
            if not firing and not ended and not forget:
                continue
            body = [self._alert(i, now) for i in firing] + [self._alert(i, now) for i in ended]
            error = ""
            for k in range(0, len(body), _CHUNK):
                error = self._post(t, body[k : k + _CHUNK])
                if error:
                    break
            if error:
                n = self._failures.get(t.key, 0)
                self._failures[t.key] = n + 1
                delay = backoff(n, *self.backoff, jitter=0.1)
                self._next[t.key] = now + delay
                if self._warn.allow(t.key):
                    logger.warning(
                        "alertmanager %s: push of %d alert(s) failed (%s); retrying in %.1fs, nothing is lost",
                        t.redacted,
                        len(body),
                        error,
                        delay,
                    )
                continue
            if self._failures.pop(t.key, 0):
                self._warn.forget(t.key)
                logger.info("alertmanager %s: accepted again", t.redacted)
            self._next.pop(t.key, None)
            if firing:
                j.alerts.pushed(t.key, [i.incident_id for i in firing], now)
            if ended or forget:
                j.alerts.resolved(t.key, [i.incident_id for i in ended] + forget)

    def _alert(self, inc: Incident, now: float) -> dict[str, Any]:
        labels, notes = self.labels_for(inc.code)
        return alert(inc, labels=labels, notes=notes, now=now)

    def _post(self, t: Alertmanager, alerts: list[dict[str, Any]]) -> str:
        """POST ``alerts``; "" when accepted, else why."""
        req = urllib.request.Request(
            t.url.rstrip("/") + "/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "errord"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read(65536)
            return ""
        except urllib.error.HTTPError as e:
            try:
                answer = " ".join(e.read(800).decode(errors="replace").split())[:200]
            except OSError:
                answer = ""
            return f"HTTP {e.code}" + (f": {answer}" if answer else "")
        except (urllib.error.URLError, OSError, ValueError) as e:
            return f"{type(e).__name__}: {getattr(e, 'reason', e)}"
