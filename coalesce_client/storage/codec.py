"""The versioned, checksummed binary codec of stored records (``records.Record``).

Rules of this module:

* Bytes that leave the process (disk, Redis) are written by ``encode`` and read by ``decode``,
  never by pickle: nothing read back is ever executed. The first byte is the format version, the
  second the record kind, the last four a CRC-32 of everything before them (issue 11: damaged
  bytes on disk were served as hits). A value of another version or kind, one that fails its
  checksum, or one that does not decode completely raises ``SnapshotError``, and the storage
  treats it as a miss: never a wrong body.
* A record's kind is its type (``records.py``): a response, a Vary pointer or a URL index, told
  apart by the kind byte alone, never by a field of an HTTP message.
* Why CRC-32 (``zlib.crc32``): the checksum is there to catch damage (bad sectors, torn writes,
  bytes overwritten by something else), not forgery: whoever can write the cache directory can
  write a valid record under any checksum, keyed or not. CRC-32 catches every error burst up to
  32 bits and lets a random corruption through with a chance of 2**-32, and at about 5 GB/s it
  costs a 1 MiB body a fifth of a millisecond; BLAKE2b would cost five times that and add
  nothing against damage. The structural checks below it (lengths, status range, no trailing
  bytes) stay as a second line.
* Format version 4 (this one): version byte, kind byte, the record, the CRC-32. A response: head
  (status, stored_at, expires_at, request_time, response_time, header count, redirect count),
  reason, method and URL, headers, each redirect (a head with no redirects of its own, its
  fields, headers and body), the body with its length. A Vary pointer or a URL index: stored_at,
  expires_at and the lengths of its two lists of strings (an index has one), its URL, then the
  strings. Older versions are no longer read: such an entry is a miss, written again as 4.
  Version 1 had no checksum (before issue 11), version 2 no request and response times (before
  issue 12: without them the age of a stored response cannot be computed, RFC 9111 §4.2.3),
  version 3 no record kind (a Vary pointer and a URL index were responses with made-up methods,
  issue 18).
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from ..spec.fields import is_status
from ..spec.snapshot import Snapshot
from .records import Record, UrlIndex, VaryPointer

__all__ = [
    "FORMAT_VERSION",
    "BodySpan",
    "SnapshotError",
    "body_span",
    "checksum",
    "decode",
    "decode_split",
    "encode",
    "encode_parts",
    "put_field",
]

FORMAT_VERSION = 4


class SnapshotError(ValueError):
    """Stored bytes that are not a record this version can read."""


# The record kinds (module rules): the byte after the version.
_RESPONSE = 1
_VARY_POINTER = 2
_URL_INDEX = 3
_STARTS = {kind: bytes((FORMAT_VERSION, kind)) for kind in (_RESPONSE, _VARY_POINTER, _URL_INDEX)}
# status, stored_at, expires_at, request_time, response_time, header count, redirect count
_HEAD = struct.Struct(">HddddIH")
# stored_at, expires_at, and the lengths of a pointer's or an index's two lists of strings
_LISTS = struct.Struct(">ddII")
_CHECK = 4  # bytes of the CRC-32 at the end of a record


def put_field(out: list[bytes], data: bytes) -> None:
    """Append ``data`` with its length in front (4 bytes, big-endian): the one field encoding of
    the package, used by this codec and by the key builder (``keys.py``)."""
    out.append(len(data).to_bytes(4, "big"))
    out.append(data)


def _put_str(out: list[bytes], text: str) -> None:
    put_field(out, text.encode("utf-8", "surrogateescape"))


def _put_fields(out: list[bytes], snap: Snapshot, history: tuple[Snapshot, ...]) -> None:
    """Everything of ``snap`` but its body, then the body's length."""
    out.append(
        _HEAD.pack(
            snap.status,
            snap.stored_at,
            snap.expires_at,
            snap.request_time,
            snap.response_time,
            len(snap.headers),
            len(history),
        )
    )
    _put_str(out, snap.reason)
    _put_str(out, snap.method)
    _put_str(out, snap.url)
    for name, value in snap.headers:
        _put_str(out, name)
        _put_str(out, value)
    for hop in history:  # a redirect has no redirects of its own
        _put_fields(out, hop, ())
        out.append(hop.body)
    out.append(len(snap.body).to_bytes(8, "big"))


def _put_lists(out: list[bytes], record: VaryPointer | UrlIndex) -> None:
    """The kind, times, URL and lists of strings of a pointer or an index."""
    if isinstance(record, VaryPointer):
        out.append(_STARTS[_VARY_POINTER])
        first, second = record.names, record.variants
    else:
        out.append(_STARTS[_URL_INDEX])
        first, second = record.keys, ()
    out.append(_LISTS.pack(record.stored_at, record.expires_at, len(first), len(second)))
    _put_str(out, record.url)
    for text in (*first, *second):
        _put_str(out, text)


