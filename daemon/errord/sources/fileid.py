"""File identity helpers for the tailer: fingerprints, watch roots, finding files by inode
or by their first bytes.

A file identity is ``(st_dev, st_ino)`` plus a fingerprint of its first bytes
(``fp_len`` = min(size, 256) when taken, ``fp_hash`` = hex BLAKE2b of those bytes), as
fail2ban and Vector do it. The inode says "same file object", the fingerprint says "same
content": together they tell growth from rotation, truncation and inode reuse.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePath

from errord.model import FileKey

__all__ = [
    "COMPRESSED_SUFFIXES",
    "FP_MAX",
    "CopyCandidate",
    "digest",
    "entry_path",
    "expand",
    "find_copies",
    "folder_may_match",
    "inode_index",
    "is_compressed",
    "names",
    "open_readonly",
    "read_prefix",
    "unread_rotations",
    "watch_root",
]

FP_MAX = 256  # fingerprint length once a file is big enough
# logrotate's compresscmd choices and the usual archive names; matched by a glob such as
# ``app.jsonl*``, they are skipped by name alone (no stat, no open, nothing logged)
COMPRESSED_SUFFIXES = (
    ".gz",
    ".xz",
    ".bz2",
    ".zst",
    ".lz4",
    ".lzma",
    ".lzo",
    ".br",
    ".zip",
    ".7z",
    ".z",
    ".tgz",
    ".tbz2",
    ".txz",
)


def digest(data: bytes) -> str:
    """Hex digest of a fingerprint prefix (BLAKE2b, 16 bytes: cheap and plenty)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_prefix(fd: int, n: int) -> bytes:
    """Up to ``n`` bytes from offset 0 of an open file (short only at end of file)."""
    out = b""
    while len(out) < n:
        part = os.pread(fd, n - len(out), len(out))
        if not part:
            break
        out += part
    return out


def open_readonly(path: str) -> int:
    """Open ``path`` for reading without blocking on FIFOs and without leaking into children."""
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


_SUFFIX_CHARS = max(len(x) for x in COMPRESSED_SUFFIXES)


def is_compressed(path: str) -> bool:
    """True for names of compressed rotations, which are never read as lines."""
    return path[-_SUFFIX_CHARS:].lower().endswith(COMPRESSED_SUFFIXES)  # every scan, every name: keep it cheap


def watch_root(pattern: str) -> tuple[str, bool]:
    """The folder to watch for a glob and whether to watch it recursively.

    That is the deepest folder of the glob's non-wildcard prefix; recursive when a folder
    part of the glob holds a wildcard. When that folder does not exist yet, its nearest
    existing ancestor is watched (not recursively: the next scan moves the watch deeper as
    folders appear, so watching ``/`` recursively never happens).
    """
    parts = PurePath(pattern).parts
    magic = next((i for i, p in enumerate(parts) if glob.has_magic(p)), None)
    if magic is None:
        static, recursive = os.path.dirname(pattern), False
    else:
        static = str(PurePath(*parts[:magic])) if magic else os.sep
        recursive = magic < len(parts) - 1
    folder = static or os.sep
    while not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder, recursive = parent, False
    return folder, recursive


