"""The pipeline both faces share: lookup -> single-flight -> filter -> store, with statistics.

Rules of this module:

* It knows no HTTP framework and holds none of a face's objects. A face hands it a request key and a
  ``send`` closure that performs the real request and returns a ``Fetched``: the complete response
  as a ``Snapshot`` (body read), or None when it cannot be replayed from bytes (a streamed
  response). Whatever the face needs of its own objects (the handler's response, an exception it
  must not share) stays in that closure.
* What may reach another caller is decided here, once for both faces: a response over
  ``max_body_size`` never does, and in a shared cache nor does a private one (``Set-Cookie``,
  ``Cache-Control: private`` or ``no-store``). An exception raised by ``send`` reaches every caller
  of that flight (the flight's own rule) and nothing of it is stored.
* Every call counts once in ``requests`` when it begins, and once in exactly one outcome when it
  ends: the counter named by the ``cache_status`` its caller sees (``_count`` is the one place),
  cancelled callers included. So ``requests`` minus the outcomes is the calls in progress, and
  nothing once all are done. ``errors`` counts calls that raised, ``upstream`` real requests sent,
  ``stored`` successful storage writes.
* Storage is an optimisation, never a point of failure (``writer.py``: reads, writes in the
  background, Vary pointers, failures logged once).
* Vary (``vary.py``): a response that varies is stored under its variant key, with a pointer under
  the request's key; a lookup that finds a pointer reads the variant of its own request's values,
  and its flight runs on that variant's key. A follower of a flight whose response varies takes it
  only if its own values of the named headers equal the leader's; the others look up again and
  coalesce among themselves on their own variant. ``Vary: *`` is never stored nor shared.
* Invalidation (RFC 9111 §4.4, ``url_index.py``): a face hands over the URL key of a resource;
  every entry stored for it is dropped (every method, credential partition and variant), through
  the URL index the writer keeps in storage. ``fetch`` takes the URL key of its request so that a
  stored response is indexed; a hit never reads or writes the index. The faces decide when
  (``url_index.invalidates``): they hold the method, the status and the headers.
* Only a leader stores, and only what the policy allows; a follower that stopped waiting
  (``wait_timeout``) or could not share makes its own request, which is never stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal, get_args

from ..options import check_callable, check_seconds, check_seconds_or_none
from ..spec.freshness import Lifetime
from ..spec.requests import Wanted
from ..spec.revalidation import conditional_headers, selects, updated_headers
from ..spec.snapshot import Snapshot
from ..spec.vary import ANY, Header, values_of, vary_names
from ..storage.base import Clock, Storage
from ..storage.memory import MemoryStorage
from ..storage.records import VaryPointer
from .fleet import Fleet, leases_of
from .flight import SingleFlight, WaitTimeout
from .keys import variant_key
from .policy import CachePolicy
from .records import Answer, CacheStatus, Call, Fetched, Send, Stats, no_headers
from .writer import Writer

__all__ = ["Answer", "CacheStatus", "Call", "Coalescer", "Fetched", "Send", "Stats", "Wanted"]

log = logging.getLogger("coalesce_client")

_MAX_PASSES = 10_000  # keys remembered as pass-through at most (bounded everything)
MAX_REFRESHES = 256  # background refreshes (stale-while-revalidate) running at once, at most
# Answers of the origin that stale-if-error covers (RFC 5861 §4), besides a failed request.
ERROR_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class _Result:
    """The value of one flight: the leader's own response, and what its followers may have."""

    own: Snapshot | None  # as received: the leader's (Set-Cookie and all)
    shared: Snapshot | None  # stripped for replay; None: not for the followers, who send their own
    # When the response varies: the names, and the leader's values of them. A follower takes
    # ``shared`` only if its own values are the same.
    vary: tuple[tuple[str, ...], tuple[str | None, ...]] | None = None
    # How the flight answered when not with a new response: "revalidated" (the stored one,
    # confirmed by a 304) or "stale" (the stored one, the origin having failed: stale-if-error).
    served: Literal["stale", "revalidated"] | None = None
    remote: bool = False  # read from storage after another process's flight (fleet.py)


