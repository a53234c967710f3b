"""The stored response as plain data: ``Snapshot``, the record every layer speaks.

Rules of this module:

* A ``Snapshot`` is what crosses every layer: the flight hands it to its waiters, storage keeps it,
  both faces replay it. It is frozen; its body is kept once and shared by every replay.
* It is pure data with the one HTTP computation it needs, its current age (RFC 9111 §4.2.3, with
  ``now`` passed in). How it is written to bytes is the storage layer's (``storage/codec.py``).
* Two memos ride on it, outside the record (not compared, not encoded, dropped by
  ``replace()``): its corrected initial age, and a face's prepared form for its replays. Each
  lives exactly as long as the snapshot, so it adds nothing past the storage's bounds but its
  own size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .dates import parse_http_date
from .freshness import current_age

__all__ = ["Headers", "Snapshot"]

Headers = tuple[tuple[str, str], ...]


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
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers) + len(self.url) + 64
