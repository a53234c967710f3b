"""The leader of a flight when the storage is shared by processes (issue 14, ``fleet.py``).

Rules of this module:

* It stands in for ``Leader.lead`` when the storage shares flights: the fleet decides whether
  this process sends (holding the key's lease, then as ``Leader.lead``), waits for another
  process's stored response, or sends alone (another's outcome was not stored: store allowed;
  waited past ``wait_timeout``: nothing stored).
* What it reads from storage must suit this call as a lookup would: fresh and accepted by the
  caller's directives (``spec/decisions/reuse.py``'s ``Hit``) and, for a call that refreshes
  (and for a background refresh, which therefore runs once for the fleet), stored since the
  flight began. A response read so is ``remote``: its callers report ``"coalesced"``.
"""

from __future__ import annotations

from functools import partial

from ..spec.decisions.followers import variant_of
from ..spec.decisions.reuse import NOT_STALE, Hit, reuse
from ..spec.vary import vary_names
from .fleet import Fleet
from .leader import Leader
from .lookup import Lookup
from .records import Flight, FlightResult, ViaPointer

__all__ = ["FleetLeader"]


class FleetLeader:
    """``Leader.lead`` across the processes sharing one storage (module rules)."""

    __slots__ = ("_fleet", "_leader", "_lookup")

    def __init__(self, fleet: Fleet[FlightResult], leader: Leader, lookup: Lookup) -> None:
        self._fleet = fleet
        self._leader = leader
        self._lookup = lookup

    async def lead(self, flight: Flight) -> FlightResult:
        begun = self._lookup.clock()
        send = partial(self._send, flight, begun)
        read = partial(self._read, flight, begun)
        result, _ = await self._fleet.run(flight.fkey, send, read, self._lookup.writer.settle)
        return result

    async def _send(self, flight: Flight, begun: float, store: bool) -> tuple[FlightResult, bool]:
        """The flight's result, and whether it stored a fresh entry (the fleet's ``lead``)."""
        if not store:  # waited past wait_timeout: our own request, never stored
            return await self._leader.send_unstored(flight), False
        result = await self._leader.lead(flight)
        shared = result.shared
        return result, shared is not None and shared.stored_at >= begun

    async def _read(self, flight: Flight, begun: float) -> FlightResult | None:
        """What storage holds for the flight now, if it suits the call (module rules)."""
        lookup = self._lookup
        call = flight.call
        if flight.names:
            stored = await lookup.variant(flight.fkey)
        else:
            found = await lookup.resolve(flight.key, call.header)
            stored = found.response if isinstance(found, ViaPointer) else found
        if stored is None:
            return None
        if (flight.detached or call.refresh) and stored.stored_at < begun:
            return None  # (a stale entry is what the holder is replacing)
        wanted = None if flight.detached else call.wanted
        if not isinstance(reuse(stored, lookup.clock(), wanted, False, NOT_STALE), Hit):
            return None
        variant = variant_of(vary_names(stored.headers), call.header)
        return FlightResult(stored, stored, variant, remote=True)
