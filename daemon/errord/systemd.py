"""The sd_notify protocol in a few lines of stdlib (the PyPI ``sdnotify`` is unmaintained).

Messages go as datagrams to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace). Without the variable every call is a no-op, so the daemon runs the same way
outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SystemdNotifier"]

logger = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends READY / WATCHDOG / STATUS / STOPPING when systemd asked for them."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None
        self._sock: socket.socket | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1_000_000 / 2  # ping at half the timeout

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *lines: str) -> None:
        """Send ``KEY=value`` lines; failures are logged, never raised."""
        if self._address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            logger.warning("sd_notify failed: %s", exc)

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", *_status(status))

    def watchdog(self, status: str = "") -> None:
        self.notify("WATCHDOG=1", *_status(status))

    def status(self, status: str) -> None:
        """``STATUS=`` alone: the one-line summary ``systemctl status`` shows."""
        self.notify(*_status(status))

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> list[str]:
    """``["STATUS=<text>"]`` on one line (a newline would start another assignment)."""
    text = " ".join(text.split())
    return [f"STATUS={text}"] if text else []
