"""What of a notify URL must never reach a log, and the filter that keeps it out.

Apprise and urllib3 log URLs and request lines (at DEBUG, and in some warnings), tokens
in the path included; errord names a target only by its redacted form, but those
third-party records are not errord's text. :func:`url_secrets` picks the parts of a URL
worth masking (the whole URL, a password, long tokens in the host, path or query; not
host names or IPs, which help diagnose) and :class:`Scrub`, a ``logging.Filter`` on
those loggers, replaces them with ``***`` while a notify worker or a test send runs.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["Scrub", "url_secrets"]

_DOMAINISH = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def url_secrets(url: str) -> set[str]:
    """The parts of ``url`` worth masking in third-party log records."""
    found = {url}
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return found
    userinfo, _, hostport = netloc.rpartition("@")
    if userinfo:
        user, _, password = userinfo.partition(":")
        found.update(s for s in (password, unquote(password)) if len(s) >= 3)
        found.update(s for s in (user, unquote(user)) if len(s) >= 16)
    pieces = [hostport, *parts.path.split("/"), *(v for _, v in parse_qsl(parts.query))]
    for p in pieces:
        # Tokens are long; host names and IPs are not secrets and help diagnose.
        for s in (p, unquote(p)):
            if len(s) >= 16 and not _DOMAINISH.match(s):
                found.add(s)
    return found


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
