"""CachePolicy: what may be shared, what may be stored, and for how long.

Rules of this module:

* A policy is a frozen value, checked when built: a bad option raises ``ValueError`` naming it
  (the checks are ``options.py``'s, one copy each).
* Its HTTP rules are ``spec/``'s pure functions (``spec/lifetime.py``: the lifetime, the stale
  windows, privacy; ``spec/stored_fields.py``: the header fields kept); the policy only hands
  them its settings, built once, when the policy is built (``FreshnessRules``,
  ``FieldFilter``). It imports no HTTP framework, and reads the clock in one place only:
  ``ttl_for`` and ``lifetime`` called without the response's times (``LifetimeOptions``).
* TTL precedence (``docs/architecture.md``): the call's ``cache_ttl``, else
  ``status_ttl[status]``, else the first matching ``url_ttl`` pattern (glob, on
  ``host[:port]/path?query``), else the session's ``ttl``; then capped by ``Cache-Control:
  max-age`` (or ``s-maxage`` in a shared cache, RFC 9111 §5.2.2.10) when
  ``respect_cache_control`` is on. A result of 0 means "not stored".
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from ..options import (
    Seconds,
    check_callable,
    check_choice,
    check_collection,
    check_count,
    check_flag,
    check_header_names,
    check_seconds,
    check_seconds_map,
    is_nonempty_string,
    is_string,
)
from ..spec import lifetime as lifetime_rules
from ..spec import stored_fields
from ..spec.fields import is_status
from ..spec.freshness import FreshnessRules, Lifetime, ResponseFacts, StaleWindows, UrlTtl
from ..spec.lifetime import NotStored
from ..spec.requests import FORWARDED_HEADERS
from ..spec.stored_fields import FieldFilter, field_filter
from .keys import CREDENTIAL_HEADERS, KeyMaker

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.11

    from ..spec.snapshot import Headers

__all__ = ["CachePolicy", "LifetimeOptions"]

# The options in seconds besides the maps: a number or a timedelta, kept as float seconds.
_SECONDS = ("pass_ttl", "heuristic_max", "stale_while_revalidate", "stale_if_error", "keep_stale")


class _SessionTtl(TypedDict):
    session_ttl: float


class LifetimeOptions(_SessionTtl, total=False):
    """The keyword arguments of ``CachePolicy.ttl_for`` and ``CachePolicy.lifetime``: the fields
    of ``ResponseFacts`` but its status and headers, ``session_ttl`` required. ``request_time``
    and ``response_time`` may be left out (or None): the response is then taken as received now,
    by ``time.time()``."""

    call_ttl: float | None
    shared_cache: bool
    url: str | None
    request_time: float | None
    response_time: float | None


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

    Raises:
        ValueError: an option out of its domain; the message names the option and the value.
    """

    methods: AbstractSet[str] = frozenset({"GET", "HEAD"})
    cacheable_statuses: AbstractSet[int] = frozenset({200, 203, 300, 301, 308})
    status_ttl: Mapping[int, Seconds] = field(default_factory=dict)
    strip_headers: Sequence[str] = ("set-cookie", "access-control-*", "x-ratelimit-*")
    max_body_size: int = 8 * 1024 * 1024
    respect_cache_control: bool = True
    sort_query: bool = True
    ignored_params: AbstractSet[str] = frozenset()
    should_store: Callable[[Any], bool] | None = None
    credential_headers: Sequence[str] = CREDENTIAL_HEADERS
    forwarded_headers: Sequence[str] = FORWARDED_HEADERS
    pass_ttl: Seconds = 120.0
    max_variants: int = 32
    url_ttl: Mapping[str, Seconds] = field(default_factory=dict)
    freshness: str = "ttl"
    heuristic_max: Seconds = 86_400.0
    stale_while_revalidate: Seconds = 0.0
    stale_if_error: Seconds = 0.0
    keep_stale: Seconds = 600.0
    targeted_cache_control: Sequence[str] = ()
    # The largest body stored (streamed to a storage that can take it, issue 24); max_body_size
    # is the most held in memory for one response.
    max_stored_size: int = 1024 * 1024 * 1024
    _dropped: FieldFilter = field(init=False, repr=False, compare=False)
    _rules: FreshnessRules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        methods = check_collection(self.methods, "methods", is_nonempty_string, "HTTP method names")
        set_(self, "methods", frozenset(m.upper() for m in methods))
        statuses = check_collection(
            self.cacheable_statuses, "cacheable_statuses", is_status, "HTTP status codes"
        )
        set_(self, "cacheable_statuses", frozenset(statuses))
        status_ttl = check_seconds_map(self.status_ttl, "status_ttl", is_status, "status codes")
        set_(self, "status_ttl", status_ttl)
        strip = check_collection(self.strip_headers, "strip_headers", is_string, "header names")
        check_header_names([h.rstrip("*") for h in strip], "strip_headers")  # "x-*": a prefix
        raw = tuple(h.strip().lower() for h in strip)
        set_(self, "strip_headers", raw)
        set_(self, "_dropped", field_filter(raw))
        check_count(self.max_body_size, "max_body_size")
        check_count(self.max_stored_size, "max_stored_size")
        check_flag(self.respect_cache_control, "respect_cache_control")
        check_flag(self.sort_query, "sort_query")
        params = check_collection(self.ignored_params, "ignored_params", is_string, "names")
        set_(self, "ignored_params", frozenset(params))
        check_callable(self.should_store, "should_store", none_ok=True)
        creds = check_header_names(self.credential_headers, "credential_headers")
        set_(self, "credential_headers", creds)
        forwarded = check_header_names(self.forwarded_headers, "forwarded_headers")
        set_(self, "forwarded_headers", forwarded)
        check_count(self.max_variants, "max_variants", minimum=1, unit="variants")
        check_choice(self.freshness, "freshness", ("ttl", "http"))
        seconds = {name: check_seconds(getattr(self, name), name) for name in _SECONDS}
        for name, value in seconds.items():  # float seconds, whatever was given (a timedelta)
            set_(self, name, value)
        targeted = check_header_names(self.targeted_cache_control, "targeted_cache_control")
        set_(self, "targeted_cache_control", targeted)
        url_ttl = check_seconds_map(self.url_ttl, "url_ttl", is_string, "URL patterns")
        set_(self, "url_ttl", url_ttl)
        set_(self, "_rules", self._freshness_rules(status_ttl, url_ttl, seconds))

    def _freshness_rules(
        self,
        status_ttl: Mapping[int, float],
        url_ttl: Mapping[str, float],
        seconds: Mapping[str, float],
    ) -> FreshnessRules:
        """The settings ``spec/lifetime.py`` reads, from the checked options."""
        return FreshnessRules(
            freshness="http" if self.freshness == "http" else "ttl",
            respect_cache_control=self.respect_cache_control,
            cacheable_statuses=frozenset(self.cacheable_statuses),
            status_ttl=status_ttl,
            url_ttl=tuple(
                UrlTtl(re.compile(fnmatch.translate(pattern)), value)
                for pattern, value in url_ttl.items()
            ),
            heuristic_max=seconds["heuristic_max"],
            keep_stale=seconds["keep_stale"],
            stale=StaleWindows(seconds["stale_while_revalidate"], seconds["stale_if_error"]),
            targeted_cache_control=tuple(self.targeted_cache_control),
        )

    def key_maker(self, *, namespace: str, key_headers: Iterable[str]) -> KeyMaker:
        """The key builder of a face (session or middleware) that uses this policy."""
        return KeyMaker(
            namespace=namespace,
            key_headers=check_header_names(key_headers, "key_headers"),
            credential_headers=tuple(self.credential_headers),
            sort_query=self.sort_query,
            ignored_params=frozenset(self.ignored_params),
        )

    def lifetime_of(self, facts: ResponseFacts) -> Lifetime | NotStored:
        """How long a response is stored: ``Lifetime(fresh, kept)``, seconds from its arrival
        that it stays fresh, then seconds past that it stays stored (RFC 9111 §4.3, RFC 5861: for
        a conditional revalidation, ``keep_stale`` when it has a validator, and for stale
        serving, its stale windows); or ``NotStored(reason)``. The table is
        ``spec/lifetime.py``'s.

        >>> from coalesce_client.spec.freshness import ResponseFacts
        >>> p = CachePolicy(keep_stale=300, stale_if_error=60)
        >>> p.lifetime_of(ResponseFacts(200, (("ETag", '"v1"'),), 0.0, 0.0, session_ttl=10))
        Lifetime(fresh=10.0, kept=300.0)
        >>> p.lifetime_of(ResponseFacts(200, (), 0.0, 0.0, session_ttl=0))
        NotStored(reason='ttl 0')
        """
        return lifetime_rules.decide_lifetime(facts, self._rules)

    def ttl_for(
        self, status: int, headers: Iterable[tuple[str, str]], **options: Unpack[LifetimeOptions]
    ) -> float:
        """Seconds from its arrival that a response stays fresh; 0 means never reused without
        going to the origin (``lifetime_of`` says whether it is kept for that, and why not).

        ``url`` is the request's URL without its scheme (``host[:port]/path?query``), for
        ``url_ttl``. ``request_time`` and ``response_time`` (wall-clock seconds around the real
        request) date the response for its age on arrival (RFC 9111 §4.2.3); without them the
        response is taken as received now, at the age its ``Age`` and ``Date`` give.
        """
        return self._lifetime(status, headers, options).fresh

    def lifetime(
        self, status: int, headers: Iterable[tuple[str, str]], **options: Unpack[LifetimeOptions]
    ) -> Lifetime:
        """``lifetime_of`` for these arguments (those of ``ttl_for``), as a ``Lifetime``:
        ``(0, 0)`` when not stored.

        >>> p = CachePolicy(keep_stale=300, stale_if_error=60)
        >>> p.lifetime(200, [("ETag", '"v1"')], session_ttl=10)
        Lifetime(fresh=10.0, kept=300.0)
        >>> p.lifetime(200, [("Cache-Control", "no-cache"), ("ETag", '"v1"')], session_ttl=10)
        Lifetime(fresh=0.0, kept=300.0)
        >>> p.lifetime(200, [("Cache-Control", "no-cache")], session_ttl=10)
        Lifetime(fresh=0.0, kept=0.0)
        """
        return self._lifetime(status, headers, options)

    def _lifetime(
        self, status: int, headers: Iterable[tuple[str, str]], options: LifetimeOptions
    ) -> Lifetime:
        return lifetime_rules.lifetime(_facts(status, headers, options), self._rules)

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
        return lifetime_rules.stale_windows(tuple(headers), self._rules, shared_cache=shared_cache)

    def may_serve_stale(
        self, headers: Iterable[tuple[str, str]], *, shared_cache: bool = False
    ) -> bool:
        """Whether the origin allows serving this response stale at all (RFC 9111 §4.2.4), for
        a client's own ``max-stale``."""
        return lifetime_rules.may_serve_stale(
            tuple(headers), self._rules, shared_cache=shared_cache
        )

    def url_lifetime(self, url: str, default: float) -> float:
        """The first ``url_ttl`` whose pattern matches ``url`` (insertion order), else ``default``.

        >>> p = CachePolicy(url_ttl={"api.example.com/static/*": 3600, "*/live/*": 0})
        >>> p.url_lifetime("api.example.com/static/app.js", 60), p.url_lifetime("x/live/1", 60)
        (3600.0, 0.0)
        """
        return lifetime_rules.url_lifetime(url, self._rules.url_ttl, default)

    def is_private(self, headers: Iterable[tuple[str, str]], status: int | None = None) -> bool:
        """Meant for one client only: ``Set-Cookie``, or ``Cache-Control: private`` / ``no-store``
        (but ``no-store`` beside ``must-understand`` for a ``status`` we implement, §5.2.2.3).

        A shared cache (RFC 9111 §3, §5.2.2.7) neither stores nor shares such a response.
        """
        return lifetime_rules.is_private(tuple(headers), status, self._rules)

    def storable_headers(self, headers: Iterable[tuple[str, str]]) -> Headers:
        """The headers to store and replay: without ``strip_headers`` and hop-by-hop headers
        (``spec/stored_fields.py``)."""
        return stored_fields.storable_headers(headers, self._dropped)


_LIFETIME_OPTIONS = frozenset(LifetimeOptions.__required_keys__ | LifetimeOptions.__optional_keys__)


def _facts(
    status: int, headers: Iterable[tuple[str, str]], options: LifetimeOptions
) -> ResponseFacts:
    """The ``ResponseFacts`` of ``ttl_for``'s arguments; without its times, a response received
    now."""
    unknown = options.keys() - _LIFETIME_OPTIONS
    if unknown or "session_ttl" not in options:
        # What the keyword parameters these methods used to spell out would raise.
        wrong = sorted(unknown) or ["session_ttl (missing)"]
        raise TypeError(f"CachePolicy.ttl_for() got unexpected or missing arguments: {wrong}")
    received = options.get("response_time")
    if received is None:
        received = time.time()
    sent = options.get("request_time")
    return ResponseFacts(
        status,
        tuple(headers),
        request_time=received if sent is None else sent,
        response_time=received,
        session_ttl=options["session_ttl"],
        call_ttl=options.get("call_ttl"),
        url=options.get("url"),
        shared_cache=options.get("shared_cache", False),
    )
