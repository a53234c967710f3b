"""The value of one DiskStorage row: the key and expiry it was sealed for, then its record.

Rules of this module (bytes and value files only; no SQLite, no diskcache import):

* A row's value is *sealed*: the key it was stored under (its length, then its UTF-8), its
  absolute expiry (a big-endian double), then ``codec.encode(...)`` bytes (checksummed). A value
  is served only if it names the key that was asked for and the expiry its row holds (``rows.py``
  says why), and its record decodes; anything else raises ``Unreadable``.
* A value kept in a file (``InAFile``) is read in the worker thread, its body straight from the
  file into the bytes the snapshot keeps (``codec.body_span``, ``codec.decode_split``): never
  copied while holding the GIL, which would stall the event loop for as long as the copy takes
  (issue 19: 38 ms for a 50 MiB hit). The key, expiry and fields are read from the file's first
  ``HEAD_READ`` bytes; a record whose fields do not fit there (huge headers, redirects with
  bodies) is read whole.
* A value file that cannot be opened or read (removed with its row by another process
  meanwhile) is a miss, as diskcache has it, not an unreadable row.
"""

from __future__ import annotations

import os
import struct
from typing import Any, NamedTuple

from ..codec import body_span, decode, decode_split, encode_parts
from ..records import Record

__all__ = ["HEAD_READ", "InAFile", "Sealed", "Unreadable", "entry", "entry_in_file", "seal"]

HEAD_READ = 64 * 1024  # bytes of a value file read to find its body (module rules)
_EXPIRY = struct.Struct(">d")
_CHECK = 4  # the codec's CRC-32 after the body


class Unreadable(Exception):
    """A stored row this storage will not or cannot turn into a record."""


class Sealed(tuple[bytes, ...]):
    """A row's value in parts (``seal``), joined only if it is kept inside SQLite: a value file is
    written part after part, so a large body is never copied on its way to disk."""

    __slots__ = ()


class InAFile(NamedTuple):
    """What a row whose value is kept in a file reads as (``rows.BytesDisk.fetch``): its path."""

    path: str


def seal(key: str, expiry: float, record: Record) -> Sealed:
    """The value of a row: ``key`` and ``expiry``, then the encoded record (module rules)."""
    name = key.encode("utf-8", "surrogatepass")
    head = (len(name).to_bytes(4, "big"), name, _EXPIRY.pack(expiry))
    return Sealed((*head, *encode_parts(record)))


def entry(key: str, value: bytes, expiry: Any) -> tuple[Record, float]:
    """A row's value and tag as (record, absolute expiry); ``Unreadable`` if they are not, or
    if the record was sealed for another key or another expiry than its row's."""
    start = _unsealed(key, value, expiry)
    try:
        record = decode(memoryview(value)[start:])
    except Exception as exc:  # SnapshotError above all, but nothing read back may escape
        raise Unreadable(f"does not decode: {exc}") from None
    return record, float(expiry)


def entry_in_file(key: str, found: InAFile, expiry: Any) -> tuple[Record, float] | None:
    """``entry`` for a value kept in a file, its body read straight into its own bytes (module
    rules); None if the file is gone."""
    try:
        with open(found.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(HEAD_READ)
            start = _unsealed(key, head, expiry)
            span = body_span(memoryview(head)[start:])
            if span is None or start + span.start + span.length + _CHECK != size:
                return entry(key, head + file.read(), expiry)  # not a plain response: whole
            file.seek(start + span.start)
            body = file.read(span.length)
            check = file.read()
    except OSError:
        return None
    try:
        record = decode_split(memoryview(head)[start : start + span.start], body, check)
    except Exception as exc:  # as entry()
        raise Unreadable(f"does not decode: {exc}") from None
    return record, float(expiry)


def _unsealed(key: str, value: bytes, expiry: Any) -> int:
    """Where the record starts in a row's ``value``, once its key and expiry are checked."""
    if type(expiry) not in (float, int):
        raise Unreadable("no expiry stored with it")
    name = key.encode("utf-8", "surrogatepass")
    view = memoryview(value)
    start = 4 + len(name)
    if view[:4] != len(name).to_bytes(4, "big") or view[4:start] != name:
        raise Unreadable("its record was sealed for another key, or by an older version")
    try:
        (sealed,) = _EXPIRY.unpack(view[start : start + _EXPIRY.size])
    except struct.error:
        raise Unreadable("its record is truncated") from None
    if sealed != expiry:  # NaN included: never equal
        raise Unreadable("its record holds another expiry than its row")
    return start + _EXPIRY.size
