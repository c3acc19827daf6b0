"""Line envelopes (CONTRACT §12): docker ``json-file`` and Kubernetes CRI lines unwrapped
into the app's own lines before the §1 rules, and the app named from a Kubernetes log
file name. Pure: no I/O, no clock.

Two halves use this module. The file follower asks :func:`open_from` where an unfinished
joined line starts, and keeps those bytes back (its committed position is then the start
of the first part: a batch or a restart never splits a joined line). The batch parses a
source's chunks with an :class:`EnvelopeParser` (made by :func:`make_parser`), which joins
the parts it is handed, per stream, and hands each joined app line to the source's
:class:`~errord.parse.lines.LineParser` at the offset of its first part. Plain JSON
sources keep the bare ``LineParser`` and its fast path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Final

import orjson

from errord.parse.chunks import NEEDLE
from errord.parse.fieldmap import flatten, needles, split_paths
from errord.parse.journalentry import JournalParser
from errord.parse.lines import LineParser
from errord.parse.result import INVALID_UTF8, NOT_OBJECT, TOO_LONG, ParseResult, count_skip
from errord.parse.times import epoch_seconds

__all__ = [
    "CRI",
    "DOCKER",
    "FORMATS",
    "JSON",
    "EnvelopeParser",
    "detect",
    "kubernetes_app",
    "make_parser",
    "open_from",
    "split_envelope",
    "whole_joins",
]

JSON: Final = "json"
DOCKER: Final = "docker"
CRI: Final = "cri"
AUTO: Final = "auto"
FORMATS: Final = (JSON, DOCKER, CRI, AUTO)

# TIME STREAM P|F CONTENT (the content may be empty: "... stdout F" ends the line)
_CRI = re.compile(rb"(\S+) (stdout|stderr) ([PF])(?: |\r?$)")  # "\r": an empty F line of a CRLF file
# POD_NAMESPACE_CONTAINER-ID.log: pod and namespace names hold no "_" (DNS labels)
_KUBE_NAME = re.compile(r"([^_/]+)_([^_/]+)_(.+)-([0-9a-f]{64})\.log(?:\..*)?")  # rotated: .log.SUFFIX
_BOM: Final = b"\xef\xbb\xbf"

Part = tuple[bytes, bytes, bool, "float | None"]  # (stream, text, complete, envelope time)


def detect(line: bytes) -> str:
    """The format of a file from its first complete line: docker, cri, or json (a UTF-8
    BOM before it is not part of it, CONTRACT §7)."""
    if line[:3] == _BOM:
        line = line[3:]
    if line[:1] == b"{":
        if b'"log"' in line:
            try:
                obj = orjson.loads(line)
            except ValueError:
                return JSON
            if type(obj) is dict and type(obj.get("log")) is str:
                return DOCKER
        return JSON
    return CRI if _CRI.match(line) else JSON


def _envelope_time(value: object) -> float | None:
    if type(value) is str:
        try:
            return datetime.fromisoformat(value).timestamp()  # RFC 3339, nanoseconds cut to µs
        except (ValueError, OverflowError, OSError):
            return None
    if type(value) in (int, float):
        return epoch_seconds(value)  # type: ignore[arg-type]
    return None


def split_envelope(line: bytes, fmt: str) -> Part | None:
    """One envelope line (without its newline) as (stream, app text, complete, time), or
    None when it is not such a line (then it is read as a plain line)."""
    if fmt == DOCKER:
        try:
            obj = orjson.loads(line)
        except ValueError:
            return None
        if type(obj) is not dict:
            return None
        log = obj.get("log")
        if type(log) is not str:
            return None
        text = log.encode("utf-8", "surrogatepass")
        complete = text.endswith(b"\n")
        if complete:
            text = text[:-2] if text.endswith(b"\r\n") else text[:-1]
        stream = obj.get("stream")
        return (stream.encode() if type(stream) is str else b""), text, complete, _envelope_time(obj.get("time"))
    m = _CRI.match(line)
    if m is None:
        return None
    when = _envelope_time(m.group(1).decode("ascii", "replace"))
    return m.group(2), line[m.end() :], m.group(3) == b"F", when


def _stream_flag(line: bytes, fmt: str) -> tuple[bytes, bool] | None:
    """(stream, complete) of one envelope line, cheaper than :func:`split_envelope`."""
    if fmt == CRI:
        m = _CRI.match(line)
        return None if m is None else (m.group(2), m.group(3) == b"F")
    part = split_envelope(line, fmt)
    return None if part is None else (part[0], part[2])


def open_from(block: bytes, fmt: str) -> int:
    """Where, in ``block`` (complete envelope lines), the first part of a joined line
    that is not finished yet starts: ``len(block)`` when every join is complete. The
    follower keeps ``block[open_from:]`` back until its last part arrives."""
    if fmt not in (DOCKER, CRI):
        return len(block)
    open_at: dict[bytes, int] = {}  # stream -> offset of its first pending part
    pos = 0
    size = len(block)
    find = block.find
    while pos < size:
        end = find(b"\n", pos)
        if end < 0:
            end = size
        got = _stream_flag(block[pos:end], fmt)
        if got is not None:
            stream, complete = got
            if complete:
                open_at.pop(stream, None)
            elif stream not in open_at:
                open_at[stream] = pos
        pos = end + 1
    return min(open_at.values()) if open_at else size


def whole_joins(pieces: Iterable[tuple[bytes, int]], fmt: str, max_line: int) -> Iterator[tuple[bytes, int, str]]:
    """Pieces of complete lines of one file read from its start (``replay``), as
    ``(data, offset, format)`` with no joined line split between two: the follower's hold,
    for a whole file. An "auto" file is decided from its first line. A join that outgrows
    ``max_line``, or that a gap in the offsets (a NUL run cut out) interrupts, is handed
    on as it is, as the follower does."""
    carry, at = b"", 0
    for data, offset in pieces:
        if carry:
            if at + len(carry) == offset:
                data, offset = carry + data, at
            else:
                yield carry, at, fmt
            carry = b""
        if fmt == AUTO:
            fmt = detect(data[: data.find(b"\n")].rstrip(b"\r") if b"\n" in data else data)
        cut = open_from(data, fmt)
        if cut < len(data) and len(data) - cut <= max_line:
            data, carry, at = data[:cut], data[cut:], offset + cut
        if data:
            yield data, offset, fmt
    if carry:
        yield carry, at, fmt


_KUBE_CACHE_MAX = 4096


def kubernetes_app(path: str, cache: dict[str, str | None] | None = None) -> str | None:
    """``NAMESPACE/CONTAINER`` from a ``POD_NAMESPACE_CONTAINER-ID.log`` file name (ID: 64
    hex digits), else None. Rotated names (``….log.20260114-150000``) read as their log."""
    if cache is not None and path in cache:
        return cache[path]
    m = _KUBE_NAME.fullmatch(path.rsplit("/", 1)[-1])  # a pod named after an FQDN node may hold ".log"
    app = f"{m.group(2)}/{m.group(3)}" if m else None
    if cache is not None:
        if len(cache) >= _KUBE_CACHE_MAX:
            cache.clear()
        cache[path] = app
    return app


class EnvelopeParser:
    """A source's parser for docker/CRI/auto files and ``app_from``: unwraps, joins the
    parts per stream, and parses each app line with ``inner`` at its first part's offset.
    Same interface as :class:`LineParser` (``parse_chunk``, ``parse_line``)."""

    __slots__ = ("_apps", "_needles", "app_from", "fmt", "inner", "paths")

    def __init__(
        self, inner: LineParser, fmt: str, app_from: str | None = None, fields: dict[str, str] | None = None
    ) -> None:
        self.inner = inner
        self.fmt = fmt
        self.app_from = app_from
        self.paths = split_paths(fields) if fields else None
        self._needles = needles(self.paths) if self.paths else ()
        self._apps: dict[str, str | None] = {}

    @property
    def max_line_bytes(self) -> int:
        return self.inner.max_line_bytes

    def parse_chunk(
        self, data: bytes, offset: int, now: float, path: str = "", layout: str = "", name: str = ""
    ) -> ParseResult:
        """Parse a chunk of complete envelope lines (a closed file's last may lack its
        newline). ``layout``: what an "auto" file was decided to be (the follower decides
        from the file's first line); without it, the chunk's first line decides. ``name``:
        the path ``app_from`` reads when not ``path`` (a file renamed away). Never raises."""
        fmt = self.fmt
        if fmt == AUTO:
            fmt = layout or detect(data[: data.find(b"\n")].rstrip(b"\r") if b"\n" in data else data)
        if fmt == JSON and self.paths is None:
            res = self.inner.parse_chunk(data, offset, now, path)
            self._name(res, name or path)
            return res
        res = ParseResult()
        inner = self.inner
        inner._warnings = res.warnings
        pending: dict[bytes, tuple[int, list[bytes], float | None]] = {}
        pos = 3 if offset == 0 and data[:3] == _BOM else 0  # not part of the first line (§7)
        size = len(data)
        lines = 0
        while pos < size:
            end = data.find(b"\n", pos)
            if end < 0:
                end = size
            lines += 1
            raw = data[pos:end]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            part = split_envelope(raw, fmt) if raw and fmt != JSON else None
            if part is None:
                if raw:  # not an envelope: read as a plain line
                    self._one(raw, now, offset + pos, path, None, res)
            else:
                stream, text, complete, when = part
                held = pending.get(stream)
                if held is None:
                    held = (offset + pos, [], when)
                    if not complete:
                        pending[stream] = held
                held[1].append(text)
                if complete:
                    pending.pop(stream, None)
                    self._one(b"".join(held[1]), now, held[0], path, held[2], res)
            pos = end + 1
        for start, texts, when in pending.values():  # the file closed or a join outgrew the limit
            self._one(b"".join(texts), now, start, path, when, res)
        res.lines = lines
        self._name(res, name or path)
        return res

    def _one(self, body: bytes, now: float, offset: int, path: str, when: float | None, res: ParseResult) -> None:
        inner = self.inner
        inner.fallback = when
        try:
            r = inner._line(body, now, offset, path) if self.paths is None else self._mapped(body, now, offset, path)
        finally:
            inner.fallback = None
        if r is None:
            return
        if type(r) is str:
            count_skip(res, r, offset)
        else:
            res.events.append(r)  # type: ignore[arg-type]

    def _mapped(self, body: bytes, now: float, offset: int, path: str) -> Any:
        """One app line under a ``fields`` map: decoded only when it holds a mapped key."""
        assert self.paths is not None
        if not any(n in body for n in self._needles):
            # no mapped code: only the §1 checks of a bad line (a plain error_code is not read)
            return None if NEEDLE in body else self.inner._line(body, now, offset, path)
        paths = self.paths
        if len(body) > self.inner.max_line_bytes:
            return TOO_LONG
        try:
            obj = orjson.loads(body)
        except ValueError:  # NaN, huge numbers, bad UTF-8: as a plain line's (LineParser._candidate)
            if not body.isascii():
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError:
                    return INVALID_UTF8
            return self.inner._candidate_lenient(body, now, offset, path, lambda o: flatten(o, paths))
        if type(obj) is not dict:
            return NOT_OBJECT
        return self.inner._event(flatten(obj, paths), now, offset, path)

    def _name(self, res: ParseResult, path: str) -> None:
        if self.app_from is None or not res.events:
            return
        app = kubernetes_app(path, self._apps)
        if app is not None:
            for ev in res.events:
                ev.app = app

    def parse_line(self, line: bytes, now: float, warnings: list[tuple[int, str, str]] | None = None) -> Any:
        """One envelope line on its own (the contained fallback): its app text parsed."""
        body = line[:-1] if line.endswith(b"\n") else line
        fmt = detect(body) if self.fmt == AUTO else self.fmt
        part = split_envelope(body, fmt) if fmt != JSON else None
        if part is None:
            return self.inner.parse_line(line, now, warnings)
        self.inner.fallback = part[3]
        try:
            return self.inner.parse_line(part[1], now, warnings)
        finally:
            self.inner.fallback = None


def make_parser(src: Any) -> LineParser | EnvelopeParser | JournalParser:
    """The parser for a configured source: the bare ``LineParser`` for plain JSON, a
    ``JournalParser`` for a journal source (its entries, CONTRACT §12)."""
    inner = LineParser(app=src.app, tz=src.tzinfo, max_line_bytes=src.max_line_bytes)
    fmt = getattr(src, "format", JSON)
    app_from = getattr(src, "app_from", None)
    fields = getattr(src, "fields", None)
    if getattr(src, "journal", None) is not None:
        return JournalParser(inner, dict(fields) if fields else None)
    if fmt == JSON and app_from is None and not fields:
        return inner
    return EnvelopeParser(inner, fmt, app_from, dict(fields) if fields else None)
