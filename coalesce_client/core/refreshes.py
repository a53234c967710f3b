"""Background refreshes: stale-while-revalidate's one request per key (RFC 5861 §3).

Rules of this module:

* A caller served a stale response within its stale-while-revalidate window starts a refresh of
  the flight's key, unless one runs already (a refresh is a flight: later callers who want a
  fresh response join it) or ``MAX_REFRESHES`` do: the callers of the others are still served
  stale, and a later caller starts theirs.
* A refresh's failure is logged, never raised: its caller was answered.
* ``drain()`` waits for every refresh still running (before closing the storage). A refresh is
  forgotten when it ends, only if it is still the one registered for its key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .flight import SingleFlight

__all__ = ["MAX_REFRESHES", "Refreshes"]

log = logging.getLogger("coalesce_client")

MAX_REFRESHES = 256  # background refreshes (stale-while-revalidate) running at once, at most


class Refreshes:
    """The background refreshes of one coalescer, by flight key (module rules)."""

    __slots__ = ("_flight", "tasks")

    def __init__(self, flight: SingleFlight[str, Any]) -> None:
        self._flight = flight
        # The refreshes running, by flight key. The callers' paths test ``fkey in tasks``
        # directly (a dict's own test: this is on every call's path); written here only.
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def __repr__(self) -> str:
        return f"<Refreshes running={len(self.tasks)}>"

    def __len__(self) -> int:
        return len(self.tasks)

    def start(self, fkey: str, lead: Callable[[], Awaitable[object]]) -> None:
        """Refresh ``fkey`` in the background as a flight running ``lead`` (module rules)."""
        if fkey in self._flight or len(self.tasks) >= MAX_REFRESHES:
            return
        task = asyncio.ensure_future(self._refresh(fkey, lead))
        self.tasks[fkey] = task

    async def _refresh(self, fkey: str, lead: Callable[[], Awaitable[object]]) -> None:
        try:
            await self._flight.run(fkey, lead)
        except Exception as exc:
            log.warning(
                "background refresh failed (stale-while-revalidate): %s: %s",
                type(exc).__name__,
                exc,
            )
        finally:
            task = asyncio.current_task()
            if self.tasks.get(fkey) is task:
                del self.tasks[fkey]

    async def drain(self) -> None:
        """Wait for the refreshes still running."""
        while self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
