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
* A streamed entry's row (``bodies.py``) holds its key and expiry, then its block table, then
  the record of its response with an empty body; its body is in the file the row names.
* A value file that cannot be opened or read (removed with its row by another process
  meanwhile) is a miss, as diskcache has it, not an unreadable row.
* A value read on the event loop again and again (a hot entry kept inside SQLite) is unsealed,
  checked and decoded once (issue 20: the decode, then the checksum, was most of a disk hit):
  ``Decoded`` remembers, by key, the entry it made of a row with the row's very value and tag.
  Every read still reads the row; a remembered entry is served only if the row holds the very
  bytes it was made from, their key, expiry and checksum checked then (equal bytes have equal
  checksums: comparing them is that check, and cheaper), and the same tag; anything else is
  unsealed, checked and decoded anew. The records are immutable, shared by the hits as
  ``MemoryStorage``'s are; at most ``REMEMBERED`` bytes of values (each at most
  ``REMEMBER_MAX``), the oldest forgotten first.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Any, NamedTuple

from ...spec.snapshot import Snapshot
from ..codec import body_span, decode, decode_split, encode_parts
from ..records import Record
from .bodies import Blocks, BodyIO, Damaged, FileBody

__all__ = [
    "HEAD_READ",
    "Decoded",
    "InAFile",
    "Sealed",
    "StreamedFile",
    "StreamedValue",
    "Unreadable",
    "entry",
    "entry_in_file",
    "seal",
    "seal_streamed",
    "streamed_entry",
]

HEAD_READ = 64 * 1024  # bytes of a value file read to find its body (module rules)
REMEMBERED = 4 * 1024 * 1024  # bytes of values whose decoded records Decoded keeps
REMEMBER_MAX = 64 * 1024  # a larger value is decoded on each read, never remembered
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


class StreamedValue(NamedTuple):
    """What ``rows.BytesDisk.store`` takes for a streamed entry: its body's file (written
    already), the body's length, and the row's value."""

    name: str
    size: int
    sealed: Sealed


class StreamedFile(NamedTuple):
    """What ``rows.BytesDisk.fetch`` returns for a streamed entry's row: the file it names (as
    the row has it), and the row's value."""

    name: str
    value: bytes


def seal(key: str, expiry: float, record: Record) -> Sealed:
    """The value of a row: ``key`` and ``expiry``, then the encoded record (module rules)."""
    return Sealed((*_seal_head(key, expiry), *encode_parts(record)))


def seal_streamed(key: str, expiry: float, record: Snapshot, blocks: Blocks) -> Sealed:
    """The value of a streamed entry's row: ``key`` and ``expiry``, the block table of its body,
    then the record of ``record`` without its body (module rules)."""
    head, _, check = encode_parts(record)
    return Sealed((*_seal_head(key, expiry), blocks.encode(), head, check))


def _seal_head(key: str, expiry: float) -> tuple[bytes, bytes, bytes]:
    name = key.encode("utf-8", "surrogatepass")
    return len(name).to_bytes(4, "big"), name, _EXPIRY.pack(expiry)


def streamed_entry(
    key: str, found: StreamedFile, expiry: Any, io: BodyIO | None, *, opened: bool
) -> tuple[Snapshot, float] | None:
    """``entry`` for a streamed entry's row: its response, whose ``stream`` is its body's file
    (``bodies.FileBody``; none without ``io``), opened now if ``opened`` (None if the file is
    gone); ``Unreadable`` as ``entry`` has it, and for a file shorter than its row says."""
    start = _unsealed(key, found.value, expiry)
    try:
        blocks, start = Blocks.decode(found.value, start)
        record = decode(memoryview(found.value)[start:])
    except Exception as exc:  # Damaged, SnapshotError: nothing read back may escape
        raise Unreadable(f"does not decode: {exc}") from None
    if not isinstance(record, Snapshot) or record.body:
        raise Unreadable("a streamed entry whose record is not a response without its body")
    if io is None:
        return record, float(expiry)
    body = FileBody(key, found.name, blocks, io)
    if opened:
        try:
            body.open()
        except Damaged as exc:
            raise Unreadable(str(exc)) from None
        except OSError:
            return None  # the file went with its row, removed by another process meanwhile
    return dataclasses.replace(record, stream=body), float(expiry)


class _Known(NamedTuple):
    """An entry ``Decoded`` made, and the row's value and tag it made it of."""

    value: bytes
    tag: Any
    entry: tuple[Record, float]


class Decoded:
    """The entries made of rows read on the loop, by key (module rules)."""

    __slots__ = ("_bytes", "_known")

    def __init__(self) -> None:
        self._known: dict[str, _Known] = {}  # oldest first
        self._bytes = 0

    def entry(self, key: str, value: bytes, tag: Any) -> tuple[Record, float]:
        """``entry(key, value, tag)``: remembered if this row was read before as it is now."""
        known = self._known.get(key)
        if known is not None and known.value == value and known.tag == tag:
            return known.entry  # the very bytes checked before (module rules)
        found = entry(key, value, tag)
        if len(value) <= REMEMBER_MAX:
            self._remember(key, _Known(value, tag, found))
        return found

    def _remember(self, key: str, known: _Known) -> None:
        old = self._known.pop(key, None)
        if old is not None:
            self._bytes -= len(old.value)
        self._known[key] = known
        self._bytes += len(known.value)
        while self._bytes > REMEMBERED:
            first = next(iter(self._known))
            self._bytes -= len(self._known.pop(first).value)


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
    start = 4 + len(name)
    if not value.startswith(len(name).to_bytes(4, "big") + name):
        raise Unreadable("its record was sealed for another key, or by an older version")
    try:
        (sealed,) = _EXPIRY.unpack_from(value, start)
    except struct.error:
        raise Unreadable("its record is truncated") from None
    if sealed != expiry:  # NaN included: never equal
        raise Unreadable("its record holds another expiry than its row")
    return start + _EXPIRY.size
