"""What of a notify URL must never reach a log, and the filter that keeps it out.

Apprise and urllib3 log URLs and request lines (at DEBUG, and in some warnings), tokens
in the path included; errord names a target only by its redacted form, but those
third-party records are not errord's text. :func:`url_secrets` picks the parts of a URL
worth masking and :class:`Scrub`, a ``logging.Filter`` on those loggers, replaces them
with ``***`` while a notify worker or a test send runs; the same scrub cleans every
delivery-failure reason errord logs, stores (``last_error``) or prints (``test-notify``).

What is masked: the whole URL; the userinfo as a whole, and its user and password; the
path as a whole (with and without its query), the query as a whole and each query value;
and the pieces that look like tokens (long, not a host name) in the host and the path. A
short token is still a secret, and requests names the path in its errors ("Max retries
exceeded with url: /hooks/…"): the path goes whole, whatever its length. Host names and
IPs stay: they are not secrets and they help diagnose.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["Scrub", "url_secrets"]

_DOMAINISH = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_MIN_SECRET = 3  # shorter parts (a port, "on", "1") would mask ordinary text, and guard nothing
# Apprise's own URL options: their values (POST, text, yes) are words, not secrets
_OPTIONS = frozenset({"cto", "rto", "format", "overflow", "method", "verify", "emojis", "tz", "store"})
_TOKEN_LEN = 16  # a host or path piece this long, not a host name, is taken for a token


def url_secrets(url: str) -> set[str]:
    """The parts of ``url`` worth masking in log records and failure reasons; see the module doc."""
    found = {url}
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return found
    userinfo, _, hostport = netloc.rpartition("@")
    if userinfo:
        user, _, password = userinfo.partition(":")
        _add(found, userinfo, user, password)
    path = parts.path.rstrip("/")
    if len(path.strip("/")) >= _MIN_SECRET:
        _add(found, path, path.lstrip("/"))
        if parts.query:
            _add(found, f"{parts.path}?{parts.query}")
    if parts.query:
        _add(found, parts.query, *(v for k, v in parse_qsl(parts.query) if k.lower() not in _OPTIONS))
    for p in [hostport, *parts.path.split("/")]:
        # Tokens are long; host names and IPs are not secrets and help diagnose.
        for s in (p, unquote(p)):
            if len(s) >= _TOKEN_LEN and not _DOMAINISH.match(s):
                found.add(s)
    return found


def _add(found: set[str], *texts: str) -> None:
    """Add each text and its percent-decoded form, unless too short to mask anywhere
    without hiding ordinary words."""
    for text in texts:
        found.update(s for s in (text, unquote(text)) if len(s) >= _MIN_SECRET)


class Scrub(logging.Filter):
    """Masks known secrets in records of the loggers it is attached to."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        # Longest first, so a URL is replaced whole before its parts.
        self._secrets = sorted(secrets, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        for s in self._secrets:
            if s in text:
                text = text.replace(s, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken record is the logging module's business
            return True
        clean = self.scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True