def encode(record: Record) -> bytes:
    """Serialize a record into the versioned, checksummed binary format.

    >>> s = Snapshot(200, "OK", (("Content-Type", "text/plain"),), "http://x/", "GET", b"hi")
    >>> decode(encode(s)) == s
    True
    >>> p = VaryPointer(("accept",), ("k1",), "http://x/", 1.0, 2.0)
    >>> decode(encode(p)) == p
    True
    """
    return b"".join(encode_parts(record))


def encode_parts(record: Record) -> tuple[bytes, bytes, bytes]:
    """What :func:`encode` returns, in three parts: everything before the body, the body itself
    (not copied; empty for a record that is not a response), the checksum. A writer that can
    write them one after the other (a file) keeps a large body from being copied at all.

    >>> s = Snapshot(200, "OK", (), "http://x/", "GET", b"hi")
    >>> b"".join(encode_parts(s)) == encode(s)
    True
    """
    out: list[bytes] = []
    if isinstance(record, Snapshot):
        out.append(_STARTS[_RESPONSE])
        _put_fields(out, record, record.history)
        body = record.body
    else:
        _put_lists(out, record)
        body = b""
    head = b"".join(out)
    return head, body, zlib.crc32(body, zlib.crc32(head)).to_bytes(_CHECK, "big")


_LENGTH = struct.Struct(">I").unpack_from
_BODY_LENGTH = struct.Struct(">Q").unpack_from


def _strings(data: memoryview, pos: int, count: int) -> tuple[list[str], int]:
    """``count`` strings written by ``_put_str`` from ``pos`` on, and where they end."""
    size = len(data)
    texts = []
    for _ in range(count):
        (n,) = _LENGTH(data, pos)
        pos += 4
        if pos + n > size:
            raise SnapshotError("truncated record")
        texts.append(str(data[pos : pos + n], "utf-8", "surrogateescape"))
        pos += n
    return texts, pos


class _Head(NamedTuple):
    """A response's fields, read in place, and where its body lies: all of it but the body."""

    numbers: tuple[int, float, float, float, float]  # status, stored_at, expires_at, the times
    texts: list[str]  # reason, method, url, then each header's name and value
    history: tuple[Snapshot, ...]
    body_at: int
    body_length: int

    def snapshot(self, body: bytes) -> Snapshot:
        status, stored_at, expires_at, sent, received = self.numbers
        reason, method, url = self.texts[:3]
        headers = tuple(zip(self.texts[3::2], self.texts[4::2], strict=True))
        return Snapshot(
            status,
            reason,
            headers,
            url,
            method,
            body,
            stored_at,
            expires_at,
            self.history,
            sent,
            received,
        )


def _head(data: memoryview, pos: int, hop: bool) -> _Head:
    """The fields of the snapshot whose head starts at ``pos`` in ``data`` (checked, without its
    checksum). Nothing but the strings and the redirects' bodies is copied."""
    status, stored_at, expires_at, sent, received, n_headers, n_history = _HEAD.unpack_from(
        data, pos
    )
    if not is_status(status) or (hop and n_history):
        raise SnapshotError("malformed snapshot")
    # reason, method, url, then each header's name and value
    texts, pos = _strings(data, pos + _HEAD.size, 3 + 2 * n_headers)
    history = []
    for _ in range(n_history):
        hop_snap, pos = _decode_from(data, pos, True)
        history.append(hop_snap)
    (n,) = _BODY_LENGTH(data, pos)
    numbers = (status, stored_at, expires_at, sent, received)
    return _Head(numbers, texts, (*history,), pos + 8, n)


def _decode_from(data: memoryview, pos: int, hop: bool) -> tuple[Snapshot, int]:
    """The snapshot whose head starts at ``pos`` in ``data``, and where it ends."""
    head = _head(data, pos, hop)
    end = head.body_at + head.body_length
    if end > len(data):
        raise SnapshotError("truncated snapshot")
    return head.snapshot(bytes(data[head.body_at : end])), end


def _decode_lists(data: memoryview, kind: int) -> tuple[Record, int]:
    """The Vary pointer or URL index after the kind byte, and where it ends."""
    stored_at, expires_at, n_first, n_second = _LISTS.unpack_from(data, 2)
    if kind == _URL_INDEX and n_second:
        raise SnapshotError("malformed URL index")
    texts, pos = _strings(data, 2 + _LISTS.size, 1 + n_first + n_second)
    url, first, second = texts[0], (*texts[1 : 1 + n_first],), (*texts[1 + n_first :],)
    if kind == _URL_INDEX:
        return UrlIndex(first, url, stored_at, expires_at), pos
    return VaryPointer(first, second, url, stored_at, expires_at), pos


