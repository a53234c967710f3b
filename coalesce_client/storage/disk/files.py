"""The value files of a DiskStorage directory: which names are ours, and the ones no row names.

Rules of this module (the file system only; no SQLite, no diskcache import):

* A value too large for a SQLite row lives in a file that diskcache names at random:
  ``ab/cd/<28 hex digits>.val`` under the directory; so does the body of a streamed entry
  (``bodies.py``), named alike here. Only names of that shape are ever opened or
  removed; a row whose file name has any other shape (a damaged row, ``../../etc/passwd``) is
  unreadable, and its name is never handed to the file system (issue 11).
* A file no row names is an orphan: a writer killed between writing the file and committing its
  row leaves one behind, and nothing else ever removes it. It counts towards ``volume``, and
  ``prune`` removes it once it is older than ``ORPHAN_GRACE``: a younger one may be the file of a
  write in progress in another process, whose row is not committed yet. Ages are file times
  against the wall clock (``time.time()``), never the storage's clock.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "ORPHAN_GRACE",
    "ValueFile",
    "is_value_name",
    "new_value_name",
    "remove_orphans",
    "value_files",
]

# Ten minutes: far longer than writing a file and waiting for the database lock (``lock_timeout``,
# 5 s by default) take in any process that is still alive.
ORPHAN_GRACE = 600.0

_HEX2 = re.compile(r"[0-9a-f]{2}")
_NAME = re.compile(r"[0-9a-f]{28}\.val")
_RELATIVE = re.compile(
    rf"[0-9a-f]{{2}}{re.escape(os.sep)}[0-9a-f]{{2}}{re.escape(os.sep)}[0-9a-f]{{28}}\.val"
)


class ValueFile(NamedTuple):
    name: str  # relative to the directory, as diskcache writes it in a row: "ab/cd/....val"
    size: int
    mtime: float


def is_value_name(name: object) -> bool:
    """Whether a row's file name has the one shape diskcache gives value files."""
    return type(name) is str and _RELATIVE.fullmatch(name) is not None


def new_value_name() -> str:
    """A new value file name of the shape diskcache gives (random, as ``Disk.filename``): the
    body of a streamed entry is written under one (``bodies.py``)."""
    digits = os.urandom(16).hex()
    return os.path.join(digits[:2], digits[2:4], f"{digits[4:]}.val")


def value_files(directory: Path) -> list[ValueFile]:
    """Every value file under ``directory`` (two levels of two-hex-digit folders)."""
    found = []
    for first in _scan(directory):
        if not (_HEX2.fullmatch(first.name) and first.is_dir(follow_symlinks=False)):
            continue
        for second in _scan(Path(first.path)):
            if not (_HEX2.fullmatch(second.name) and second.is_dir(follow_symlinks=False)):
                continue
            for file in _scan(Path(second.path)):
                if not _NAME.fullmatch(file.name):
                    continue
                try:
                    st = file.stat(follow_symlinks=False)
                except OSError:  # removed meanwhile by another process
                    continue
                name = os.path.join(first.name, second.name, file.name)
                found.append(ValueFile(name, st.st_size, st.st_mtime))
    return found


def remove_orphans(
    directory: Path, listed: list[ValueFile], named: Collection[str], before: float
) -> tuple[int, int]:
    """Remove the files of ``listed`` that no row names and were last written before ``before``.

    ``listed`` must have been taken before ``named`` was read (module rules): a file committed in
    between is then in ``named``, and a file written after the listing is not in ``listed``.
    Returns the count and bytes removed.
    """
    count = size = 0
    for file in listed:
        if file.name in named or file.mtime >= before:
            continue
        path = directory / file.name
        try:
            path.unlink()
        except FileNotFoundError:
            continue  # another process removed it meanwhile
        count += 1
        size += file.size
        # As diskcache does, emptied folders go; never more than the two levels of ours.
        with contextlib.suppress(OSError):
            path.parent.rmdir()
            path.parent.parent.rmdir()
    return count, size


def _scan(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []
