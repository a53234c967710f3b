"""The versioned, checksummed binary codec of stored records (``Snapshot``).

Rules of this module:

* Bytes that leave the process (disk, later Redis) are written by ``encode`` and read by ``decode``,
  never by pickle: nothing read back is ever executed. The first byte is the format version, the
  last four a CRC-32 of everything before them (issue 11: damaged bytes on disk were served as
  hits). A value of another version, one that fails its checksum, or one that does not decode
  completely raises ``SnapshotError``, and the storage treats it as a miss: never a wrong body.
* Why CRC-32 (``zlib.crc32``): the checksum is there to catch damage (bad sectors, torn writes,
  bytes overwritten by something else), not forgery: whoever can write the cache directory can
  write a valid record under any checksum, keyed or not. CRC-32 catches every error burst up to
  32 bits and lets a random corruption through with a chance of 2**-32, and at about 5 GB/s it
  costs a 1 MiB body a fifth of a millisecond; BLAKE2b would cost five times that and add
  nothing against damage. The structural checks below it (lengths, status range, no trailing
  bytes) stay as a second line.
* Format version 3 (this one): version byte, head (status, stored_at, expires_at, request_time,
  response_time, header count, redirect count), reason, method and URL, headers, each redirect (a
  head with no redirects of its own, its fields, headers and body), the body with its length, the
  CRC-32. Older versions are no longer read: such an entry is a miss, written again as 3. Version
  1 had no checksum (before issue 11), version 2 no request and response times (before issue 12:
  without them the age of a stored response cannot be computed, RFC 9111 §4.2.3).
"""

from __future__ import annotations

import struct
import zlib

from ..spec.fields import is_status
from ..spec.snapshot import Snapshot

__all__ = [
    "FORMAT_VERSION",
    "SnapshotError",
    "decode",
    "encode",
    "encode_parts",
    "put_field",
]

FORMAT_VERSION = 3


class SnapshotError(ValueError):
    """Stored bytes that are not a snapshot this version can read."""


_VERSION = bytes((FORMAT_VERSION,))
# status, stored_at, expires_at, request_time, response_time, header count, redirect count
_HEAD = struct.Struct(">HddddIH")
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


def encode(snap: Snapshot) -> bytes:
    """Serialize a snapshot into the versioned, checksummed binary format.

    >>> s = Snapshot(200, "OK", (("Content-Type", "text/plain"),), "http://x/", "GET", b"hi")
    >>> decode(encode(s)) == s
    True
    """
    return b"".join(encode_parts(snap))


def encode_parts(snap: Snapshot) -> tuple[bytes, bytes, bytes]:
    """What :func:`encode` returns, in three parts: everything before the body, the body itself
    (not copied), the checksum. A writer that can write them one after the other (a file) keeps
    a large body from being copied at all.

    >>> s = Snapshot(200, "OK", (), "http://x/", "GET", b"hi")
    >>> b"".join(encode_parts(s)) == encode(s)
    True
    """
    out = [_VERSION]
    _put_fields(out, snap, snap.history)
    head = b"".join(out)
    body = snap.body
    return head, body, zlib.crc32(body, zlib.crc32(head)).to_bytes(_CHECK, "big")


_LENGTH = struct.Struct(">I").unpack_from
_BODY_LENGTH = struct.Struct(">Q").unpack_from


def _decode_from(data: memoryview, pos: int, hop: bool) -> tuple[Snapshot, int]:
    """The snapshot whose head starts at ``pos`` in ``data`` (checked, without its checksum), and
    where it ends. Fields are read in place: nothing but the body and the strings is copied."""
    status, stored_at, expires_at, sent, received, n_headers, n_history = _HEAD.unpack_from(
        data, pos
    )
    if not is_status(status) or (hop and n_history):
        raise SnapshotError("malformed snapshot")
    pos += _HEAD.size
    size = len(data)
    texts = []
    for _ in range(3 + 2 * n_headers):  # reason, method, url, then each header's name and value
        (n,) = _LENGTH(data, pos)
        pos += 4
        if pos + n > size:
            raise SnapshotError("truncated snapshot")
        texts.append(str(data[pos : pos + n], "utf-8", "surrogateescape"))
        pos += n
    history = []
    for _ in range(n_history):
        hop_snap, pos = _decode_from(data, pos, True)
        history.append(hop_snap)
    (n,) = _BODY_LENGTH(data, pos)
    pos += 8
    if pos + n > size:
        raise SnapshotError("truncated snapshot")
    body = bytes(data[pos : pos + n])
    reason, method, url = texts[:3]
    headers = tuple(zip(texts[3::2], texts[4::2], strict=True))
    snap = Snapshot(
        status,
        reason,
        headers,
        url,
        method,
        body,
        stored_at,
        expires_at,
        (*history,),
        sent,
        received,
    )
    return snap, pos + n


def decode(data: bytes | memoryview) -> Snapshot:
    """Read a snapshot written by :func:`encode`; anything else raises :class:`SnapshotError`.

    Damaged bytes fail the checksum before any field is read:

    >>> good = encode(Snapshot(200, "OK", (), "http://x/", "GET", b"hi"))
    >>> decode(good[:-6] + b"Hi" + good[-4:])
    Traceback (most recent call last):
    ...
    coalesce_client.storage.codec.SnapshotError: damaged snapshot: checksum mismatch
    """
    view = memoryview(data)
    version = view[0] if len(view) else None
    if version != FORMAT_VERSION:
        raise SnapshotError(f"unknown snapshot format version {version!r}")
    end = len(view) - _CHECK
    if end < 1 + _HEAD.size:
        raise SnapshotError("truncated snapshot")
    if zlib.crc32(view[:end]) != int.from_bytes(view[end:], "big"):
        raise SnapshotError("damaged snapshot: checksum mismatch")
    try:
        snap, pos = _decode_from(view[:end], 1, False)
    except (struct.error, UnicodeError) as exc:
        raise SnapshotError(f"malformed snapshot: {exc}") from None
    if pos != end:
        raise SnapshotError("trailing bytes after snapshot")
    return snap
