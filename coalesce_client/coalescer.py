"""The pipeline both faces share: lookup -> single-flight -> filter -> store, with statistics.

Rules of this module:

* It knows no HTTP framework. A face hands it a request key and a ``send`` callable that performs
  the real request and returns a complete ``Snapshot`` (body read) plus whether it may be shared.
* Every call counts once in ``requests`` and once in exactly one of hits / misses / coalesced /
  bypassed, the counter that matches the ``cache_status`` its caller sees; ``errors`` counts calls
  that raised; ``upstream`` counts real requests sent.
* Storage is an optimisation, never a point of failure: an exception from it is logged (once per
  operation and exception type, then at DEBUG) and the call goes on as if nothing was stored.
* Only a leader stores, and only what the policy allows; a follower that stopped waiting
  (``wait_timeout``) or could not share makes its own request, which is never stored.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

from .flight import SingleFlight, WaitTimeout
from .policy import CachePolicy
from .snapshot import Snapshot
from .storage.base import Clock, Storage
from .storage.memory import MemoryStorage

__all__ = ["Answer", "CacheStatus", "Coalescer", "Fetched", "Stats"]

log = logging.getLogger("coalesce_client")

CacheStatus = Literal["hit", "miss", "coalesced", "bypass"]

_STORE_WAIT = 0.05  # seconds a flight waits for its storage write before answering anyway
_MAX_PASSES = 10_000  # keys remembered as pass-through at most (bounded everything)


@dataclass(frozen=True, slots=True)
class Stats:
    """Counters of one session or middleware, as a frozen snapshot (see the module rules)."""

    requests: int = 0
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    stored: int = 0
    bypassed: int = 0
    errors: int = 0
    upstream: int = 0


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a face's ``send`` returns: the complete response, and whether others may have it.

    ``snapshot`` is None for an outcome that cannot be replayed from bytes (a streamed response, an
    exception the handler raised): it is never stored. ``shareable`` False means no other caller
    may see this outcome (too large to buffer for sharing, private to the caller); the flight's
    followers then send their own request. ``original`` is the face's own object for the outcome
    (the handler's response or exception), handed back untouched to the caller that sent it and,
    when shareable, to the followers, who must copy what they use.
    """

    snapshot: Snapshot | None
    shareable: bool = True
    original: object = None


class Answer(NamedTuple):
    """What one call gets: a snapshot to replay (or None), where it came from, the face's object."""

    snapshot: Snapshot | None
    status: CacheStatus
    original: object = None


@dataclass(frozen=True, slots=True)
class _Led:
    """The value of a flight: the leader's own outcome, and what everybody else may have of it."""

    fetched: Fetched
    shared: Snapshot | None  # stripped of strip_headers; None when there is nothing to replay


Send = Callable[[], Awaitable[Fetched]]


