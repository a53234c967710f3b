"""CachePolicy: what may be shared, what may be stored, and for how long.

Rules of this module:

* A policy is a frozen value, checked when built: a bad option raises ``ValueError`` naming it.
* It decides from plain data (a status, header pairs); it imports no HTTP framework.
* TTL precedence (DESIGN.md): the call's ``cache_ttl``, else ``status_ttl[status]``, else the
  first matching ``url_ttl`` pattern (glob, on ``host[:port]/path?query``), else the session's
  ``ttl``; then capped by ``Cache-Control: max-age`` (or ``s-maxage`` in a shared cache,
  RFC 9111 §5.2.2.10) when ``respect_cache_control`` is on. A result of 0 means "not stored".
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..options import (
    check_callable,
    check_collection,
    check_count,
    check_flag,
    check_header_names,
    check_seconds,
)
from ..spec.cache_control import (
    ResponseDirectives,
    parse_response_cache_control,
    parse_targeted_cache_control,
)
from ..spec.dates import parse_http_date
from ..spec.fields import is_status
from ..spec.freshness import (
    HEURISTICALLY_CACHEABLE,
    Lifetime,
    StaleWindows,
    current_age,
    freshness_lifetime,
    heuristic_lifetime,
)
from .keys import CREDENTIAL_HEADERS, KeyMaker

if TYPE_CHECKING:
    from ..spec.snapshot import Headers

__all__ = ["CachePolicy"]

# RFC 9110 §7.6.1: hop-by-hop headers, meaningful for one connection only; never stored or replayed.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
    }
)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """What may be shared and stored.

    >>> policy = CachePolicy(status_ttl={404: 10}, ignored_params={"utm_source"})
    >>> policy.ttl_for(404, [], session_ttl=60)
    10.0
    >>> policy.ttl_for(200, [("Cache-Control", "max-age=5")], session_ttl=60)
    5.0
    >>> CachePolicy(max_body_size=-1)
    Traceback (most recent call last):
    ...
    ValueError: max_body_size must be a whole number of bytes from 0 to 2**63 - 1, got -1
    """

    methods: AbstractSet[str] = frozenset({"GET", "HEAD"})
    cacheable_statuses: AbstractSet[int] = frozenset({200, 203, 300, 301, 308})
    status_ttl: Mapping[int, float] = field(default_factory=dict)
    strip_headers: Sequence[str] = ("set-cookie", "access-control-*", "x-ratelimit-*")
    max_body_size: int = 8 * 1024 * 1024
    respect_cache_control: bool = True
    sort_query: bool = True
    ignored_params: AbstractSet[str] = frozenset()
    should_store: Callable[[Any], bool] | None = None
    credential_headers: Sequence[str] = CREDENTIAL_HEADERS
    pass_ttl: float = 120.0
    max_variants: int = 32
    url_ttl: Mapping[str, float] = field(default_factory=dict)
    freshness: str = "ttl"
    heuristic_max: float = 86_400.0
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    keep_stale: float = 600.0
    targeted_cache_control: Sequence[str] = ()
    _strip_exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _strip_prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _url_patterns: tuple[tuple[re.Pattern[str], float], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        methods = check_collection(self.methods, "methods", _is_method, "HTTP method names")
        set_(self, "methods", frozenset(m.upper() for m in methods))
        statuses = check_collection(
            self.cacheable_statuses, "cacheable_statuses", is_status, "HTTP status codes"
        )
        set_(self, "cacheable_statuses", frozenset(statuses))
        if not isinstance(self.status_ttl, Mapping):
            raise ValueError(
                f"status_ttl must map status codes to seconds, got {self.status_ttl!r}"
            )
        for status in check_collection(self.status_ttl, "status_ttl", is_status, "status codes"):
            check_seconds(self.status_ttl[status], f"status_ttl[{status}]")
        set_(self, "status_ttl", {s: float(t) for s, t in self.status_ttl.items()})
        strip = check_collection(self.strip_headers, "strip_headers", _is_str, "header names")
        check_header_names([h.rstrip("*") for h in strip], "strip_headers")  # "x-*": a prefix
        raw = tuple(h.strip().lower() for h in strip)
        set_(self, "strip_headers", raw)
        set_(self, "_strip_exact", frozenset(h for h in raw if not h.endswith("*")) | HOP_BY_HOP)
        prefixes = tuple(h.rstrip("*") for h in raw if h.endswith("*"))
        set_(self, "_strip_prefixes", (*prefixes, "proxy-"))  # Proxy-* is hop-by-hop too
        check_count(self.max_body_size, "max_body_size")
        check_flag(self.respect_cache_control, "respect_cache_control")
        check_flag(self.sort_query, "sort_query")
        params = check_collection(self.ignored_params, "ignored_params", _is_str, "names")
        set_(self, "ignored_params", frozenset(params))
        check_callable(self.should_store, "should_store", none_ok=True)
        creds = check_header_names(self.credential_headers, "credential_headers")
        set_(self, "credential_headers", creds)
        check_seconds(self.pass_ttl, "pass_ttl")
        check_count(self.max_variants, "max_variants", minimum=1, unit="variants")
        if self.freshness not in ("ttl", "http"):
            raise ValueError(f'freshness must be "ttl" or "http", got {self.freshness!r}')
        set_(self, "heuristic_max", check_seconds(self.heuristic_max, "heuristic_max"))
        for name in ("stale_while_revalidate", "stale_if_error", "keep_stale"):
            set_(self, name, check_seconds(getattr(self, name), name))
        targeted = check_header_names(self.targeted_cache_control, "targeted_cache_control")
        set_(self, "targeted_cache_control", targeted)
        if not isinstance(self.url_ttl, Mapping):
            raise ValueError(f"url_ttl must map URL patterns to seconds, got {self.url_ttl!r}")
        patterns = []
        for pattern in check_collection(self.url_ttl, "url_ttl", _is_str, "URL patterns"):
            seconds = check_seconds(self.url_ttl[pattern], f"url_ttl[{pattern!r}]")
            patterns.append((re.compile(fnmatch.translate(pattern)), seconds))
        set_(self, "url_ttl", dict(self.url_ttl))
        set_(self, "_url_patterns", tuple(patterns))

    def key_maker(self, *, namespace: str, key_headers: Iterable[str]) -> KeyMaker:
        """The key builder of a face (session or middleware) that uses this policy."""
        return KeyMaker(
            namespace=namespace,
            key_headers=check_header_names(key_headers, "key_headers"),
            credential_headers=tuple(self.credential_headers),
            sort_query=self.sort_query,
            ignored_params=frozenset(self.ignored_params),
        )

    def ttl_for(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        *,
        session_ttl: float,
        call_ttl: float | None = None,
        shared_cache: bool = False,
        url: str | None = None,
        request_time: float | None = None,
        response_time: float | None = None,
    ) -> float:
        """Seconds from ``response_time`` that a response stays fresh; 0 means never reused
        without going to the origin (``lifetime`` says whether it is kept for that).

        ``url`` is the request's URL without its scheme (``host[:port]/path?query``), for
        ``url_ttl``. ``request_time`` and ``response_time`` (wall-clock seconds around the real
        request) date the response for its age on arrival (RFC 9111 §4.2.3); without them the
        response is taken as received now, at the age its ``Age`` and ``Date`` give.
        """
        return self.lifetime(
            status,
            headers,
            session_ttl=session_ttl,
            call_ttl=call_ttl,
            shared_cache=shared_cache,
            url=url,
            request_time=request_time,
            response_time=response_time,
        )[0]

    def lifetime(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        *,
        session_ttl: float,
        call_ttl: float | None = None,
        shared_cache: bool = False,
        url: str | None = None,
        request_time: float | None = None,
        response_time: float | None = None,
    ) -> Lifetime:
        """``(fresh, kept)``: seconds from ``response_time`` a response stays fresh, and seconds
        past that it stays stored (RFC 9111 §4.3, RFC 5861): for a conditional revalidation
        (``keep_stale``, when it has a validator) and for stale serving (the stale windows).
        ``(0, 0)``: not stored. Arguments as ``ttl_for``.

        >>> p = CachePolicy(keep_stale=300, stale_if_error=60)
        >>> p.lifetime(200, [("ETag", '"v1"')], session_ttl=10)
        Lifetime(fresh=10.0, kept=300.0)
        >>> p.lifetime(200, [("Cache-Control", "no-cache"), ("ETag", '"v1"')], session_ttl=10)
        Lifetime(fresh=0.0, kept=300.0)
        >>> p.lifetime(200, [("Cache-Control", "no-cache")], session_ttl=10)
        Lifetime(fresh=0.0, kept=0.0)
        """
        headers = tuple(headers)
        if status in self.status_ttl and self.status_ttl[status] <= 0:
            return _NOT_STORED  # status_ttl={status: 0}: never stored, whatever the call asks
        cc, expires = self._directives(headers, shared_cache)
        http = self.freshness == "http"
        origin = http or self.respect_cache_control  # the origin's directives are read
        # must-understand with a status whose caching we implement overrides no-store (§5.2.2.3).
        no_store = cc.no_store and not (cc.must_understand and status in _UNDERSTOOD)
        if origin and (no_store or (shared_cache and cc.private)):
            return _NOT_STORED
        configured = self._configured(status, session_ttl, call_ttl, url, http=http)
        if not http and (configured is None or configured <= 0):
            return _NOT_STORED
        if http and status in (206, 304):
            return _NOT_STORED  # never stored as a full response (RFC 9111 §3)
        validated = any(k.lower() in ("etag", "last-modified") for k, _ in headers)
        kept = self._kept(cc if origin else _NO_DIRECTIVES, validated, shared_cache)
        if origin and cc.no_cache:
            # Stored, but never reused without the origin's word (§5.2.2.4): a conditional
            # request when it has a validator; without one there is nothing to keep it for.
            return Lifetime(0.0, kept) if validated else _NOT_STORED
        received = time.time() if response_time is None else response_time
        sent = received if request_time is None else request_time
        date = parse_http_date(_joined(headers, "date") or "", now=received)
        explicit = freshness_lifetime(
            cc, expires=expires, date=date, response_time=received, shared=shared_cache
        )
        age = current_age(
            _joined(headers, "age"), date, request_time=sent, response_time=received, now=received
        )
        if http:
            lifetime = explicit
            # Heuristics for the statuses that allow them, or any status marked public (§4.2.2).
            if lifetime is None and (status in HEURISTICALLY_CACHEABLE or cc.public):
                last_modified = parse_http_date(_joined(headers, "last-modified") or "")
                lifetime = heuristic_lifetime(
                    status,
                    date=received if date is None else date,
                    last_modified=last_modified,
                    heuristic_max=self.heuristic_max,
                    public=cc.public,
                )
                if lifetime is None:
                    lifetime = configured
            if lifetime is None:
                return _NOT_STORED
            fresh = max(0.0, float(lifetime) - age)
        else:
            assert configured is not None
            fresh = float(configured)
            if self.respect_cache_control and explicit is not None:
                # The origin's remaining freshness caps the configured lifetime: an Expires in
                # the past, or an Age at or above max-age, means stale on arrival.
                fresh = max(0.0, min(fresh, explicit - age))
        if fresh <= 0 and not validated:
            return _NOT_STORED  # stale on arrival, and nothing to revalidate it with
        return Lifetime(fresh, kept)

    def _kept(self, cc: ResponseDirectives, validated: bool, shared_cache: bool) -> float:
        """Seconds a response stays stored past its freshness: the longest of ``keep_stale``
        (with a validator) and its stale windows."""
        swr, sie = self._windows(cc, shared_cache)
        return max(self.keep_stale if validated else 0.0, swr, sie)

    def stale_windows(
        self, headers: Iterable[tuple[str, str]], *, shared_cache: bool = False
    ) -> StaleWindows:
        """``(stale-while-revalidate, stale-if-error)`` seconds past its freshness a stored
        response may be served stale: the origin's directives when present, else the policy's;
        ``(0, 0)`` when the origin forbids serving it stale (RFC 9111 §4.2.4: ``no-cache``,
        ``must-revalidate``; in a shared cache ``proxy-revalidate`` and ``s-maxage``).

        >>> CachePolicy(stale_if_error=60).stale_windows([("Cache-Control", "max-age=5")])
        StaleWindows(while_revalidate=0.0, if_error=60.0)
        >>> CachePolicy(stale_if_error=60).stale_windows([("Cache-Control", "must-revalidate")])
        StaleWindows(while_revalidate=0.0, if_error=0.0)
        """
        if not (self.freshness == "http" or self.respect_cache_control):
            return self._windows(_NO_DIRECTIVES, shared_cache)
        return self._windows(self._directives(tuple(headers), shared_cache)[0], shared_cache)

    def may_serve_stale(
        self, headers: Iterable[tuple[str, str]], *, shared_cache: bool = False
    ) -> bool:
        """Whether the origin allows serving this response stale at all (RFC 9111 §4.2.4), for
        a client's own ``max-stale``."""
        if not (self.freshness == "http" or self.respect_cache_control):
            return True
        cc = self._directives(tuple(headers), shared_cache)[0]
        return not _forbids_stale(cc, shared_cache)

    def _directives(
        self, headers: tuple[tuple[str, str], ...], shared_cache: bool
    ) -> tuple[ResponseDirectives, str | None]:
        """The origin's cache directives for this cache, and the ``Expires`` that counts: in a
        shared cache, the first valid field of ``targeted_cache_control`` (RFC 9213 §2.2: then
        ``Cache-Control`` and ``Expires`` are ignored), else ``Cache-Control``."""
        if shared_cache:
            for name in self.targeted_cache_control:
                targeted = parse_targeted_cache_control(_joined(headers, name))
                if targeted is not None:
                    return targeted, None
        cc = parse_response_cache_control(_joined(headers, "cache-control"))
        return cc, _joined(headers, "expires")

    def _windows(self, cc: ResponseDirectives, shared_cache: bool) -> StaleWindows:
        if _forbids_stale(cc, shared_cache):
            return StaleWindows(0.0, 0.0)
        swr = cc.stale_while_revalidate
        sie = cc.stale_if_error
        return StaleWindows(
            self.stale_while_revalidate if swr is None else float(swr),
            self.stale_if_error if sie is None else float(sie),
        )

    def _configured(
        self,
        status: int,
        session_ttl: float,
        call_ttl: float | None,
        url: str | None,
        *,
        http: bool,
    ) -> float | None:
        """The configured lifetime: the call's, else the status's, else the URL's, else the
        session's. None in "ttl" mode for a status that may not be stored: the status decides
        whether a response may be stored at all, a call's ``cache_ttl`` only how long."""
        if not http and status not in self.status_ttl and status not in self.cacheable_statuses:
            return None  # cacheable_statuses applies in "ttl" mode only
        if call_ttl is not None:
            return call_ttl  # beats every configured lifetime, a url_ttl of 0 included
        if status in self.status_ttl:
            return self.status_ttl[status]
        if url is not None and self._url_patterns:
            return self.url_lifetime(url, session_ttl)
        return session_ttl

    def url_lifetime(self, url: str, default: float) -> float:
        """The first ``url_ttl`` whose pattern matches ``url`` (insertion order), else ``default``.

        >>> p = CachePolicy(url_ttl={"api.example.com/static/*": 3600, "*/live/*": 0})
        >>> p.url_lifetime("api.example.com/static/app.js", 60), p.url_lifetime("x/live/1", 60)
        (3600.0, 0.0)
        """
        for pattern, seconds in self._url_patterns:
            if pattern.fullmatch(url):
                return seconds
        return default

    def is_private(self, headers: Iterable[tuple[str, str]], status: int | None = None) -> bool:
        """Meant for one client only: ``Set-Cookie``, or ``Cache-Control: private`` / ``no-store``
        (but ``no-store`` beside ``must-understand`` for a ``status`` we implement, §5.2.2.3).

        A shared cache (RFC 9111 §3, §5.2.2.7) neither stores nor shares such a response.
        """
        headers = tuple(headers)
        if any(name.lower() == "set-cookie" for name, _ in headers):
            return True
        cc = self._directives(headers, shared_cache=True)[0]
        understood = cc.must_understand and status in _UNDERSTOOD
        return cc.private or (cc.no_store and not understood)

    def storable_headers(self, headers: Iterable[tuple[str, str]]) -> Headers:
        """The headers to store and replay: without ``strip_headers`` and hop-by-hop headers."""
        exact, prefixes = self._strip_exact, self._strip_prefixes
        headers = tuple(headers)  # read twice below
        connection = {
            t.strip().lower()
            for name, value in headers
            if name.lower() == "connection"
            for t in value.split(",")
        }
        out = []
        for name, value in headers:
            low = name.lower()
            if low in exact or low in connection or low.startswith(prefixes):
                continue
            out.append((name, value))
        return tuple(out)


_NOT_STORED = Lifetime(0.0, 0.0)
# The statuses whose caching requirements this package implements (for must-understand): those
# RFC 9110 §15.1 calls heuristically cacheable, but 206 (ranges are not stored).
_UNDERSTOOD = HEURISTICALLY_CACHEABLE - {206}
_NO_DIRECTIVES = ResponseDirectives()


def _forbids_stale(cc: ResponseDirectives, shared_cache: bool) -> bool:
    """RFC 9111 §4.2.4: directives under which a stale response is never served."""
    if cc.no_cache or cc.must_revalidate:
        return True
    return shared_cache and (cc.proxy_revalidate or cc.s_maxage is not None)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_method(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _joined(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in headers if k.lower() == name]
    return ", ".join(values) if values else None
