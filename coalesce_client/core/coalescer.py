"""The pipeline both faces share: lookup -> single-flight -> decisions -> store, with statistics.

Rules of this module (the wiring; each stage's rules are at the top of its module):

* It knows no HTTP framework, holds none of a face's objects, and imports no concrete storage:
  a face builds the storage (``MemoryStorage`` by default) and the ``Setup``, and hands each
  call over as a ``Call`` and a ``Send`` closure (``records.py``).
* The stages, one job each: ``lookup.py`` (storage reads through the Vary pointer),
  ``pipeline.py`` (the driver of ``fetch``), ``leader.py`` (a flight's request, its renewal
  after a 304, what is stored), ``fleet_leader.py`` (the flight across processes, issue 14),
  ``refreshes.py`` (stale-while-revalidate in the background), ``passes.py`` (hit-for-pass),
  ``counters.py`` (one tally per call). The RFC's decisions are ``spec/decisions``.
* ``peek`` is the whole cost of a hit, measured in instructions: it reads the pass-through list,
  the writes in progress and the storage's no-wait read directly, and inlines what it needs of
  ``lookup.py`` (the Vary pointer) and ``counters.py`` (``count_hit``).
* Invalidation (RFC 9111 §4.4): a face hands over the URL key of a resource; every entry stored
  for it is dropped (every method, credential partition and variant), through the URL index the
  writer keeps in storage. ``fetch`` takes the URL key of its request so that a stored response
  is indexed; a hit never reads or writes the index. The faces decide when
  (``spec/invalidation.invalidates``): they hold the method, the status and the headers. The
  flights of the keys dropped take no new callers, nor do their streamed responses still
  arriving (``streaming.py``), and the keys are no longer pass-through.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from ..metrics.base import Recorder
from ..options import check_seconds
from ..spec.decisions.reuse import NOT_STALE, Hit, reuse
from ..spec.requests import Wanted
from ..spec.snapshot import Snapshot
from ..spec.vary import Header, values_of
from ..storage.base import Clock, Storage
from ..storage.records import VaryPointer
from .counters import Counters
from .fleet import Fleet, leases_of
from .fleet_leader import FleetLeader
from .flight import SingleFlight
from .keys import variant_key
from .leader import Leader
from .lookup import Lookup
from .passes import Passes
from .pipeline import Lead, Pipeline
from .policy import CachePolicy
from .records import (
    Answer,
    CacheStatus,
    Call,
    Fetched,
    FlightResult,
    Send,
    Setup,
    Stats,
    ViaPointer,
    no_headers,
)
from .refreshes import Refreshes
from .streaming import Streaming
from .writer import Writer

__all__ = [
    "Answer",
    "CacheStatus",
    "Call",
    "Coalescer",
    "Fetched",
    "Fronted",
    "Send",
    "Setup",
    "Stats",
    "Wanted",
]


class Coalescer(Counters):
    """One keyed single-flight in front of one storage, and the policy that filters between.

    >>> from coalesce_client.storage.memory import MemoryStorage
    >>> core = Coalescer(MemoryStorage(), Setup.of(policy=None, ttl=60, clock=lambda: 0.0))
    >>> core.stats.requests, core.shared_cache
    (0, False)
    """

    __slots__ = (
        "_clock",
        "_fleet",
        "_flight",
        "_lookup",
        "_passes",
        "_refreshes",
        "_writer",
        "fetch",
        "pass_ttl",
        "peeked_at",
        "policy",
        "shared_cache",
        "storage",
        "ttl",
        "wait_timeout",
    )

    fetch: Callable[[Call, Send], Coroutine[Any, Any, Answer]]

    def __init__(self, storage: Storage, setup: Setup, recorder: Recorder | None = None) -> None:
        super().__init__()
        if not isinstance(storage, Storage):
            raise ValueError(f"storage must implement the Storage protocol, got {storage!r}")
        self.storage = storage
        self.policy: CachePolicy = setup.policy
        self.ttl = setup.ttl  # default seconds a stored response stays fresh
        self.wait_timeout = setup.wait_timeout  # seconds a follower waits for the leader
        self.shared_cache = setup.shared_cache  # True in the server middleware (RFC 9111)
        self._clock: Clock = setup.clock
        # The clock's reading when ``peek`` last found a hit: the face stamps the response it
        # builds from that hit with it (nothing is awaited in between), one clock read a hit.
        self.peeked_at = 0.0
        # Seconds a key whose outcome could not be shared goes straight through: a shared cache's
        # defence against serializing private routes (0 in a private cache: never).
        self.pass_ttl = (
            check_seconds(setup.policy.pass_ttl, "pass_ttl") if setup.shared_cache else 0.0
        )
        passes = Passes(setup.clock, self.pass_ttl)
        self._passes = passes.until  # peek reads the list itself
        self._writer = writer = Writer(storage, setup.clock, setup.policy.max_variants)
        self._flight: SingleFlight[str, FlightResult] = SingleFlight()
        self._refreshes = Refreshes(self._flight)
        streaming = Streaming()  # streamed responses still arriving, for late callers
        self._lookup = Lookup(writer, setup.clock, self._flight, self._refreshes, streaming)
        leader = Leader(setup, writer, self, passes, streaming)
        # Issue 14: a storage shared by processes (SharesFlights) extends each flight to them.
        leases = leases_of(storage)
        self._fleet: Fleet[FlightResult] | None = None
        lead: Lead = leader.lead
        if leases is not None:
            self._fleet = Fleet(leases, self.wait_timeout)
            lead = FleetLeader(self._fleet, leader, self._lookup).lead
        if recorder is not None:  # the face's metrics=: where each thing is counted, recorded
            self.record_to(recorder)
            writer.recorder = recorder
            self._flight.completed = recorder.followers
            if self._fleet is not None:
                self._fleet.recorder = recorder
        # fetch(call, send): the response for one call (``Call``), from storage, from a flight
        # in progress, or sent now. The driver's own method (pipeline.py): no call in between.
        self.fetch = Pipeline(setup, self, self._lookup, passes, lead).fetch

    @property
    def stats(self) -> Stats:
        return self.snapshot(self._writer.stored)

    @property
    def clock(self) -> Clock:
        """The wall clock this pipeline was given; the faces time their real requests with it."""
        return self._clock

    @property
    def flight(self) -> SingleFlight[str, FlightResult]:
        return self._flight

    async def lookup(self, key: str) -> Snapshot | VaryPointer | None:
        """A fresh stored response (or Vary pointer) for ``key``, or None; a broken storage is a
        miss."""
        return await self._lookup.fresh_record(key)

    def peek(
        self, key: str, header: Header = no_headers, wanted: Wanted | None = None
    ) -> Snapshot | None:
        """A fresh stored response found without waiting, counted as a hit; else None.

        The faces try this before ``fetch``: with a storage that offers ``get_nowait`` a hit then
        costs no coroutine at all. None means only "not here without waiting": ``fetch`` decides.
        ``header`` gives the request's header values, read only where the URL's responses vary.
        """
        if self._passes and key in self._passes:
            return None
        writer = self._writer
        # writer.read_nowait(key), inlined for the common case: this is the whole cost of a hit.
        snap = writer.pending.get(key)
        if snap is None:
            get_nowait = writer.get_nowait
            if get_nowait is None:
                return None
            try:
                snap = get_nowait(key)
            except Exception:
                return None  # fetch() reads again, and logs what is wrong
            if snap is None:
                return None
        # ``type() is``, not ``isinstance``: a response would fail isinstance(snap, VaryPointer)
        # only after a lookup of its __class__ (~250 instructions a hit).
        if type(snap) is not Snapshot:  # Vary: this request's own variant, or nothing
            if not isinstance(snap, VaryPointer):
                return None
            names = snap.names
            snap = writer.read_nowait(variant_key(key, names, values_of(names, header)))
            if not isinstance(snap, Snapshot):
                return None
        now = self._clock()
        if snap.expires_at <= now or (wanted is not None and not wanted.accepts(snap, now)):
            return None
        if self.recorder is None:  # a hit begun and ended: one counter (counters.py)
            self.peeked += 1
        else:
            self.count_hit()  # recorded
        self.peeked_at = now
        return snap

    async def fresh(
        self, key: str, header: Header = no_headers, wanted: Wanted | None = None
    ) -> Snapshot | None:
        """``peek``, reading the storage when it has nothing at hand: a fresh stored response
        for ``key`` (through its Vary pointer), counted as a hit; else None, not counted. For a
        face that answers a request from storage only (a conditional request)."""
        snap = self.peek(key, header, wanted)
        if snap is None:
            snap = await self.stored(key, header, wanted)
            if snap is not None:
                self.count_hit()
        return snap

    async def stored(
        self, key: str, header: Header = no_headers, wanted: Wanted | None = None
    ) -> Snapshot | None:
        """``fresh`` without counting: a fresh stored response for ``key`` that ``wanted``
        accepts, or None. For a face that may yet decline it (a Range request finds a stored
        response it does not range, and sends the request on): it counts the hit
        (``count_hit``) when it answers from it."""
        found = await self._lookup.resolve(key, header)
        snap = found.response if isinstance(found, ViaPointer) else found
        if snap is None or not isinstance(
            reuse(snap, self._clock(), wanted, False, NOT_STALE), Hit
        ):
            return None
        return snap

    async def drain(self) -> None:
        """Wait for the background refreshes and storage writes still running (before closing
        storage)."""
        await self._refreshes.drain()
        await self._writer.drain()
        if self._fleet is not None:
            await self._fleet.drain()

    async def invalidate(self, key: str) -> None:
        """Drop what is stored for ``key``, every Vary variant included; a flight in progress
        takes no new callers."""
        self._flight.forget(key)
        self._passes.pop(key, None)
        streaming = self._lookup.streaming
        streaming.forget(key)
        for vkey in await self._writer.delete(key):
            self._flight.forget(vkey)
            streaming.forget(vkey)

    async def invalidate_url(self, url_key: str) -> None:
        """Drop every stored response of the URL whose URL key this is (module rules); the
        flights of the keys dropped take no new callers, nor its streamed responses still
        arriving (``streaming.py``)."""
        streaming = self._lookup.streaming
        streaming.forget_url(url_key)
        for key in await self._writer.delete_url(url_key):
            self._flight.forget(key)
            self._passes.pop(key, None)
            streaming.forget(key)

    async def clear(self) -> None:
        """Remove every stored response."""
        await self.storage.clear()
        self._writer.forget_indexes()
        self._lookup.streaming.clear()


class Fronted:
    """What both faces show of their core: its counters and its storage (one copy for both)."""

    __slots__ = ()
    _core: Coalescer

    @property
    def stats(self) -> Stats:
        """Counters so far, as a frozen snapshot (the README says what each one counts)."""
        return self._core.stats

    @property
    def storage(self) -> Storage:
        """The storage this face's responses are kept in."""
        return self._core.storage
