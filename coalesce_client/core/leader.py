"""The leader of a flight: one real request, then what the policy lets the flight keep of it.

Rules of this module:

* Only a leader stores, and only what the decisions allow (``spec/decisions/storing.py``): a
  response reaches the flight's followers only if ``sharing`` says so, and is stored only if
  ``storing`` gives it a lifetime; a response for its caller alone makes its key pass-through in
  a shared cache (``passes.py``). An exception raised by ``send`` reaches every caller of the
  flight (the flight's own rule) and nothing of it is stored.
* With a prior (what is stored for the flight's key, stale or refused by its caller), the request
  is conditional when the prior has a validator; a 304 that selects it renews it (RFC 9111
  §4.3.4: its headers updated, its freshness renewed, stored again) and every caller of the
  flight gets it; a 304 about another representation is followed by a plain request. A failure
  (an exception, a 500, 502, 503 or 504) is answered by the prior while within its
  stale-if-error window (``spec/decisions/failure.py``).
* The policy's lifetime of a response is computed in one place, ``_lifetime``; its stale windows
  in ``_windows``. A stored response's ``stored_at`` and ``expires_at`` are written here, on the
  coalescer's clock, and the leader's own response carries them (``CachedResponse.expires``).
* The storage write goes on in the background; the flight waits for it only past the writer's
  bound of memory (``writer.py``).
* A body over ``max_body_size`` is shared as it streams (``Snapshot.stream``, issue 24: the
  face's ``core/spool.py``): its followers get it as any shared response. It is handed to the
  writer only when the storage takes streams (``Writer.stream_limit`` over 0) and its length,
  when known, is within that limit and ``max_stored_size`` (``storing``'s ``Room``); a stream
  of unknown length is stopped at the limit by the storage as it arrives. One not handed to
  the writer is kept for the flight's late callers while it arrives (``streaming.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from ..spec.decisions import assert_never
from ..spec.decisions.failure import ERROR_STATUSES, FailureStands, StaleIfError, on_failure
from ..spec.decisions.followers import Variant, variant_of
from ..spec.decisions.reasons import ShareOnlyReason
from ..spec.decisions.storing import (
    Neither,
    Room,
    Shareable,
    ShareOnly,
    ShareTerms,
    Sharing,
    StoreAndShare,
    sharing,
    storing,
)
from ..spec.freshness import Lifetime, ResponseFacts, StaleWindows
from ..spec.lifetime import NOT_STORED, NotStored
from ..spec.revalidation import conditional_headers, selects, updated_headers
from ..spec.snapshot import Headers, Snapshot
from ..spec.vary import vary_names
from .counters import Counters
from .keys import variant_key
from .passes import Passes
from .records import Call, Fetched, Flight, FlightResult, Setup
from .slots import FactsShell, SnapshotShell
from .streaming import Streaming
from .writer import Writer

__all__ = ["Leader"]

log = logging.getLogger("coalesce_client")


class Leader:
    """The work of a coalescer's flights (module rules)."""

    __slots__ = ("_counters", "_passes", "_room", "_setup", "_streaming", "_terms", "_writer")

    def __init__(
        self, setup: Setup, writer: Writer, counters: Counters, passes: Passes, streaming: Streaming
    ) -> None:
        self._setup = setup
        self._streaming = streaming
        self._writer = writer
        self._counters = counters
        self._passes = passes
        policy = setup.policy
        self._terms = ShareTerms(tuple(policy.targeted_cache_control))
        self._room = Room(policy.max_stored_size, writer.stream_limit)

    async def lead(self, flight: Flight) -> FlightResult:
        """The flight's result: one real request (two after a 304 that selects nothing), then
        what the decisions keep of it (module rules)."""
        self._counters.upstream += 1
        prior, send, detached = flight.prior, flight.send, flight.detached
        conditional = () if prior is None else conditional_headers(prior)
        try:
            fetched = await (send(conditional, detached) if conditional or detached else send())
            own = fetched.snapshot
            if prior is not None and conditional and own is not None and own.status == 304:
                if selects(prior, own):
                    return await self._renew(flight, prior, fetched)
                # A 304 about another representation than ours: ask for the whole response.
                self._counters.upstream += 1
                fetched = await (send((), detached) if detached else send())
                own = fetched.snapshot
        except Exception as exc:
            stale = self._failed(prior, getattr(exc, "status", None))
            if stale is None:
                raise
            log.warning(
                "%s failed (%s: %s); serving the stored response, stale (stale-if-error)",
                stale.url,
                type(exc).__name__,
                exc,
            )
            return FlightResult(stale, stale, None, "stale")
        if own is not None and own.status in ERROR_STATUSES:
            stale = self._failed(prior, own.status)
            if stale is not None:
                return FlightResult(stale, stale, None, "stale")
        return await self._keep(flight, fetched)

    async def send_unstored(self, flight: Flight) -> FlightResult:
        """One real request for the flight, of which nothing is kept nor shared (the fleet's
        leader that waited past ``wait_timeout``)."""
        self._counters.upstream += 1
        send = flight.send
        fetched = await (send((), True) if flight.detached else send())
        return FlightResult(fetched.snapshot, None, reason="wait timeout")

    def _failed(self, prior: Snapshot | None, status: object) -> Snapshot | None:
        """What answers the flight, stale, when the origin failed (an exception, or ``status``):
        the prior, or None when the failure stands (``failure.py``)."""
        window = 0.0 if prior is None else self._windows(prior).if_error
        verdict = on_failure(prior, status, self._setup.clock(), window)
        match verdict:
            case StaleIfError(stored=stored):
                return stored
            case FailureStands():
                return None
            case _:
                assert_never(verdict)

    async def _keep(self, flight: Flight, fetched: Fetched) -> FlightResult:
        """What the flight keeps of a new response: shared or not, stored or not."""
        own = fetched.snapshot
        names = () if own is None else vary_names(own.headers)
        verdict = self._sharing(own, names)
        match verdict:
            case Neither(reason=reason):
                self._passes.remember(flight.key)  # a shared cache's hit-for-miss
                return FlightResult(own, None, reason=fetched.withheld if own is None else reason)
            case Shareable():
                assert own is not None  # sharing says Neither without a response
            case _:
                assert_never(verdict)
        shared = _storable(own, self._setup.policy.storable_headers)
        variant = variant_of(names, flight.call.header)
        stored = await self._kept(flight, shared, fetched.storable, variant)
        if isinstance(stored, str):
            result = FlightResult(own, shared, variant, reason=stored)
        else:
            # The leader's own response says when its stored copy expires (CachedResponse.expires):
            # the stored copy itself when nothing was dropped from it (issue 20: a copy fewer).
            own = stored if shared is own else _stamped(own, stored.stored_at, stored.expires_at)
            result = FlightResult(own, stored, variant, reason=self._writer.failure)
        if shared.stream is not None and not flight.detached and not self._handed(stored):
            # Its late callers join it while it streams (module rules, streaming.py).
            self._streaming.keep(flight.fkey, result, flight.call.url_key)
        return result

    def _handed(self, stored: Snapshot | ShareOnlyReason) -> bool:
        """Was this streamed response handed to the writer (``_kept``), whose pending map then
        answers the late callers? Only when stored, by a storage that writes (``writer.py``)."""
        return not isinstance(stored, str) and self._writer.stores

    async def _renew(self, flight: Flight, prior: Snapshot, fetched: Fetched) -> FlightResult:
        """A 304 selected ``prior``: its headers updated, its freshness renewed (RFC 9111
        §4.3.4), stored again; every caller of the flight gets it."""
        not_modified = fetched.snapshot
        assert not_modified is not None
        policy = self._setup.policy
        renewed = replace(
            prior,
            headers=updated_headers(prior.headers, policy.storable_headers(not_modified.headers)),
            request_time=not_modified.request_time,
            response_time=not_modified.response_time,
            stored_at=0.0,
            expires_at=0.0,
        )
        names = vary_names(renewed.headers)
        verdict = self._sharing(renewed, names)
        match verdict:
            case Neither(reason=reason):
                return FlightResult(renewed, None, reason=reason)
            case Shareable():
                pass
            case _:
                assert_never(verdict)
        variant = variant_of(names, flight.call.header)
        stored = await self._kept(flight, renewed, fetched.storable, variant)
        if isinstance(stored, str):
            return FlightResult(renewed, renewed, variant, "revalidated", reason=stored)
        return FlightResult(stored, stored, variant, "revalidated", reason=self._writer.failure)

    def _sharing(self, response: Snapshot | None, names: tuple[str, ...]) -> Sharing:
        setup = self._setup
        policy = setup.policy
        private = (
            response is not None
            and setup.shared_cache
            and policy.is_private(response.headers, response.status)
        )
        return sharing(response, names, private, self._terms)

    async def _kept(
        self, flight: Flight, shared: Snapshot, storable: bool, variant: Variant | None
    ) -> Snapshot | ShareOnlyReason:
        """Store ``shared`` if ``storing`` gives it a lifetime; it as stored, else the reason."""
        lifetime = self._lifetime(shared, flight.call) if storable else NOT_STORED
        decision = storing(storable, lifetime, shared, self._room)
        match decision:
            case ShareOnly(reason=reason):
                return reason
            case StoreAndShare(lifetime=kept):
                now = self._setup.clock()
                stored = _stamped(shared, now, now + kept.fresh)
                key = flight.key
                vkey = None if variant is None else variant_key(key, *variant)
                ttl = kept.fresh + kept.kept
                writer, url_key = self._writer, flight.call.url_key
                if not writer.write_nowait(key, vkey, stored, ttl, url_key):
                    await writer.write(key, vkey, stored, ttl, url_key)
                return stored
            case _:
                assert_never(decision)

    def _lifetime(self, snap: Snapshot, call: Call) -> Lifetime | NotStored:
        """The policy's lifetime of a response (``CachePolicy.lifetime_of``): the one place."""
        setup = self._setup
        # The face's times around the real request (its clock): the age on arrival. A response
        # without them (a face's test double) is taken as received now.
        received = snap.response_time or setup.clock()
        facts = FactsShell()  # ResponseFacts(...), faster (slots.py)
        facts.status, facts.headers, facts.url = snap.status, snap.headers, call.url
        facts.request_time, facts.response_time = snap.request_time or received, received
        facts.session_ttl, facts.shared_cache = setup.ttl, setup.shared_cache
        facts.call_ttl = call.ttl
        facts.__class__ = ResponseFacts
        return setup.policy.lifetime_of(facts)

    def _windows(self, snap: Snapshot) -> StaleWindows:
        setup = self._setup
        return setup.policy.stale_windows(snap.headers, shared_cache=setup.shared_cache)