class Coalescer:
    """One keyed single-flight in front of one storage, and the policy that filters between."""

    __slots__ = (
        "_clock",
        "_fleet",
        "_flight",
        "_outcomes",
        "_passes",
        "_refreshes",
        "_writer",
        "errors",
        "pass_ttl",
        "policy",
        "requests",
        "shared_cache",
        "storage",
        "ttl",
        "upstream",
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
    ) -> None:
        # The options both faces share are checked here, once, with the user's option names.
        self.ttl = check_seconds(ttl, "ttl")  # default seconds a stored response stays fresh
        # How long a follower waits for the leader before sending its own request.
        self.wait_timeout = check_seconds_or_none(wait_timeout, "wait_timeout", positive=True)
        self._clock: Clock = check_callable(clock, "clock")
        if policy is None:
            policy = CachePolicy()
        elif not isinstance(policy, CachePolicy):
            raise ValueError(f"policy must be a CachePolicy, got {policy!r}")
        if storage is None:
            storage = MemoryStorage(clock=clock)
        elif not isinstance(storage, Storage):
            raise ValueError(f"storage must implement the Storage protocol, got {storage!r}")
        self.storage = storage
        self._writer = Writer(storage, clock, policy.max_variants)
        self.policy = policy
        self.shared_cache = shared_cache  # True in the server middleware (RFC 9111 shared cache)
        # Seconds a key whose outcome could not be shared goes straight through: a shared cache's
        # defence against serializing private routes (0 in a private cache: never).
        self.pass_ttl = policy.pass_ttl if shared_cache else 0.0
        self._passes: dict[str, float] = {}  # key -> until (clock); insertion order = age
        self._flight: SingleFlight[str, _Result] = SingleFlight()
        # Background refreshes (stale-while-revalidate) by flight key: bounded, drained by drain().
        self._refreshes: dict[str, asyncio.Task[None]] = {}
        # Issue 14: a storage shared by processes (SharesFlights) extends each flight to them.
        leases = leases_of(storage)
        self._fleet: Fleet[_Result] | None = (
            None if leases is None else Fleet(leases, self.wait_timeout)
        )
        self.requests = 0  # calls begun (fetch and peek's hits)
        # Calls by outcome, written only by _count() (and peek's inlined copy of it).
        self._outcomes: dict[CacheStatus, int] = dict.fromkeys(get_args(CacheStatus), 0)
        self.errors = 0  # calls that raised (written by the faces' calls, through count_error)
        self.upstream = 0  # real requests sent: one per flight, one per call alone

    @property
    def stats(self) -> Stats:
        o = self._outcomes
        return Stats(
            requests=self.requests,
            hits=o["hit"],
            misses=o["miss"],
            coalesced=o["coalesced"],
            stale=o["stale"],
            revalidated=o["revalidated"],
            stored=self._writer.stored,
            bypassed=o["bypass"],
            errors=self.errors,
            upstream=self.upstream,
        )

    @property
    def clock(self) -> Clock:
        """The wall clock this pipeline was given; the faces time their real requests with it."""
        return self._clock

    @property
    def flight(self) -> SingleFlight[str, _Result]:
        return self._flight

    def count_error(self) -> None:
        """A call raised after its answer was counted (a face raising its own saved exception)."""
        self.errors += 1

    def _count(self, status: CacheStatus) -> None:
        self._outcomes[status] += 1

    async def lookup(self, key: str) -> Snapshot | VaryPointer | None:
        """A fresh stored response (or Vary pointer) for ``key``, or None; a broken storage is a
        miss."""
        snap = await self._writer.read(key)
        if snap is not None and snap.expires_at <= self._clock():
            return None
        return snap

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
        self.requests += 1
        self._outcomes["hit"] += 1  # _count("hit"), inlined: this is the whole cost of a hit
        return snap

    async def fresh(
        self, key: str, header: Header = no_headers, wanted: Wanted | None = None
    ) -> Snapshot | None:
        """``peek``, reading the storage when it has nothing at hand: a fresh stored response
        for ``key`` (through its Vary pointer), counted as a hit; else None, not counted. For a
        face that answers a request from storage only (a conditional request)."""
        snap = self.peek(key, header, wanted)
        if snap is not None:
            return snap
        _, snap = await self._resolve(key, header)
        now = self._clock()
        if snap is None or snap.expires_at <= now:
            return None
        if wanted is not None and not wanted.accepts(snap, now):
            return None
        self.requests += 1
        self._count("hit")
        return snap

    async def drain(self) -> None:
        """Wait for the background refreshes and storage writes still running (before closing
        storage)."""
        while self._refreshes:
            await asyncio.gather(*self._refreshes.values(), return_exceptions=True)
        await self._writer.drain()
        if self._fleet is not None:
            await self._fleet.drain()

    async def fetch(self, call: Call, send: Send) -> Answer:
        """The response for one call (``Call``): from storage, from a flight in progress, or
        sent now."""
        return await self._fetch(call, send, ())

    async def _fetch(self, call: Call, send: Send, _names: tuple[str, ...]) -> Answer:
        """``_names``: the headers a response for the call's key was just seen to vary on (the
        second round of a caller whose flight answered another variant), so that its flight is
        its own variant's."""
        key, header, ttl, refresh = call.key, call.header, call.ttl, call.refresh
        url, url_key, wanted = call.url, call.url_key, call.wanted
        if not _names:  # one call, counted once (a second round is the same call)
            self.requests += 1
            if key is None or (self._passes and self._passing(key)):
                return await self._alone(send, "bypass")
        assert key is not None
        names = _names
        flight = self._flight
        # The flight's key: the request's, or its variant's once a pointer (or names) says so.
        fkey = variant_key(key, names, values_of(names, header)) if names else key
        # A caller that finds a flight in progress joins it without reading storage: whatever is
        # stored is being replaced, and in a burst this saves a storage read per follower. A
        # background refresh is no such flight: its callers are served what is stored.
        joining = fkey in flight and fkey not in self._refreshes
        prior = None  # what is stored, for the flight to revalidate (or serve if the origin fails)
        if not joining:
            try:
                if names:
                    snap = await self._stored(fkey)
                else:
                    fkey, snap = await self._resolve(key, header)
            except BaseException:  # cancelled while the storage read was pending
                self._count("miss")
                self.errors += 1
                raise
            if snap is not None and not refresh:  # refresh: to the origin, conditionally if it can
                now = self._clock()
                if snap.expires_at > now:
                    if wanted is None or wanted.accepts(snap, now):
                        self._count("hit")
                        return Answer(snap, "hit")
                elif self._stale_now(snap, now, wanted):
                    self._count("stale")
                    if wanted is None or wanted.max_stale is None:  # stale-while-revalidate
                        if self._fleet is None:
                            lead = partial(
                                self._lead, key, send, ttl, header, url, url_key, snap, True
                            )
                        else:  # issue 14: one background refresh for the fleet
                            lead = partial(
                                self._lead_in_fleet,
                                fkey, key, send, ttl, header, url, url_key, names,
                                True, None, snap, True,
                            )  # fmt: skip
                        self._refresh(fkey, lead)
                    return Answer(snap, "stale")
            prior = snap  # not answered from storage: the flight revalidates it if it can
            joining = fkey in flight  # a slow storage read may have let a flight start
        if wanted is not None and wanted.only_if_cached:
            self._count("miss")  # nothing usable stored, and the origin is not to be asked
            return Answer(None, "miss")
        try:
            outcome = await flight.run(
                fkey,
                lambda: (
                    self._lead(key, send, ttl, header, url, url_key, prior)
                    if self._fleet is None
                    else self._lead_in_fleet(
                        fkey, key, send, ttl, header, url, url_key, names, refresh, wanted, prior
                    )
                ),
                timeout=self.wait_timeout if joining else None,
            )
        except WaitTimeout:
            # Waited longer than wait_timeout: send our own request, which is not stored
            # (nginx proxy_cache_lock_timeout).
            return await self._alone(send, "miss")
        except BaseException:
            self._count("coalesced" if joining else "miss")  # as the caller would have been
            self.errors += 1
            raise
        result = outcome.value
        if not outcome.joined:
            # Issue 14: answered by another process's flight (fleet.py), it is "coalesced".
            status: CacheStatus = "coalesced" if result.remote else (result.served or "miss")
            self._count(status)
            return Answer(result.own, status)
        if result.shared is None:
            return await self._alone(send, "miss")
        if result.served == "stale":
            self._count("stale")
            return Answer(result.shared, "stale")
        if result.vary is not None and values_of(result.vary[0], header) != result.vary[1]:
            # Another variant than ours: coalesce with the callers of our own variant (once).
            if names:
                return await self._alone(send, "miss")
            return await self._fetch(call, send, result.vary[0])
        self._count("coalesced")
        return Answer(result.shared, "coalesced")

    def _stale_now(self, snap: Snapshot, now: float, wanted: Wanted | None) -> bool:
        """Whether a stale stored response is answered at once: the caller's ``max-stale``
        accepts it, or it is within its stale-while-revalidate window (RFC 5861 §3)."""
        shared = self.shared_cache
        if wanted is not None:
            if wanted.only_if_cached or wanted.max_stale is not None:
                return wanted.accepts_stale(snap, now) and self.policy.may_serve_stale(
                    snap.headers, shared_cache=shared
                )
            return False  # the caller's own max-age or min-fresh: to the origin
        swr = self.policy.stale_windows(snap.headers, shared_cache=shared).while_revalidate
        return swr > 0 and now - snap.expires_at <= swr

    def _refresh(self, fkey: str, lead: Callable[[], Awaitable[_Result]]) -> None:
        """Refresh ``fkey`` in the background, as a flight later callers join, unless one runs
        already or too many do (module rules); its failure is logged, never raised."""
        if fkey in self._flight or len(self._refreshes) >= MAX_REFRESHES:
            return
        flight = self._flight

        async def refresh() -> None:
            try:
                await flight.run(fkey, lead)
            except Exception as exc:
                log.warning(
                    "background refresh failed (stale-while-revalidate): %s: %s",
                    type(exc).__name__,
                    exc,
                )
            finally:
                if self._refreshes.get(fkey) is task:
                    del self._refreshes[fkey]

        task = asyncio.ensure_future(refresh())
        self._refreshes[fkey] = task

    async def _stored(self, key: str) -> Snapshot | None:
        """The response stored for ``key``, fresh or not; a broken storage is a miss."""
        found = await self._writer.read(key)
        return found if isinstance(found, Snapshot) else None

    async def _resolve(self, key: str, header: Header) -> tuple[str, Snapshot | None]:
        """The flight key of this request and its stored response, through a Vary pointer (only
        while it lasts)."""
        snap = await self._writer.read(key)
        if snap is None or isinstance(snap, Snapshot):
            return key, snap
        if snap.expires_at <= self._clock():
            return key, None
        names = snap.names
        vkey = variant_key(key, names, values_of(names, header))
        if vkey in self._flight and vkey not in self._refreshes:
            return vkey, None
        return vkey, await self._stored(vkey)

    async def invalidate(self, key: str) -> None:
        """Drop what is stored for ``key``, every Vary variant included; a flight in progress
        takes no new callers."""
        self._flight.forget(key)
        self._passes.pop(key, None)
        for vkey in await self._writer.delete(key):
            self._flight.forget(vkey)

    async def invalidate_url(self, url_key: str) -> None:
        """Drop every stored response of the URL whose URL key this is (module rules); the
        flights of the keys dropped take no new callers."""
        for key in await self._writer.delete_url(url_key):
            self._flight.forget(key)
            self._passes.pop(key, None)

    async def clear(self) -> None:
        """Remove every stored response."""
        await self.storage.clear()
        self._writer.forget_indexes()

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
        self._count(status)
        self.upstream += 1
        try:
            fetched = await send()
        except BaseException:
            self.errors += 1
            raise
        return Answer(fetched.snapshot, status)

    def _shareable(self, snap: Snapshot) -> bool:
        """May another caller have this response? (the module rules)"""
        policy = self.policy
        if len(snap.body) > policy.max_body_size:
            return False
        return not (self.shared_cache and policy.is_private(snap.headers, snap.status))

    async def _lead(
        self,
        key: str,
        send: Send,
        call_ttl: float | None,
        header: Header,
        url: str | None,
        url_key: str | None,
        prior: Snapshot | None = None,
        detached: bool = False,
    ) -> _Result:
        """The work of a flight: one real request, then what the policy lets us keep of it.

        With ``prior`` (what is stored for the key, stale or refused by the caller), the request
        is conditional when it has a validator, and a 304 that selects it renews it
        (``revalidation.py``); a failure, or a 500, 502, 503 or 504, answers it instead while
        within its stale-if-error window (RFC 5861 §4). ``detached``: a background refresh
        (``Send``).
        """
        self.upstream += 1
        conditional = () if prior is None else conditional_headers(prior)
        try:
            fetched = await (send(conditional, detached) if conditional or detached else send())
            own = fetched.snapshot
            if prior is not None and conditional and own is not None and own.status == 304:
                if selects(prior, own):
                    return await self._renew(key, prior, fetched, call_ttl, header, url, url_key)
                # A 304 about another representation than ours: ask for the whole response.
                self.upstream += 1
                fetched = await (send((), detached) if detached else send())
                own = fetched.snapshot
        except Exception as exc:
            stale = self._if_error(prior, getattr(exc, "status", None))
            if stale is None:
                raise
            assert prior is not None  # _if_error answers only with it
            log.warning(
                "%s failed (%s: %s); serving the stored response, stale (stale-if-error)",
                prior.url,
                type(exc).__name__,
                exc,
            )
            return stale
        if own is not None and own.status in ERROR_STATUSES:
            stale = self._if_error(prior, own.status)
            if stale is not None:
                return stale
        names = () if own is None else vary_names(own.headers)
        if own is None or names == ANY or not self._shareable(own):
            if self.pass_ttl > 0:
                self._remember_pass(key)
            return _Result(own, None)
        vary = None
        if names:
            vary = (names, values_of(names, header))
        policy = self.policy
        headers = policy.storable_headers(own.headers)
        history = tuple(replace(h, headers=policy.storable_headers(h.headers)) for h in own.history)
        shared = replace(own, headers=headers, history=history)
        fresh, kept = (0.0, 0.0)
        if fetched.storable:
            fresh, kept = self._lifetime(shared, call_ttl, url)
        if fresh + kept <= 0:
            return _Result(own, shared, vary)
        shared = await self._store(key, shared, fresh, kept, vary, url_key)
        # The leader's own response says when its stored copy expires (CachedResponse.expires).
        return _Result(
            replace(own, stored_at=shared.stored_at, expires_at=shared.expires_at), shared, vary
        )

    def _lifetime(self, snap: Snapshot, call_ttl: float | None, url: str | None) -> Lifetime:
        """The policy's ``(fresh, kept)`` seconds for a response (``CachePolicy.lifetime``)."""
        return self.policy.lifetime(
            snap.status,
            snap.headers,
            session_ttl=self.ttl,
            call_ttl=call_ttl,
            shared_cache=self.shared_cache,
            url=url,
            # The face's times around the real request (its clock): the age on arrival.
            request_time=snap.request_time or None,
            response_time=snap.response_time or None,
        )

    async def _store(
        self,
        key: str,
        shared: Snapshot,
        fresh: float,
        kept: float,
        vary: tuple[tuple[str, ...], tuple[str | None, ...]] | None,
        url_key: str | None,
    ) -> Snapshot:
        """Store ``shared``, fresh for ``fresh`` seconds and kept ``kept`` more; return it as
        stored."""
        now = self._clock()
        shared = replace(shared, stored_at=now, expires_at=now + fresh)
        vkey = None if vary is None else variant_key(key, *vary)
        await self._writer.write(key, vkey, shared, fresh + kept, url_key)  # waits briefly
        return shared

    async def _renew(
        self,
        key: str,
        prior: Snapshot,
        fetched: Fetched,
        call_ttl: float | None,
        header: Header,
        url: str | None,
        url_key: str | None,
    ) -> _Result:
        """A 304 selected ``prior``: its headers updated, its freshness renewed (RFC 9111
        §4.3.4), stored again; every caller of the flight gets it."""
        not_modified = fetched.snapshot
        assert not_modified is not None
        policy = self.policy
        renewed = replace(
            prior,
            headers=updated_headers(prior.headers, policy.storable_headers(not_modified.headers)),
            request_time=not_modified.request_time,
            response_time=not_modified.response_time,
            stored_at=0.0,
            expires_at=0.0,
        )
        names = vary_names(renewed.headers)
        if names == ANY or not self._shareable(renewed):
            return _Result(renewed, None)
        vary = (names, values_of(names, header)) if names else None
        fresh, kept = self._lifetime(renewed, call_ttl, url) if fetched.storable else (0.0, 0.0)
        if fresh + kept > 0:
            renewed = await self._store(key, renewed, fresh, kept, vary, url_key)
        return _Result(renewed, renewed, vary, "revalidated")

    def _if_error(self, prior: Snapshot | None, status: object) -> _Result | None:
        """The flight's answer when the origin failed (an exception, or ``status``): ``prior``,
        while within its stale-if-error window; else None (the failure stands)."""
        if prior is None:
            return None
        if status is not None and status not in ERROR_STATUSES:
            return None  # an exception that is an answer of the origin's, not a failure
        sie = self.policy.stale_windows(prior.headers, shared_cache=self.shared_cache).if_error
        if sie <= 0 or self._clock() - prior.expires_at > sie:
            return None
        return _Result(prior, prior, None, "stale")

    # -- issue 14: the fleet's flight (fleet.py); nothing above depends on it but one hook in fetch

    async def _lead_in_fleet(
        self,
        fkey: str,
        key: str,
        send: Send,
        call_ttl: float | None,
        header: Header,
        url: str | None,
        url_key: str | None,
        names: tuple[str, ...],
        refresh: bool,
        wanted: Wanted | None,
        prior: Snapshot | None,
        detached: bool = False,
    ) -> _Result:
        """``_lead`` for a storage shared by processes: the fleet decides whether this process
        sends (holding the key's lease), waits for another's stored response, or sends alone.
        What it reads from storage must suit this call as a lookup would: fresh, accepted by
        its request directives and, with ``refresh``, stored since the flight began. ``prior``
        and ``detached`` are ``_lead``'s (what the holder revalidates; a background refresh,
        which therefore runs once for the fleet)."""
        assert self._fleet is not None
        begun = self._clock()

        async def lead(store: bool) -> tuple[_Result, bool]:
            """The flight's result, and whether it was stored (a fresh entry) by it."""
            if store:
                result = await self._lead(
                    key, send, call_ttl, header, url, url_key, prior, detached
                )
                shared = result.shared
                return result, shared is not None and shared.stored_at >= begun
            self.upstream += 1  # waited past wait_timeout: our own request, never stored
            fetched = await (send((), True) if detached else send())
            return _Result(fetched.snapshot, None), False

        async def read() -> _Result | None:
            snap = await self._stored(fkey) if names else (await self._resolve(key, header))[1]
            now = self._clock()
            if snap is None or snap.expires_at <= now or (refresh and snap.stored_at < begun):
                return None  # (a stale entry is what the holder is replacing)
            if wanted is not None and not wanted.accepts(snap, now):
                return None
            vary = vary_names(snap.headers)
            vary_part = (vary, values_of(vary, header)) if vary else None
            return _Result(snap, snap, vary_part, remote=True)

        result, _ = await self._fleet.run(fkey, lead, read, self._writer.settle)
        return result
