"""Lookup: what is stored for a request, read through its URL's Vary pointer.

Rules of this module:

* Storage is an optimisation, never a point of failure: a read that fails is a miss (the writer
  logs it, ``writer.py``); a write in progress is read as if it were stored.
* Vary (``spec/vary.py``): a response that varies is stored under its variant key, with a
  pointer under the request's key naming the headers it varies on; a lookup that finds a pointer
  reads the variant of its own request's values, and the call's flight runs on that variant's
  key. A pointer is read only while it lasts, and is never handed on as a response: what this
  stage returns is a response or None.
* A caller that finds its variant's flight in progress joins it without reading storage (what is
  stored is being replaced); a background refresh is no such flight (its callers are served
  what is stored). Nor, while its body still arrives, does a caller that finds the streamed
  response of an ended flight of its key (``streaming.py``): the pipeline reads that first.
* A pointer is its own record (``storage/records.py``'s ``VaryPointer``); a response is told
  from it by ``isinstance(record, Snapshot)``, which is true at once for a response (an exact
  type), the common case (``Coalescer.peek`` does the same, inlined).
"""

from __future__ import annotations

from typing import Any

from ..spec.snapshot import Snapshot
from ..spec.vary import Header, values_of
from ..storage.base import Clock
from .flight import SingleFlight
from .keys import variant_key
from .records import ViaPointer
from .refreshes import Refreshes
from .streaming import Streaming
from .writer import Found, Writer

__all__ = ["Lookup"]


def _response(record: Found | None) -> Snapshot | None:
    """A stored record as a response: a pointer where a response belongs reads as nothing."""
    return record if isinstance(record, Snapshot) else None


class Lookup:
    """Storage reads for one coalescer's calls (module rules)."""

    __slots__ = ("clock", "flight", "refreshes", "streaming", "writer")

    def __init__(
        self,
        writer: Writer,
        clock: Clock,
        flight: SingleFlight[str, Any],
        refreshes: Refreshes,
        streaming: Streaming,
    ) -> None:
        self.writer = writer
        self.streaming = streaming  # streamed responses still arriving, for late callers
        self.clock = clock
        self.flight = flight  # the flights in progress, by flight key
        self.refreshes = refreshes  # the background refreshes among them

    async def fresh_record(self, key: str) -> Found | None:
        """What is stored under ``key`` (a response or a Vary pointer) while it is fresh."""
        record = await self.writer.read(key)
        if record is not None and record.expires_at <= self.clock():
            return None
        return record

    async def resolve(self, key: str, header: Header) -> Snapshot | ViaPointer | None:
        """What is stored for this request, fresh or not: the response under its own key (or
        None), or, through a Vary pointer, a ``ViaPointer`` naming its variant's key, the call's
        flight key from then on (a record only then: this is on every call's path)."""
        record = await self.writer.read(key)
        if record is None or isinstance(record, Snapshot):
            return record
        if record.expires_at <= self.clock():
            return None  # a pointer is read only while it lasts
        names = record.names
        vkey = variant_key(key, names, values_of(names, header))
        if vkey not in self.refreshes.tasks and self.flight.joinable(vkey):
            return ViaPointer(vkey, None)  # joins the flight in progress: nothing to read
        return ViaPointer(vkey, _response(await self.writer.read(vkey)))

    async def variant(self, vkey: str) -> Snapshot | None:
        """The response stored under a variant key, fresh or not."""
        return _response(await self.writer.read(vkey))
