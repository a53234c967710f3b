"""The stored response as plain data: ``Snapshot``, the record every layer speaks.

Rules of this module:

* A ``Snapshot`` is what crosses every layer: the flight hands it to its waiters, storage keeps it,
  both faces replay it. It is frozen; its body is kept once and shared by every replay.
* It is pure data with the one HTTP computation it needs, its current age (RFC 9111 §4.2.3, with
  ``now`` passed in). How it is written to bytes is the storage layer's (``storage/codec.py``).
* A body too large to hold in memory (issue 24) is a ``StreamedBody`` in ``stream`` (``body`` is
  then ``b""``): a spool a flight fills as the body arrives (``core/spool.py``), or a stored
  entry read from its file (``storage/``). Each reader opens its own ``BodyReader``, with its own
  position, over a range of it; a body that ends short raises ``TruncatedBodyError`` in every
  reader, never a short body presented as complete. ``stream`` is not part of the record:
  not compared, not encoded (the storage that takes a stream writes its bytes itself), kept by
  ``replace()``.
* Two memos ride on it, outside the record (not compared, not encoded, dropped by
  ``replace()``): its corrected initial age, and a face's prepared form for its replays. Each
  lives exactly as long as the snapshot, so it adds nothing past the storage's bounds but its
  own size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .dates import parse_http_date
from .freshness import current_age

__all__ = ["BodyReader", "Headers", "Snapshot", "StreamedBody", "TruncatedBodyError"]

Headers = tuple[tuple[str, str], ...]


class TruncatedBodyError(Exception):
    """A streamed body ended before it was complete: the origin failed mid-body, or a stored
    entry turned out damaged. Every reader of that body gets it, never a short body presented as
    complete; the faces turn it into their own error (``aiohttp.ClientPayloadError`` in the
    client, a reset connection in the middleware)."""


class BodyReader(Protocol):
    """One reader's own position over (a range of) a ``StreamedBody``."""

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``-1``: all that is left), waiting for them to arrive; ``b""`` at
        the end of the range. Raises ``TruncatedBodyError`` when the body ended short."""
        ...

    def close(self) -> None:
        """Stop reading: whatever this reader held is freed at once (idempotent)."""
        ...


class StreamedBody(Protocol):
    """A body not held in memory as one ``bytes``: a flight's spool, or a stored entry's file."""

    @property
    def length(self) -> int | None:
        """Its whole length in bytes when known (complete, or announced by Content-Length)."""
        ...

    def reader(self, start: int = 0, end: int | None = None) -> BodyReader:
        """A new reader of bytes ``start`` to ``end`` (exclusive; None: to the end)."""
        ...

    async def complete(self) -> int:
        """Wait until the whole body has arrived; its length. Raises ``TruncatedBodyError``."""
        ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An HTTP response as it was received, with the times that bound its freshness.

    ``headers`` keep their order and repeats. ``history`` holds the redirects that led here, each a
    snapshot with an empty body. Times are wall-clock seconds (``time.time()``), so that an entry
    written by one process means the same to the next: ``stored_at`` and ``expires_at`` are
    written by the coalescer when it stores (0.0: not stored), ``request_time`` and
    ``response_time`` by the face around the real request (RFC 9111 §4.2.3: when the request was
    sent, when its response arrived).

    >>> s = Snapshot(200, "OK", (("Age", "10"),), "http://x/", "GET", b"", request_time=100.0,
    ...              response_time=100.0)
    >>> s.age(105.0)
    15.0
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
    request_time: float = 0.0
    response_time: float = 0.0
    # A body not held in memory (module rules): ``body`` is then b"". Not compared, not encoded.
    stream: StreamedBody | None = field(default=None, repr=False, compare=False)
    # The corrected initial age (RFC 9111 §4.2.3), computed on the first replay and kept: it
    # depends only on the fields above, and a replay should not parse a Date each time (about
    # 2 us, half of what a middleware hit costs). Not a field of the record: ``replace()`` and
    # ``decode()`` start it afresh.
    _initial_age: float | None = field(default=None, init=False, repr=False, compare=False)
    # A face's own form of this response for its replays (the server face's reply template,
    # ``server/replay.py``), opaque here: made by a face when it replays the snapshot again, and
    # kept as long as the snapshot is, so that it is never held past its entry's eviction. Not
    # a field of the record either.
    replay_form: object = field(default=None, init=False, repr=False, compare=False)

    def age(self, now: float) -> float:
        """The current age of this response at ``now`` (RFC 9111 §4.2.3): the origin's ``Age``
        or the apparent age from its ``Date``, whichever is more, plus the time since it
        arrived."""
        initial = self._initial_age
        if initial is None:
            raw_date = self.header("Date")
            at = self.response_time
            date = None if raw_date is None else parse_http_date(raw_date, now=at)
            initial = current_age(
                self.header("Age"), date, request_time=self.request_time, response_time=at, now=at
            )
            object.__setattr__(self, "_initial_age", initial)  # a memo on a frozen record
        return initial + (now - self.response_time)

    def keep_replay_form(self, form: object) -> None:
        """Keep a face's form of this response for its next replays (``replay_form``)."""
        object.__setattr__(self, "replay_form", form)  # a memo on a frozen record

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
        streamed = 0 if self.stream is None else self.stream.length or 0
        return (
            len(self.body)
            + streamed
            + sum(len(k) + len(v) for k, v in self.headers)
            + len(self.url)
            + 64
        )