def decode(data: bytes | memoryview) -> Record:
    """Read a record written by :func:`encode`; anything else raises :class:`SnapshotError`.

    Damaged bytes fail the checksum before any field is read:

    >>> good = encode(Snapshot(200, "OK", (), "http://x/", "GET", b"hi"))
    >>> decode(good[:-6] + b"Hi" + good[-4:])
    Traceback (most recent call last):
    ...
    coalesce_client.storage.codec.SnapshotError: damaged snapshot: checksum mismatch
    """
    view = memoryview(data)
    checksum(view)
    end = len(view) - _CHECK
    kind = view[1]
    record: Record
    try:
        if kind == _RESPONSE:
            record, pos = _decode_from(view[:end], 2, False)
        elif kind in (_VARY_POINTER, _URL_INDEX):
            record, pos = _decode_lists(view[:end], kind)
        else:
            raise SnapshotError(f"unknown record kind {kind}")
    except (struct.error, UnicodeError) as exc:
        raise SnapshotError(f"malformed snapshot: {exc}") from None
    if pos != end:
        raise SnapshotError("trailing bytes after snapshot")
    return record


def checksum(data: bytes | memoryview) -> int:
    """The CRC-32 of the record ``data``, once its version and checksum are checked: the check
    :func:`decode` makes first.

    >>> good = encode(Snapshot(200, "OK", (), "http://x/", "GET", b"hi"))
    >>> checksum(good) == int.from_bytes(good[-4:], "big")
    True
    """
    view = memoryview(data)
    end = len(view) - _CHECK
    crc = zlib.crc32(view[: max(end, 0)])
    _check(view, end, crc, view[end:])
    return crc


class BodySpan(NamedTuple):
    """Where the body of an encoded response lies: its offset in the record, and its length."""

    start: int
    length: int


def body_span(prefix: bytes | memoryview) -> BodySpan | None:
    """Where the body lies in the encoded response that starts with ``prefix``, read from its
    fields; None if ``prefix`` does not hold all of them (nor begins a response): then read the
    record whole. Nothing is checked here: :func:`decode_split` checks everything.

    >>> record = encode(Snapshot(200, "OK", (), "http://x/", "GET", b"body"))
    >>> start, length = body_span(record[:100])  # the fields, and some of the body
    >>> record[start : start + length]
    b'body'
    """
    view = memoryview(prefix)
    if len(view) < 2 or view[0] != FORMAT_VERSION or view[1] != _RESPONSE:
        return None
    try:
        head = _head(view, 2, False)
    except (struct.error, UnicodeError, SnapshotError):
        return None
    return BodySpan(head.body_at, head.body_length)


def decode_split(head: bytes | memoryview, body: bytes, check: bytes) -> Snapshot:
    """``decode(head + body + check)`` for a response, without joining them: ``body`` (the bytes
    of the record's :func:`body_span`) becomes the snapshot's body as it is, never copied, so a
    large body read from a file is copied by nobody (issue 19). ``head`` is what comes before it.

    >>> record = encode(Snapshot(200, "OK", (), "http://x/", "GET", b"body"))
    >>> decode_split(record[:-8], b"body", record[-4:]) == decode(record)
    True
    """
    view = memoryview(head)
    _check(view, len(view), zlib.crc32(body, zlib.crc32(view)), check)
    if view[1] != _RESPONSE:
        raise SnapshotError(f"record kind {view[1]} has no body")
    try:
        fields = _head(view, 2, False)
    except (struct.error, UnicodeError) as exc:
        raise SnapshotError(f"malformed snapshot: {exc}") from None
    if fields.body_at != len(view) or fields.body_length != len(body):
        raise SnapshotError("the body is not where the record says")
    return fields.snapshot(body)


def _check(view: memoryview, end: int, crc: int, check: bytes | memoryview) -> None:
    """The checks before any field is read: the version, room for the kind, the checksum
    ``crc`` of everything before ``check``."""
    version = view[0] if len(view) else None
    if version != FORMAT_VERSION:
        raise SnapshotError(f"unknown snapshot format version {version!r}")
    if end < 2:
        raise SnapshotError("truncated snapshot")
    if crc != int.from_bytes(check, "big"):
        raise SnapshotError("damaged snapshot: checksum mismatch")