class Coalescer:
    """One keyed single-flight in front of one storage, and the policy that filters between."""

    __slots__ = (
        "_as_response",
        "_background",
        "_clock",
        "_counts",
        "_flight",
        "_get_nowait",
        "_logged",
        "_passes",
        "_writing",
        "pass_ttl",
        "policy",
        "shared_cache",
        "storage",
        "ttl",
        "wait_timeout",
    )

    def __init__(
        self,
        *,
        storage: Storage | None,
        policy: CachePolicy | None,
        ttl: float,
        clock: Clock,
        wait_timeout: float | None = None,
        shared_cache: bool = False,
        as_response: Callable[[Snapshot], object] | None = None,
    ) -> None:
        # The options both faces share are checked here, once, with the user's option names.
        if not valid_seconds(ttl):
            raise ValueError(f"ttl must be a non-negative number of seconds, got {ttl!r}")
        if wait_timeout is not None and (not valid_seconds(wait_timeout) or wait_timeout == 0):
            raise ValueError(
                f"wait_timeout must be a positive number of seconds or None, got {wait_timeout!r}"
            )
        if not callable(clock):
            raise ValueError(f"clock must be callable, got {clock!r}")
        if policy is None:
            policy = CachePolicy()
        elif not isinstance(policy, CachePolicy):
            raise ValueError(f"policy must be a CachePolicy, got {policy!r}")
        if storage is None:
            storage = MemoryStorage(clock=clock)
        elif not isinstance(storage, Storage):
            raise ValueError(f"storage must implement the Storage protocol, got {storage!r}")
        self.storage = storage
        self._get_nowait: Callable[[str], Snapshot | None] | None = getattr(
            storage, "get_nowait", None
        )
        self.policy = policy
        self.ttl = float(ttl)  # default seconds a stored response stays fresh; 0 = store nothing
        self.wait_timeout = wait_timeout  # how long a follower waits before sending its own
        self.shared_cache = shared_cache  # True in the server middleware (RFC 9111 shared cache)
        self._clock = clock
        # Turns a snapshot into the face's response object, for policy.should_store to judge.
        self._as_response = as_response
        # Seconds a key whose outcome could not be shared goes straight through: a shared cache's
        # defence against serializing private routes (0 in a private cache: never).
        self.pass_ttl = policy.pass_ttl if shared_cache else 0.0
        self._passes: dict[str, float] = {}  # key -> until (clock); insertion order = age
        # Snapshots whose storage write has not finished yet, and the tasks writing them.
        self._writing: dict[str, Snapshot] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._flight: SingleFlight[str, _Led] = SingleFlight()
        # requests, hits, misses, coalesced, stored, bypassed, errors, upstream (Stats order)
        self._counts = [0] * 8
        self._logged: set[tuple[str, type[BaseException]]] = set()

    @property
    def stats(self) -> Stats:
        return Stats(*self._counts)

    @property
    def flight(self) -> SingleFlight[str, _Led]:
        return self._flight

    async def lookup(self, key: str) -> Snapshot | None:
        """A fresh stored response for ``key``, or None; a broken storage is a miss."""
        snap = self._writing.get(key)
        if snap is None:
            try:
                snap = await self.storage.get(key)
            except Exception as exc:
                self._storage_failed("get", exc)
                return None
        if snap is not None and snap.expires_at <= self._clock():
            return None
        return snap

    def peek(self, key: str) -> Snapshot | None:
        """A fresh stored response found without waiting, counted as a hit; else None.

        The faces try this before ``fetch``: with a storage that offers ``get_nowait`` a hit then
        costs no coroutine at all. None means only "not here without waiting": ``fetch`` decides.
        """
        get_nowait = self._get_nowait
        if get_nowait is None or (self._passes and key in self._passes):
            return None
        snap = self._writing.get(key)
        if snap is None:
            try:
                snap = get_nowait(key)
            except Exception:
                return None  # fetch() reads again, and logs what is wrong
            if snap is None:
                return None
        if snap.expires_at <= self._clock():
            return None
        counts = self._counts
        counts[0] += 1
        counts[1] += 1
        return snap

    async def drain(self) -> None:
        """Wait for the storage writes still running in the background (before closing storage)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def fetch(
        self, key: str, send: Send, *, ttl: float | None = None, refresh: bool = False
    ) -> Answer:
        """The response for one call: from storage, from a flight in progress, or sent now."""
        counts = self._counts
        if self._passes and self._passing(key):
            return await self.bypass(send)
        counts[0] += 1
        flight = self._flight
        joining = key in flight
        # A caller that finds a flight in progress joins it without reading storage: whatever is
        # stored is being replaced, and in a burst this saves a storage read per follower.
        if not refresh and not joining:
            snap = await self.lookup(key)
            if snap is not None:
                counts[1] += 1
                return Answer(snap, "hit")
            joining = key in flight  # a slow storage read may have let a flight start
        try:
            outcome = await flight.run(
                key,
                lambda: self._lead(key, send, ttl),
                timeout=self.wait_timeout if joining else None,
            )
        except WaitTimeout:
            # Waited longer than wait_timeout: send our own request, which is not stored
            # (nginx proxy_cache_lock_timeout).
            return await self._alone(send, "miss")
        except BaseException:
            counts[3 if joining else 2] += 1  # coalesced or miss, as the caller would have been
            counts[6] += 1
            raise
        led = outcome.value
        fetched = led.fetched
        if not outcome.joined:
            counts[2] += 1
            return Answer(fetched.snapshot, "miss", fetched.original)
        if not fetched.shareable:
            return await self._alone(send, "miss")
        counts[3] += 1
        return Answer(led.shared, "coalesced", fetched.original)

    async def bypass(self, send: Send) -> Answer:
        """A call that takes no part: no lookup, no flight, nothing stored."""
        self._counts[0] += 1
        return await self._alone(send, "bypass")

    async def invalidate(self, key: str) -> None:
        """Drop what is stored for ``key``; a flight in progress takes no new callers."""
        self._flight.forget(key)
        self._passes.pop(key, None)
        try:
            await self.storage.delete(key)
        except Exception as exc:
            self._storage_failed("delete", exc)

    def _passing(self, key: str) -> bool:
        until = self._passes.get(key)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._passes[key]
        return False

    def _remember_pass(self, key: str) -> None:
        """Varnish's hit-for-miss: for pass_ttl, this key goes straight through, unserialized."""
        passes = self._passes
        passes.pop(key, None)
        passes[key] = self._clock() + self.pass_ttl
        while len(passes) > _MAX_PASSES:  # bounded: the oldest go first
            del passes[next(iter(passes))]

    async def _alone(self, send: Send, status: Literal["miss", "bypass"]) -> Answer:
        """One request for this caller only, outside any flight; never stored.

        A bypass, or a follower's own request (it stopped waiting, or the flight's outcome was not
        for it), which is a miss.
        """
        counts = self._counts
        counts[2 if status == "miss" else 5] += 1
        counts[7] += 1
        try:
            fetched = await send()
        except BaseException:
            counts[6] += 1
            raise
        return Answer(fetched.snapshot, status, fetched.original)

    async def _lead(self, key: str, send: Send, call_ttl: float | None) -> _Led:
        """The work of a flight: one real request, then what the policy lets us keep of it."""
        self._counts[7] += 1
        fetched = await send()
        full = fetched.snapshot
        if not fetched.shareable:
            if self.pass_ttl > 0:
                self._remember_pass(key)
            return _Led(fetched, None)
        if full is None:
            return _Led(fetched, None)
        policy = self.policy
        headers = policy.storable_headers(full.headers)
        ttl = policy.ttl_for(
            full.status,
            full.headers,
            session_ttl=self.ttl,
            call_ttl=call_ttl,
            shared_cache=self.shared_cache,
        )
        history = tuple(
            replace(h, headers=policy.storable_headers(h.headers)) for h in full.history
        )
        if ttl <= 0:
            return _Led(fetched, replace(full, headers=headers, history=history))
        now = self._clock()
        shared = replace(
            full, headers=headers, history=history, stored_at=now, expires_at=now + ttl
        )
        veto = policy.should_store
        if veto is not None and not veto(
            full if self._as_response is None else self._as_response(full)
        ):
            return _Led(fetched, shared)
        # Write, but do not let a slow storage (a disk locked by another process) hold the answer
        # back from everybody waiting on this flight: past _STORE_WAIT the write finishes in the
        # background, and lookups meanwhile find the snapshot in _writing (no second flight).
        self._writing[key] = shared
        task = asyncio.ensure_future(self._store(key, shared, ttl))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.wait((task,), timeout=_STORE_WAIT)
        return _Led(fetched, shared)

    async def _store(self, key: str, shared: Snapshot, ttl: float) -> None:
        try:
            await self.storage.set(key, shared, ttl)
        except Exception as exc:
            self._storage_failed("set", exc)
        else:
            self._counts[4] += 1
        finally:
            if self._writing.get(key) is shared:  # a newer write of the key may have replaced it
                del self._writing[key]

    def _storage_failed(self, op: str, exc: Exception) -> None:
        kind = (op, type(exc))
        if kind in self._logged:
            log.debug("storage %s failed again: %r", op, exc)
            return
        self._logged.add(kind)
        log.warning(
            "storage %s failed (%s: %s); going on without storage for this call. "
            "Later failures of this kind are logged at DEBUG.",
            op,
            type(exc).__name__,
            exc,
        )


def valid_seconds(value: object) -> bool:
    """A finite, non-negative number of seconds (bool is not a number here)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