def expand(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, except that a ``**`` enters each folder
    (device, inode) once.

    Python's recursive glob follows symlinked folders without remembering where it has
    been: a link back up (``sub/up -> ..``) repeats the tree 40 levels deep, two such links
    make the walk exponential, and a scan never ends. Patterns without ``**`` go to glob.
    As with glob, names starting with "." match only a part that starts with "." and
    ``**`` does not enter hidden folders.
    """
    parts = PurePath(pattern).parts
    if "**" not in parts:
        return glob.glob(pattern)
    out: list[str] = []
    _expand(parts[0], parts[1:], out, set())
    return out


def _expand(base: str, parts: tuple[str, ...], out: list[str], seen: set[tuple[int, int, int]]) -> None:
    part, rest = parts[0], parts[1:]
    if part == "**":
        for folder in _folders(base, len(parts), seen):
            if rest:
                _expand(folder, rest, out, seen)
            else:  # a trailing ** matches the folders themselves and every name in them
                out.append(folder)
                _expand(folder, ("*",), out, seen)
        return
    if glob.has_magic(part):
        try:
            with os.scandir(base) as it:
                names = [e.name for e in it]
        except OSError:
            return
        if not part.startswith("."):
            names = [n for n in names if not n.startswith(".")]
        paths = [os.path.join(base, n) for n in fnmatch.filter(names, part)]
    else:
        paths = [os.path.join(base, part)]
    for path in paths:
        if rest:
            if os.path.isdir(path):
                _expand(path, rest, out, seen)
        elif os.path.lexists(path):
            out.append(path)


def _folders(base: str, key: int, seen: set[tuple[int, int, int]]) -> Iterator[str]:
    """``base`` and the non-hidden folders below it (symlinks followed), each (device,
    inode) once for the ``**`` identified by ``key``."""
    stack = [base]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError:
            continue
        ident = (key, st.st_dev, st.st_ino)
        if ident in seen or not stat.S_ISDIR(st.st_mode):
            continue
        seen.add(ident)
        yield folder
        try:
            with os.scandir(folder) as it:
                subs = [e.path for e in it if not e.name.startswith(".") and _is_dir(e)]
        except OSError:
            continue
        stack.extend(sorted(subs, reverse=True))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def folder_may_match(pattern: str, folder: str) -> bool:
    """Whether files in ``folder`` could belong to the glob ``pattern`` (loose: ``*`` spans ``/``).

    Used to decide whether a stored position whose file was renamed while errord was down
    still belongs to a configured source.
    """
    pdir = os.path.dirname(pattern)
    return fnmatchcase(os.path.normpath(folder), os.path.normpath(pdir)) or (
        "**" in pdir and fnmatchcase(os.path.normpath(folder) + os.sep, os.path.normpath(pdir) + os.sep + "*")
    )


def names(path: str, key: FileKey) -> bool:
    """Whether ``path`` names the file with identity ``key`` now."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == key


def inode_index(folder: str) -> dict[int, os.DirEntry[str]]:
    """The entries directly in ``folder`` by inode number (one ``scandir``, no stat): to
    find many identities in one folder at the cost of one listing."""
    try:
        with os.scandir(folder) as it:
            return {entry.inode(): entry for entry in it}
    except OSError:
        return {}


def entry_path(index: dict[int, os.DirEntry[str]], key: FileKey) -> tuple[str, os.stat_result] | None:
    """The path and stat of the regular file with identity ``key`` in an :func:`inode_index`."""
    entry = index.get(key[1])
    if entry is None:
        return None
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None
    if st.st_dev != key[0] or st.st_ino != key[1] or not stat.S_ISREG(st.st_mode):
        return None
    return entry.path, st


def unread_rotations(folder: str, name: str, since: float, known: set[FileKey]) -> list[tuple[str, int]]:
    """Files that took ``name``'s place and were rotated away before errord saw them.

    Regular files directly in ``folder`` named like a rotation of ``name`` (``name`` and
    more: ``app.jsonl.1``, ``app.jsonl-20260114``), not compressed, not empty, last
    written after ``since`` (epoch seconds: when errord last saw the file at ``name``) and
    not in ``known``: content written after errord last looked, into a file it never saw.
    Compressed names are left out: gzip gives its output the input's mtime, so a
    compressed rotation of the very file errord read would look the same.
    Returns ``(path, size)`` pairs, by path.
    """
    out: list[tuple[str, int]] = []
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if e.name.startswith(name) and e.name != name and not is_compressed(e.name)]
    except OSError:
        return out
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size > 0 and st.st_mtime > since and (st.st_dev, st.st_ino) not in known:
            out.append((entry.path, st.st_size))
    return sorted(out)


@dataclass(slots=True)
class CopyCandidate:
    """A sibling whose first bytes match a fingerprint: a copy of that content."""

    path: str
    key: FileKey
    size: int
    mtime_ns: int


def find_copies(folder: str, fp_len: int, fp_hash: str, min_size: int, exclude: set[FileKey]) -> list[CopyCandidate]:
    """Regular files directly in ``folder`` (any name, compressed ones excepted) of at least
    ``min_size`` bytes whose first ``fp_len`` bytes hash to ``fp_hash``; best first (largest,
    then newest). Identities in ``exclude`` are skipped.
    """
    found: list[CopyCandidate] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        if is_compressed(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISREG(st.st_mode) or key in exclude or st.st_size < max(min_size, fp_len):
            continue
        try:
            fd = open_readonly(entry.path)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_ino != st.st_ino:
                continue
            if digest(read_prefix(fd, fp_len)) == fp_hash:
                found.append(CopyCandidate(entry.path, key, st.st_size, st.st_mtime_ns))
        except OSError:
            continue
        finally:
            os.close(fd)
    found.sort(key=lambda c: (c.size, c.mtime_ns), reverse=True)
    return found
