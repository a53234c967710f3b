"""How long a response lasts in a cache (RFC 9111 §3, §4.2, §4.3; RFC 5861): fresh, then kept for
revalidation and stale serving; whether a stored one may be served stale; whether it is private.

Rules of this module:

* Pure decisions over plain data: the settings come as one ``FreshnessRules`` (a policy builds
  it once), a response as one ``ResponseFacts``. The times are in the facts, never read from a
  clock; standard library only, no asyncio.
* ``decide_lifetime`` answers ``Lifetime(fresh, kept)`` for a response to store, or
  ``NotStored(reason)`` with its reason code (``docs/architecture.md``, "Decision tables").
* The origin's directives count only when ``rules.reads_origin`` ("origin read": ``"http"`` mode,
  or ``"ttl"`` mode with ``respect_cache_control``); in a shared cache they are those of the first
  valid targeted field (RFC 9213), see ``targeted.effective_directives``.

``decide_lifetime``, first matching row wins ("read": only when the origin's directives are read;
``configured`` is the call's ``cache_ttl``, else ``status_ttl[status]``, else the first matching
``url_ttl``, else the session's ``ttl``; ``age`` the age on arrival, RFC 9111 §4.2.3; ``L`` the
origin's explicit lifetime, §4.2.1; ``H`` a heuristic one, §4.2.2)::

    row mode  when                                         result
    1   any   status_ttl[status] == 0                      NotStored "ttl 0"
    2   any   read: no-store, not overridden by            NotStored "no-store"
              must-understand (§5.2.2.3, see below)
    3   any   read: private, in a shared cache (§5.2.2.7)  NotStored "private"
    4   ttl   status in neither cacheable_statuses nor     NotStored "status not cacheable"
              status_ttl
    5   ttl   configured <= 0                              NotStored "ttl 0"
    6   http  status 206 or 304 (§3: never stored as a     NotStored "status not cacheable"
              complete response)
    7   any   read: no-cache (§5.2.2.4)                    fresh 0
    8   ttl   read: L given                                fresh min(configured, max(0, L - age))
    9   ttl   otherwise                                    fresh configured
    10  http  L given                                      fresh max(0, L - age)
    11  http  status neither heuristically cacheable nor   NotStored "status not cacheable"
              marked public
    12  http  H known (a Last-Modified)                    fresh max(0, H - age)
    13  http  otherwise                                    fresh max(0, configured - age)
    then, for the rows that gave a fresh:
    14  fresh 0, and no validator or nothing kept          NotStored "ttl 0" after row 13 with a
                                                           configured <= 0, else "stale on arrival"
    15  otherwise                                          Lifetime(fresh, kept)

``must-understand`` overrides ``no-store`` for the statuses whose caching this package
implements (``UNDERSTOOD``: the heuristically cacheable ones but 206). ``kept`` is the longest
of ``keep_stale`` (when the response has a validator, ``ETag`` or ``Last-Modified``: it may be
revalidated) and its stale windows (below, with the origin's directives only when read).

``stale_windows`` and ``may_serve_stale`` (RFC 9111 §4.2.4, RFC 5861; "forbids": ``no-cache``,
``must-revalidate``, and in a shared cache ``proxy-revalidate`` or ``s-maxage``)::

    origin read  forbids  stale_windows                                    may_serve_stale
    no           -        the policy's                                     True
    yes          yes      (0, 0)                                           False
    yes          no       the origin's stale-while-revalidate and          True
                          stale-if-error, each where given, else the policy's

``is_private``: a shared cache neither stores nor shares a response with ``Set-Cookie``, or with
``private`` or ``no-store`` (row 2's exception applies) in its effective directives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from .cache_control import ResponseDirectives, field_values
from .dates import parse_http_date
from .freshness import (
    HEURISTICALLY_CACHEABLE,
    FreshnessRules,
    Lifetime,
    ResponseFacts,
    StaleWindows,
    UrlTtl,
    current_age,
    freshness_lifetime,
    heuristic_lifetime,
)
from .targeted import (
    DIRECTIVE_FIELDS,
    EffectiveDirectives,
    directive_fields,
    directives_of,
    effective_directives,
)

__all__ = [
    "NOT_STORED",
    "NotStored",
    "NotStoredReason",
    "configured_lifetime",
    "decide_lifetime",
    "is_private",
    "lifetime",
    "may_serve_stale",
    "stale_windows",
    "url_lifetime",
]

NotStoredReason = Literal[
    "ttl 0", "no-store", "private", "status not cacheable", "stale on arrival"
]


@dataclass(frozen=True, slots=True)
class NotStored:
    """A response that is not stored, and why (a reason code of ``docs/architecture.md``)."""

    reason: NotStoredReason


NOT_STORED = Lifetime(0.0, 0.0)
"""The ``Lifetime`` of a response that is not stored."""

# The statuses whose caching requirements this package implements (for must-understand, RFC 9111
# §5.2.2.3): those RFC 9110 §15.1 calls heuristically cacheable, but 206 (ranges are not stored).
UNDERSTOOD = HEURISTICALLY_CACHEABLE - {206}
_PARTS = frozenset({206, 304})  # RFC 9111 §3: never stored as a complete response
_NO_DIRECTIVES = ResponseDirectives()
_NO_WINDOWS = StaleWindows(0.0, 0.0)
# The fields the lifetime reads (with the targeted ones in a shared cache), gathered in one pass
# over the headers (``cache_control.field_values``): a response has a dozen or two.
_FIELDS = DIRECTIVE_FIELDS | {"date", "age", "last-modified", "etag"}


class _Fresh(NamedTuple):
    """A fresh lifetime (seconds from arrival), and the reason it is not stored if it is 0 with
    nothing to keep it for (row 14)."""

    seconds: float
    if_zero: NotStoredReason = "stale on arrival"


def decide_lifetime(facts: ResponseFacts, rules: FreshnessRules) -> Lifetime | NotStored:
    """Whether and how long a response is stored: the module's first table, row by row.

    >>> rules = FreshnessRules("ttl", True, frozenset({200}), {}, (), 86400.0, 600.0,
    ...                        StaleWindows(0.0, 0.0), ())
    >>> facts = ResponseFacts(200, (("ETag", '"a"'),), 0.0, 0.0, session_ttl=60)
    >>> decide_lifetime(facts, rules)
    Lifetime(fresh=60.0, kept=600.0)
    >>> decide_lifetime(ResponseFacts(500, (), 0.0, 0.0, session_ttl=60), rules)
    NotStored(reason='status not cacheable')
    """
    status, headers, shared = facts.status, facts.headers, facts.shared_cache
    if rules.status_ttl.get(status, 1.0) <= 0:
        return NotStored("ttl 0")  # 1: status_ttl={status: 0}, whatever the call asks
    targeted = rules.targeted_cache_control
    values = field_values(headers, directive_fields(_FIELDS, targeted, shared=shared))
    effective = directives_of(values, targeted, shared=shared)
    cc = effective.directives
    read = rules.reads_origin
    if read and cc.no_store and _no_store(cc, status):
        return NotStored("no-store")  # 2
    if read and shared and cc.private:
        return NotStored("private")  # 3
    http = rules.freshness == "http"
    configured = configured_lifetime(facts, rules)
    if configured is None or (http and status in _PARTS):
        return NotStored("status not cacheable")  # 4, 6
    if not http and configured <= 0:
        return NotStored("ttl 0")  # 5
    validated = "etag" in values or "last-modified" in values
    kept = _kept(cc if read else _NO_DIRECTIVES, validated, shared, rules)
    if read and cc.no_cache:
        # 7: stored, but never reused without the origin's word (§5.2.2.4): a conditional
        # request when it has a validator; without one there is nothing to keep it for.
        fresh: _Fresh | NotStored = _Fresh(0.0)
    elif not http and not (rules.respect_cache_control and _explicit(cc, effective[1], shared)):
        return Lifetime(float(configured), kept)  # 9, then 15 (more than 0: row 5)
    else:
        fresh = _fresh(facts, values, effective, configured, rules)  # 8, 10 to 13
    if isinstance(fresh, NotStored):
        return fresh
    if fresh.seconds <= 0 and (not validated or kept <= 0):
        return NotStored(fresh.if_zero)  # 14
    return Lifetime(fresh.seconds, kept)  # 15


def lifetime(facts: ResponseFacts, rules: FreshnessRules) -> Lifetime:
    """``decide_lifetime`` as a ``Lifetime`` alone: ``NOT_STORED`` for a response not stored."""
    decided = decide_lifetime(facts, rules)
    return NOT_STORED if isinstance(decided, NotStored) else decided


def _fresh(
    facts: ResponseFacts,
    values: Mapping[str, str],
    effective: EffectiveDirectives,
    configured: float,
    rules: FreshnessRules,
) -> _Fresh | NotStored:
    """Rows 8 and 10 to 13 (row 9 is ``decide_lifetime``'s, without reading a date): how long
    a response that may be stored stays fresh from its arrival. ``values``: its fields
    (``_FIELDS``) by lower-case name."""
    cc, expires = effective
    shared, received = facts.shared_cache, facts.response_time
    ttl = rules.freshness == "ttl"
    date = parse_http_date(values.get("date", ""), now=received)
    explicit = freshness_lifetime(
        cc, expires=expires, date=date, response_time=received, shared=shared
    )
    age = current_age(
        values.get("age"),
        date,
        request_time=facts.request_time,
        response_time=received,
        now=received,
    )
    if ttl and explicit is not None:
        # 8: the origin's remaining freshness caps the configured lifetime: an Expires in
        # the past, or an Age at or above max-age, means stale on arrival.
        return _Fresh(max(0.0, min(float(configured), explicit - age)))
    if explicit is not None:
        return _Fresh(max(0.0, explicit - age))  # 10
    # Heuristics for the statuses that allow them, or any status marked public (§4.2.2).
    if facts.status not in HEURISTICALLY_CACHEABLE and not cc.public:
        return NotStored("status not cacheable")  # 11
    last_modified = parse_http_date(values.get("last-modified", ""), now=received)
    heuristic = heuristic_lifetime(
        facts.status,
        date=received if date is None else date,
        last_modified=last_modified,
        heuristic_max=rules.heuristic_max,
        public=cc.public,
    )
    if heuristic is not None:
        return _Fresh(max(0.0, heuristic - age))  # 12
    return _Fresh(
        max(0.0, float(configured) - age), "ttl 0" if configured <= 0 else "stale on arrival"
    )  # 13


def configured_lifetime(facts: ResponseFacts, rules: FreshnessRules) -> float | None:
    """The configured lifetime: the call's, else the status's, else the URL's, else the
    session's. None in ``"ttl"`` mode for a status that may not be stored: the status decides
    whether a response may be stored at all, a call's ``cache_ttl`` only how long."""
    status = facts.status
    if rules.freshness == "ttl" and not (
        status in rules.status_ttl or status in rules.cacheable_statuses
    ):
        return None  # cacheable_statuses applies in "ttl" mode only
    if facts.call_ttl is not None:
        return facts.call_ttl  # beats every configured lifetime, a url_ttl of 0 included
    if status in rules.status_ttl:
        return rules.status_ttl[status]
    if facts.url is not None and rules.url_ttl:
        return url_lifetime(facts.url, rules.url_ttl, facts.session_ttl)
    return facts.session_ttl


def url_lifetime(url: str, url_ttl: Sequence[UrlTtl], default: float) -> float:
    """The seconds of the first ``url_ttl`` entry whose pattern matches ``url``, else
    ``default``."""
    for entry in url_ttl:
        if entry.pattern.fullmatch(url):
            return entry.seconds
    return default


def stale_windows(
    headers: Sequence[tuple[str, str]], rules: FreshnessRules, *, shared_cache: bool
) -> StaleWindows:
    """How long past its freshness a stored response may be served stale: the module's second
    table."""
    if not rules.reads_origin:
        return rules.stale
    cc = effective_directives(headers, rules.targeted_cache_control, shared=shared_cache)
    return _windows(cc.directives, shared_cache, rules)


def may_serve_stale(
    headers: Sequence[tuple[str, str]], rules: FreshnessRules, *, shared_cache: bool
) -> bool:
    """Whether the origin allows serving this response stale at all (RFC 9111 §4.2.4), for a
    client's own ``max-stale``: the module's second table."""
    if not rules.reads_origin:
        return True
    cc = effective_directives(headers, rules.targeted_cache_control, shared=shared_cache)
    return not _forbids_stale(cc.directives, shared_cache)


def is_private(
    headers: Sequence[tuple[str, str]], status: int | None, rules: FreshnessRules
) -> bool:
    """Meant for one client only, so neither stored nor shared by a shared cache (RFC 9111 §3,
    §5.2.2.7): ``Set-Cookie``, or ``private`` or ``no-store`` (row 2's exception applies)."""
    if any(name.lower() == "set-cookie" for name, _ in headers):
        return True
    cc = effective_directives(headers, rules.targeted_cache_control, shared=True).directives
    return cc.private or _no_store(cc, status)


def _no_store(cc: ResponseDirectives, status: int | None) -> bool:
    """``no-store``, unless beside ``must-understand`` for a status whose caching we implement
    (RFC 9111 §5.2.2.3: then the cache ignores ``no-store``)."""
    return cc.no_store and not (cc.must_understand and status in UNDERSTOOD)


def _kept(cc: ResponseDirectives, validated: bool, shared: bool, rules: FreshnessRules) -> float:
    """Seconds a response stays stored past its freshness: the longest of ``keep_stale`` (with
    a validator) and its stale windows."""
    swr, sie = _windows(cc, shared, rules)
    return max(rules.keep_stale if validated else 0.0, swr, sie)


def _windows(cc: ResponseDirectives, shared: bool, rules: FreshnessRules) -> StaleWindows:
    if _forbids_stale(cc, shared):
        return _NO_WINDOWS
    swr, sie = cc.stale_while_revalidate, cc.stale_if_error
    if swr is None and sie is None:
        return rules.stale  # the policy's, as built (no new record)
    return StaleWindows(
        rules.stale.while_revalidate if swr is None else float(swr),
        rules.stale.if_error if sie is None else float(sie),
    )


def _explicit(cc: ResponseDirectives, expires: str | None, shared: bool) -> bool:
    """Does the origin give an explicit lifetime (``freshness_lifetime`` is not None)?"""
    return expires is not None or cc.max_age is not None or (shared and cc.s_maxage is not None)


def _forbids_stale(cc: ResponseDirectives, shared: bool) -> bool:
    """RFC 9111 §4.2.4: directives under which a stale response is never served."""
    if cc.no_cache or cc.must_revalidate:
        return True
    return shared and (cc.proxy_revalidate or cc.s_maxage is not None)
