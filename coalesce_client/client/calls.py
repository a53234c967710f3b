"""The path of one ``CoalescingSession`` call: a hit, a conditional answer, a flight, or a pass.

Rules of this module (docs/architecture.md, the client face; ``call.py`` says what a call is,
``send.py`` how its real request is sent):

* ``CallPath`` is the half of ``CoalescingSession`` that answers calls; the session is one (a
  base class, so that a hit pays for no call nor lookup more: it is measured in instructions).
  The state it reads is declared in its slots; the session's constructor sets it.
* aiohttp is given the URL the call's checks built, not the caller's string to parse again;
  not with ``params=`` (merged into it already) nor with a base URL (aiohttp 3.10 asserts that a
  URL it is given is relative then).
* Every call that may be answered by another's request or from storage is checked as aiohttp
  would check it, hits included (``checks.check_call``); a call that takes no part
  (``cache=False``, a method the policy does not cache) is aiohttp's own request, checked by
  aiohttp, streamed; so is a bypass or a ``no-store`` request (RFC 9111 §5.2.1.5).
* A plain call's identity (no options but ``allow_redirects`` and the caller's own, no
  credentials of the session's own) is remembered by the method, the URL and the session's
  default headers: building it (and checking the URL and those headers) is most of what a hit
  costs. Only a call whose checks passed is remembered; the caller's own ``timeout`` is checked
  on every call. So is a plain call's flight request (``Sending``), when nothing of it is the
  call's own (no ``timeout``, ``raise_for_status``, ``cache_ttl`` or refresh): a burst's
  followers build none (issue 20); ``SharedRequest`` keeps nothing per call, so one serves all.
  Both are remembered from the second call of their request parts on (``keys.Sightings``): a
  URL called once (a scraper's) leaves nothing behind for the collector to walk.
* A caller's ``If-None-Match`` / ``If-Modified-Since`` is answered from a fresh stored response
  (RFC 9111 §4.3.2: a 304 when it is not modified for the caller, only for a 2xx, RFC 9110
  §13.2.1; else the stored response), a hit; nothing fresh stored: its own request. Never a
  flight: the origin's answer to a conditional request is the caller's alone. As the middleware.
  So is a GET or HEAD with ``Range`` or ``If-Range`` (``ranges.py``: a 206 from a complete
  stored 200).
* Each caller applies its own ``raise_for_status`` (the call's, else the session's) to its own
  response, hits included, and bounds its own wait with its ``timeout=``.
* Invalidation (RFC 9111 §4.4, ``spec/invalidation.py``): a non-error response to an unsafe
  request that reached the origin drops what is stored for its URL and its same-origin
  ``Location`` and ``Content-Location`` (resolved against the response's URL, after redirects).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any, NamedTuple

import aiohttp
from multidict import getversion
from yarl import URL

from ..core import calllog
from ..core.calllog import log_answer
from ..core.coalescer import Coalescer, Fronted
from ..core.keys import UNSEEN, KeyMaker, KeyMemo, Sightings
from ..core.policy import CachePolicy
from ..core.records import Answer, Call
from ..options import check_flag, check_seconds_or_none
from ..spec.conditional import answers_not_modified, not_modified_snapshot
from ..spec.decisions.reasons import CacheReason
from ..spec.invalidation import SAFE_METHODS, Origin, invalidates, invalidation_targets
from ..spec.requests import Wanted
from .call import CALLER_ALONE, Identity, identify, url_key
from .checks import UNSET, check_call, request_url, wait_bound
from .compat import base_url_of, counts_cookies, merge_params
from .context import CallContext
from .ranges import ranged_hit
from .response import CachedResponse
from .send import Outgoing, Passing, SharedRequest

__all__ = ["CallPath"]

_MEMO_KWARGS = frozenset({"allow_redirects"})  # options a remembered identity may include
_NO_STORE: CacheReason = "request no-store"


class Sending(NamedTuple):
    """A call's flight request as the session hands it to the core: its request, its record
    and its ``send`` (``SharedRequest``, which keeps nothing of a call's: one serves every
    plain call of an identity, module rules)."""

    out: Outgoing
    call: Call
    send: SharedRequest


_NO_OPTIONS: dict[str, Any] = {}  # a call with no options of its own (never written to)


class CallPath(Fronted):
    """How ``CoalescingSession`` answers one call (module rules)."""

    # The session's state, kept here since this half reads it; CoalescingSession.__init__ sets it.
    __slots__ = (
        "_authless",
        "_baseless",
        "_checks",
        "_closed",
        "_core",
        "_default_headers",
        "_jar",
        "_jar_counted",
        "_keys",
        "_memo",
        "_sent",
        "_session",
        "_session_kwargs",
        "_sightings",
        "policy",
    )

    policy: CachePolicy
    _checks: Any  # the session's raise_for_status, read once: a session cannot change it
    _closed: bool
    _core: Coalescer
    _keys: KeyMaker
    _memo: KeyMemo[Identity]  # request parts of plain calls -> their identity
    _sent: KeyMemo[Sending]  # request parts of plain calls -> their flight request (_bind)
    _sightings: Sightings  # the request parts of plain calls seen once (module rules)
    _session: aiohttp.ClientSession | None  # built on first use when we own it
    _session_kwargs: dict[str, Any]
    # What a plain call's identity depends on, read once from the session (``_bind``): a
    # ClientSession's auth, cookie jar and default headers are fixed objects (the jar's
    # cookies and the headers' contents change: read on every call).
    _authless: bool
    _baseless: bool  # the session has no base URL
    _jar: Any  # the session's cookie jar; _jar_counted: its _cookie_count is its len (compat)
    _jar_counted: bool
    _default_headers: Any  # the session's CIMultiDict, for getversion()

    def _bind(self, session: aiohttp.ClientSession) -> None:
        """Use ``session`` (the given one, or ours built on first use)."""
        self._session = session
        self._checks = session.raise_for_status
        self._authless = session.auth is None
        self._baseless = base_url_of(session) is None
        self._jar = session.cookie_jar
        self._jar_counted = counts_cookies(session.cookie_jar)
        self._default_headers = session.headers
        self._sent = KeyMemo()  # what it holds holds the session: one memo per session bound

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("CoalescingSession is closed")
        if self._session is None:
            # Built on first use, inside the running loop, as aiohttp wants.
            self._bind(aiohttp.ClientSession(**self._session_kwargs))
        assert self._session is not None
        return self._session

    async def _request(
        self, method: str, str_or_url: str | URL, kwargs: dict[str, Any], ctx: CallContext
    ) -> CachedResponse:
        cache, cache_ttl, refresh = True, None, False  # our own options' defaults
        if kwargs:  # our own options taken out; none given (a plain hit): nothing to take
            cache = kwargs.pop("cache", True)
            cache_ttl = check_seconds_or_none(kwargs.pop("cache_ttl", None), "cache_ttl")
            refresh = kwargs.pop("refresh", False)
            if cache is not True or refresh is not False:  # not both defaults (identity: cheapest)
                _check_flags(cache, refresh)
        session = self._session
        if session is None or self._closed:
            session = self._client()
        if not (cache and method in self.policy.methods):  # aiohttp's own request, and checks
            out = Outgoing(session, method, str_or_url, kwargs, _NO_OPTIONS, False)
            return ctx._keep(
                await self._pass(out, None, "method not cached" if cache else "cache=False")
            )
        own_options, checks = _NO_OPTIONS, self._checks  # none of its own: the session's checks
        if kwargs:  # the caller's alone (call.py): not part of the shared request
            own_options, checks = self._own_options(kwargs)
        # A plain call's identity, remembered (module rules); getversion(): the session headers'.
        parts: Hashable | None = None
        ident = None
        cookies = self._jar._cookie_count if self._jar_counted else len(self._jar)
        if (not kwargs or kwargs.keys() <= _MEMO_KWARGS) and self._authless and not cookies:
            follows = kwargs.get("allow_redirects", True) if kwargs else True
            parts = (method, str_or_url, follows, getversion(self._default_headers))
            ident = self._memo.get(parts)
        if ident is None:
            ident = self._identity(session, method, str_or_url, kwargs, own_options)
            if parts is not None:  # remembered from its second call on (module rules)
                parts, ident = self._remember(parts, ident)
        elif own_options:
            wait_bound(own_options.get("timeout", UNSET))  # checked on every call (module rules)
        key = ident.key
        wanted, no_store = None, False
        if ident.asked is not None:  # the caller's own Cache-Control (RFC 9111 §5.2.1)
            wanted, no_store = ident.asked.wanted, ident.asked.no_store
            refresh = refresh or ident.asked.refresh
        if ident.conditional is not None:  # the caller's own If-None-Match / If-Modified-Since
            out = Outgoing(session, method, str_or_url, kwargs, own_options, checks)
            return ctx._keep(await self._conditional(out, ident, wanted, refresh))
        if key is not None and not refresh:
            snap = self._core.peek(key, ident.header, wanted)
            if snap is not None:  # the hot path: a hit answered without awaiting anything
                hit = CachedResponse(snap, "hit", ident.url, None, self._core.peeked_at)
                if calllog.on is not False and calllog.debugging():
                    _log(hit, ident.url, key, hit._now)
                return hit if checks is False else await self._checked(hit, checks)
        plain = parts is not None and cache_ttl is None and not (own_options or refresh)
        sent = self._sent.get(parts) if plain else None
        if sent is None:  # a plain call's is built once (module rules)
            target = ident.url if self._baseless and "params" not in kwargs else str_or_url
            out = Outgoing(session, method, target, kwargs, own_options, checks)
            if key is None or no_store:  # a bypass; or §5.2.1.5: nothing of it is stored
                return ctx._keep(await self._pass(out, ident.url, ident.reason or _NO_STORE))
            call = ident.call(cache_ttl, refresh, wanted, self.policy.url_ttl)
            sent = self._sending(out, call, parts)
        return ctx._keep(await self._shared(sent, ident.url))

    def _remember(self, parts: Hashable, ident: Identity) -> tuple[Hashable | None, Identity]:
        """A plain call's identity, remembered by its request parts from their second call on
        (module rules), under the first call's key string; the parts (None the first time: its
        flight request is not remembered either, ``_sending``) and the identity to go on with."""
        first = self._sightings.sighted(parts, ident.key)
        if first is UNSEEN:
            return None, ident
        return parts, self._memo.remember(parts, ident.keyed(first))

    def _own_options(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """The caller's own options (``CALLER_ALONE``), taken out of ``kwargs``, and the checks
        its response gets: its own ``raise_for_status``, else (None too) the session's, as
        aiohttp. A method of its own: a comprehension in ``_request`` would make ``kwargs`` a
        cell, one object more per call, hits included."""
        own = {k: kwargs.pop(k) for k in CALLER_ALONE if k in kwargs}
        checks = own.get("raise_for_status")
        return own, self._checks if checks is None else checks

    def _sending(self, out: Outgoing, call: Call, parts: Hashable | None) -> Sending:
        """A call's flight request, remembered by its request parts when nothing of it is the
        call's own: no options of its own, no ``cache_ttl``, no refresh (module rules)."""
        sent = Sending(out, call, SharedRequest(out, self.policy, self._core.clock))
        if parts is not None and not out.own and call.ttl is None and not call.refresh:
            self._sent.remember(parts, sent)
        return sent

    async def _shared(self, sent: Sending, url: URL) -> CachedResponse:
        """A call that leads or joins a flight (or is answered from storage through one)."""
        out, call, send = sent
        core = self._core
        clock = core.clock  # a property: read once
        started = (
            clock() if calllog.on is not False and calllog.debugging() else 0.0
        )  # the DEBUG record's, or 0.0
        fetch = core.fetch(call, send)
        own = out.own  # the caller's own options, most often none
        total = wait_bound(own.get("timeout", UNSET)) if own else None
        try:
            answer = await (fetch if total is None else asyncio.wait_for(fetch, total))
        except BaseException:
            send.drop()  # gave up: a response kept for us, now or later, is closed
            raise
        if answer.status == "stale":
            send.drop()  # a background refresh may use it: what it keeps is nobody's
        resp = send.caller_response(answer, url, clock())
        if started:
            _log(resp, url, call.key, started)
        if out.method not in SAFE_METHODS:
            await self._invalidate_after(out.method, url, resp)
        return resp if out.checks is False else await self._checked(resp, out.checks)

    async def _conditional(
        self, out: Outgoing, ident: Identity, wanted: Wanted | None, refresh: bool
    ) -> CachedResponse:
        """A call with its own ``If-None-Match`` or ``If-Modified-Since`` (module rules), or with
        ``Range`` / ``If-Range`` (``ranges.py``)."""
        assert ident.key is not None and ident.conditional is not None
        core = self._core
        if ident.ranged is not None:
            hit = None if refresh else await ranged_hit(core, out.method, ident, wanted)
            if hit is None:
                return await self._pass(out, ident.url, "range request")
        else:
            snap = None if refresh else await core.fresh(ident.key, ident.header, wanted)
            if snap is None:
                return await self._pass(out, ident.url, "conditional request")
            if answers_not_modified(snap, ident.conditional):
                snap = not_modified_snapshot(snap)
            hit = CachedResponse(snap, "hit", request_url=ident.url, now=core.clock())
        if calllog.on is not False and calllog.debugging():
            _log(hit, ident.url, ident.key, hit._now)
        return hit if out.checks is False else await self._checked(hit, out.checks)

    def _identity(
        self,
        session: aiohttp.ClientSession,
        method: str,
        str_or_url: str | URL,
        kwargs: dict[str, Any],
        own: dict[str, Any],
    ) -> Identity:
        """The call's identity (``call.identify``) once aiohttp's checks passed
        (``checks.check_call``)."""
        checked = check_call(session, str_or_url, kwargs, own)
        return identify(session, self._keys, method, checked, kwargs)

    async def _pass(self, out: Outgoing, url: URL | None, reason: CacheReason) -> CachedResponse:
        """A call that takes no part (``reason``): aiohttp's own request with the call's own
        options, its body streamed from the connection as aiohttp streams it (nothing buffered
        by us)."""
        send = Passing(out, self._core.clock)
        answer = await self._core.fetch(Call(None, reason=reason), send)
        passed = send.live(answer.reason)
        if calllog.on is not False and calllog.debugging():
            _log(passed, url or out.url, None, send.times.request_time)
        if out.method not in SAFE_METHODS:
            target = url if url is not None else self._target(out.url, out.kwargs.get("params"))
            await self._invalidate_after(out.method, target, passed)
        return passed

    async def _checked(self, resp: CachedResponse, checks: Any) -> CachedResponse:
        """Apply this caller's ``raise_for_status`` to its own response, as aiohttp applies it."""
        try:
            if callable(checks):  # aiohttp's order: a callable, else any true value
                await checks(resp)
            elif checks:
                resp.raise_for_status()
        except BaseException:
            self._core.count_error()
            raise
        return resp

    async def _invalidate_after(self, method: str, url: URL, resp: CachedResponse) -> None:
        """The module rules' invalidation, for the response ``resp`` to a call to ``url``."""
        if resp.cache_status not in ("miss", "bypass") or not invalidates(method, resp.status):
            return
        base = resp.url  # where the response came from: its references are relative to it
        targets = invalidation_targets(
            resp.headers.get, lambda ref: base.join(URL(ref)), _origin, _origin(url)
        )
        for target in (url, *targets):
            await self._core.invalidate_url(url_key(self._keys, target))

    def _target(self, str_or_url: str | URL, params: Any) -> URL:
        """The absolute URL a request goes to, its ``params=`` merged as aiohttp merges them."""
        url = request_url(self._client(), str_or_url)
        return merge_params(url, params) if params else url


def _log(resp: CachedResponse, url: str | URL, key: str | None, started: float) -> None:
    """The DEBUG record of a finished call (``core/calllog.py``); ``started``: when it began."""
    target = str((URL(url) if isinstance(url, str) else url).with_query(None).with_fragment(None))
    answer = Answer(resp.snapshot, resp.cache_status, resp.cache_reason)
    log_answer(answer, resp.method, target, key, resp._now - started)


def _check_flags(cache: Any, refresh: Any) -> None:
    check_flag(cache, "cache")
    check_flag(refresh, "refresh")


def _origin(url: URL) -> Origin:
    return Origin(url.scheme, url.host, url.port)
