"""The stored response: an immutable snapshot, and the versioned binary codec for it.

Rules of this module:

* A ``Snapshot`` is what crosses every layer: the flight hands it to its waiters, storage keeps it,
  both faces replay it. It is frozen; its body is kept once and shared by every replay.
* Bytes that leave the process (disk, later Redis) are written by ``encode`` and read by ``decode``,
  never by pickle: nothing read back is ever executed. The first byte is the format version; a value
  of another version, or one that does not decode completely, raises ``SnapshotError`` and the
  storage treats it as a miss.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .options import is_status

__all__ = [
    "FORMAT_VERSION",
    "Headers",
    "Snapshot",
    "SnapshotError",
    "decode",
    "encode",
    "put_field",
]

Headers = tuple[tuple[str, str], ...]
FORMAT_VERSION = 1


class SnapshotError(ValueError):
    """Stored bytes that are not a snapshot this version can read."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An HTTP response as it was received, with the times that bound its freshness.

    ``headers`` keep their order and repeats. ``history`` holds the redirects that led here, each a
    snapshot with an empty body. Times are wall-clock seconds (``time.time()``), so that an entry
    written by one process means the same to the next.
    """

    status: int
    reason: str
    headers: Headers
    url: str
    method: str
    body: bytes
    stored_at: float = 0.0
    expires_at: float = 0.0
    history: tuple[Snapshot, ...] = ()

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return None

    @property
    def size(self) -> int:
        """A rough size in bytes (body, headers, URL). Not what keeping it costs in memory:
        MemoryStorage counts that (``storage.memory.entry_cost``)."""
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers) + len(self.url) + 64


_HEAD = struct.Struct(">BHddIH")  # version, status, stored_at, expires_at, header count, history


def put_field(out: list[bytes], data: bytes) -> None:
    """Append ``data`` with its length in front (4 bytes, big-endian): the one field encoding of
    the package, used by this codec and by the key builder (``keys.py``)."""
    out.append(len(data).to_bytes(4, "big"))
    out.append(data)


def _put_str(out: list[bytes], text: str) -> None:
    put_field(out, text.encode("utf-8", "surrogateescape"))


def _encode_into(out: list[bytes], snap: Snapshot, depth: int) -> None:
    out.append(
        _HEAD.pack(
            FORMAT_VERSION,
            snap.status,
            snap.stored_at,
            snap.expires_at,
            len(snap.headers),
            len(snap.history) if depth == 0 else 0,
        )
    )
    _put_str(out, snap.reason)
    _put_str(out, snap.method)
    _put_str(out, snap.url)
    for name, value in snap.headers:
        _put_str(out, name)
        _put_str(out, value)
    if depth == 0:
        for hop in snap.history:
            _encode_into(out, hop, 1)
    out.append(len(snap.body).to_bytes(8, "big"))
    out.append(snap.body)


def encode(snap: Snapshot) -> bytes:
    """Serialize a snapshot into the versioned binary format.

    >>> s = Snapshot(200, "OK", (("Content-Type", "text/plain"),), "http://x/", "GET", b"hi")
    >>> decode(encode(s)) == s
    True
    """
    out: list[bytes] = []
    _encode_into(out, snap, 0)
    return b"".join(out)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise SnapshotError("truncated snapshot")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def str(self) -> str:
        n = int.from_bytes(self.take(4), "big")
        return bytes(self.take(n)).decode("utf-8", "surrogateescape")


def _decode_from(r: _Reader, depth: int) -> Snapshot:
    version = r.data[r.pos] if r.pos < len(r.data) else None
    if version != FORMAT_VERSION:
        raise SnapshotError(f"unknown snapshot format version {version!r}")
    _, status, stored_at, expires_at, n_headers, n_history = _HEAD.unpack(r.take(_HEAD.size))
    if not is_status(status) or (depth and n_history):
        raise SnapshotError("malformed snapshot")
    reason, method, url = r.str(), r.str(), r.str()
    headers = tuple((r.str(), r.str()) for _ in range(n_headers))
    history = tuple(_decode_from(r, 1) for _ in range(n_history))
    body = bytes(r.take(int.from_bytes(r.take(8), "big")))
    return Snapshot(status, reason, headers, url, method, body, stored_at, expires_at, history)


def decode(data: bytes | memoryview) -> Snapshot:
    """Read a snapshot written by :func:`encode`; anything else raises :class:`SnapshotError`."""
    r = _Reader(data)
    try:
        snap = _decode_from(r, 0)
    except (struct.error, UnicodeError, IndexError) as exc:
        raise SnapshotError(f"malformed snapshot: {exc}") from None
    if r.pos != len(r.data):
        raise SnapshotError("trailing bytes after snapshot")
    return snap