def _storable(own: Snapshot, storable_headers: Callable[[Headers], Headers]) -> Snapshot:
    """``own`` as it may be stored and shared: without the headers the policy drops, in it and
    in its redirects; ``own`` itself when that drops nothing (a filter only drops, so the same
    length is the same headers), which is the common case: no copy."""
    headers = storable_headers(own.headers)
    if len(headers) == len(own.headers) and not own.history:
        return own
    history = tuple(replace(h, headers=storable_headers(h.headers)) for h in own.history)
    return replace(own, headers=headers, history=history)


def _stamped(snap: Snapshot, stored_at: float, expires_at: float) -> Snapshot:
    """``replace(snap, stored_at=stored_at, expires_at=expires_at)``, faster (``slots.py``): its
    memos (``_initial_age``, ``replay_form``) start afresh, as ``replace()`` starts them."""
    new = SnapshotShell()
    new.status, new.reason, new.headers, new.url = snap.status, snap.reason, snap.headers, snap.url
    new.method, new.body, new.history = snap.method, snap.body, snap.history
    new.stream = snap.stream
    new.request_time, new.response_time = snap.request_time, snap.response_time
    new.stored_at, new.expires_at = stored_at, expires_at
    new._initial_age = new.replay_form = None  # the memos, afresh
    new.__class__ = Snapshot
    return new  # type: ignore[no-any-return]
