"""HTTP freshness arithmetic (RFC 9111 §4.2): lifetimes and ages, and the records they travel in.

HTTP-dates are read by ``dates.py``, ``Cache-Control`` by ``cache_control.py``; the decisions
built on this arithmetic (how long a response is stored, whether it may be served stale) are in
``lifetime.py``.

Rules of this module:

* Pure functions over plain values. A header is given as the string received; a field sent on
  several lines is given as one value, its lines joined with ", " (RFC 9110 §5.3), except
  ``Cache-Control``, whose lines may also be given one by one. Times are wall-clock seconds since
  the epoch, UTC (``time.time()``), always passed in: nothing here reads a clock, and nothing
  imports a framework.
* Values that travel together are named records: ``Lifetime``, ``StaleWindows``, the settings the
  rules read (``FreshnessRules``, built once per policy) and what they read of one response
  (``ResponseFacts``).
* Bad input never raises. A value that is not an HTTP-date is ``None``: an invalid ``Expires``
  is already stale (RFC 9111 §5.3: "A cache recipient MUST interpret invalid date formats,
  especially the value "0", as representing a time in the past"). An invalid or conflicting
  ``max-age`` or ``s-maxage`` is 0, so the response is stale (§4.2.1: "Caches are encouraged to
  consider responses that have invalid freshness information (e.g., a max-age directive with
  non-integer content) to be stale"). Any other unreadable directive takes its most restrictive
  meaning: it may cost a request to the origin, and never serves what the origin or the client
  did not allow.
* Delta-seconds are whole ASCII digits, read as an ``int`` capped at 2**31 (§1.2.2: a value
  greater than the greatest integer the cache can represent "MUST" be taken as 2147483648), so a
  huge value neither raises nor overflows later.
* A response is fresh while its lifetime is greater than its age, not equal (§4.2:
  ``response_is_fresh = (freshness_lifetime > current_age)``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from .cache_control import DELTA_SECONDS_MAX, ResponseDirectives, delta_seconds
from .dates import parse_http_date

__all__ = [
    "HEURISTICALLY_CACHEABLE",
    "FreshnessRules",
    "Lifetime",
    "ResponseFacts",
    "StaleWindows",
    "UrlTtl",
    "age_header",
    "current_age",
    "freshness_lifetime",
    "heuristic_lifetime",
    "is_fresh",
]


class Lifetime(NamedTuple):
    """How long a stored response lasts, in seconds from when it arrived: ``fresh`` while it may
    be reused as it is, then ``kept`` more while it may be revalidated or served stale
    (RFC 9111 §4.3, RFC 5861). ``Lifetime(0, 0)``: not stored."""

    fresh: float
    kept: float


class StaleWindows(NamedTuple):
    """Seconds past its freshness a stored response may be served stale: while it is refreshed
    in the background (``stale-while-revalidate``, RFC 5861 §3) and when the origin fails
    (``stale-if-error``, RFC 5861 §4)."""

    while_revalidate: float
    if_error: float


class UrlTtl(NamedTuple):
    """One ``url_ttl`` entry: its glob pattern, compiled (``fnmatch.translate``), and seconds."""

    pattern: re.Pattern[str]
    seconds: float


@dataclass(frozen=True, slots=True)
class FreshnessRules:
    """The settings the lifetime and stale rules read (``lifetime.py``): a policy's options,
    checked, in the form the rules use. ``CachePolicy`` builds one when it is built.

    ``freshness`` is ``"ttl"`` (the configured lifetime, capped by the origin's when
    ``respect_cache_control``) or ``"http"`` (the origin's lifetime, RFC 9111 §4.2);
    ``cacheable_statuses`` and ``status_ttl`` say which statuses ``"ttl"`` mode stores;
    ``status_ttl`` and ``url_ttl`` are configured lifetimes (``url_ttl`` in its order);
    ``heuristic_max`` caps a heuristic lifetime; ``keep_stale`` is how long a response with a
    validator stays stored past its freshness; ``stale`` the windows granted when the origin
    names none; ``targeted_cache_control`` the lower-case names of the targeted fields a shared
    cache obeys, first valid one first (RFC 9213).
    """

    freshness: Literal["ttl", "http"]
    respect_cache_control: bool
    cacheable_statuses: frozenset[int]
    status_ttl: Mapping[int, float]
    url_ttl: tuple[UrlTtl, ...]
    heuristic_max: float
    keep_stale: float
    stale: StaleWindows
    targeted_cache_control: tuple[str, ...]

    @property
    def reads_origin(self) -> bool:
        """Whether the origin's cache directives count: always in ``"http"`` mode, and in
        ``"ttl"`` mode with ``respect_cache_control``."""
        return self.freshness == "http" or self.respect_cache_control


@dataclass(frozen=True, slots=True)
class ResponseFacts:
    """What the lifetime rules read of one response and of the call that brought it.

    ``request_time`` and ``response_time`` are when the real request was sent and its response
    arrived (RFC 9111 §4.2.3), by the face's clock; ``session_ttl`` and ``call_ttl`` (the call's
    ``cache_ttl``) are configured lifetimes; ``url`` is the request's URL without its scheme
    (``host[:port]/path?query``), for ``url_ttl``; ``shared_cache`` says whether the cache serves
    many users (RFC 9111 §3: then ``private`` is not stored and ``s-maxage`` counts).
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    request_time: float
    response_time: float
    session_ttl: float
    call_ttl: float | None = None
    url: str | None = None
    shared_cache: bool = False


# RFC 9110 §15.1: the status codes defined as heuristically cacheable.
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})

_HEURISTIC_FRACTION = 0.1  # RFC 9111 §4.2.2: "A typical setting of this fraction might be 10%."


def freshness_lifetime(
    directives: ResponseDirectives,
    *,
    expires: str | None,
    date: float | None,
    response_time: float,
    shared: bool = False,
) -> float | None:
    """The origin's explicit freshness lifetime in seconds (RFC 9111 §4.2.1), or None.

    The first of: ``s-maxage`` in a shared cache; ``max-age``; ``Expires`` minus ``Date``. None
    when the response has none of them (a heuristic lifetime may then apply). ``expires`` is the
    ``Expires`` value as received (lines joined with ", ", so two lines read as invalid, which
    §4.2.1 allows: "the response should be considered stale"); ``date`` is the parsed ``Date``.

    * An invalid ``Expires`` gives 0: already stale (§5.3 "MUST interpret invalid date formats,
      especially the value "0", as representing a time in the past").
    * Without a valid ``Date``, ``response_time`` stands for it (RFC 9110 §6.6.1: a recipient
      "MUST record the time it was received" when there is none, and "MAY replace" an invalid
      one with it).
    * An ``Expires`` before ``Date`` gives 0; one beyond 2**31 seconds is capped (§1.2.2).

    >>> from coalesce_client.spec.cache_control import parse_response_cache_control
    >>> cc = parse_response_cache_control("max-age=60, s-maxage=600")
    >>> freshness_lifetime(cc, expires=None, date=None, response_time=0.0)
    60.0
    >>> freshness_lifetime(cc, expires=None, date=None, response_time=0.0, shared=True)
    600.0
    >>> freshness_lifetime(ResponseDirectives(), expires="0", date=None, response_time=0.0)
    0.0
    """
    if shared and directives.s_maxage is not None:
        return float(directives.s_maxage)
    if directives.max_age is not None:
        return float(directives.max_age)  # §5.3: with max-age, Expires "MUST" be ignored
    if expires is None:
        return None
    # The two-digit year of an RFC 850 Expires is read against the time the response arrived,
    # so that the same response always gets the same lifetime.
    at = parse_http_date(expires, now=response_time)
    if at is None:
        return 0.0
    base = response_time if date is None else date
    return float(min(max(0.0, at - base), DELTA_SECONDS_MAX))


def heuristic_lifetime(
    status: int,
    *,
    date: float | None,
    last_modified: float | None,
    heuristic_max: float,
    public: bool = False,
) -> float | None:
    """A heuristic freshness lifetime (RFC 9111 §4.2.2): 10% of ``Date`` minus ``Last-Modified``.

    For use only when the response has no explicit lifetime ("A cache MUST NOT use heuristics
    to determine freshness when an explicit expiration time is present"), and only for the
    heuristically cacheable statuses of RFC 9110 §15.1, or any status marked ``public`` (§4.2.2:
    responses "marked as explicitly cacheable (e.g., with a "public" response directive)").
    At most ``heuristic_max``, never below 0 (a ``Last-Modified`` after ``Date``). None when the
    status does not qualify, or ``date`` or ``last_modified`` is unknown. ``date`` is the parsed
    ``Date``, or the time the response was received (RFC 9110 §6.6.1).

    >>> heuristic_lifetime(200, date=1_000_000.0, last_modified=0.0, heuristic_max=86_400)
    86400.0
    >>> heuristic_lifetime(200, date=1_000.0, last_modified=0.0, heuristic_max=86_400)
    100.0
    >>> heuristic_lifetime(500, date=1_000.0, last_modified=0.0, heuristic_max=86_400) is None
    True
    """
    if status not in HEURISTICALLY_CACHEABLE and not public:
        return None
    if date is None or last_modified is None:
        return None
    return float(max(0.0, min((date - last_modified) * _HEURISTIC_FRACTION, heuristic_max)))


def current_age(
    age_header: str | None,
    date: float | None,
    *,
    request_time: float,
    response_time: float,
    now: float,
) -> float:
    """The current age of a response in seconds, exactly as RFC 9111 §4.2.3 computes it.

    ``age_header`` is the ``Age`` value as received (lines joined with ", "); ``date`` the parsed
    ``Date`` (None: absent or invalid, and ``response_time`` stands for it, RFC 9110 §6.6.1);
    ``request_time`` when the request that brought the response was sent, ``response_time``
    when the response arrived, ``now`` the time of the question.

    ``Age`` is read per §5.1: of a list, the first member ("SHOULD use the first member of the
    field value, discarding subsequent ones"); a value that is not delta-seconds (``-5``,
    ``1.5``, ``abc``) is ignored ("a cache SHOULD ignore the field"), i.e. taken as 0, which
    leaves the age to the ``Date`` and the request's own delay.

    >>> current_age("10", 995.0, request_time=1000.0, response_time=1002.0, now=1010.0)
    20.0
    """
    age_value = _age_value(age_header)
    date_value = response_time if date is None else date
    apparent_age = max(0.0, response_time - date_value)
    response_delay = response_time - request_time
    corrected_age_value = age_value + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = now - response_time
    return corrected_initial_age + resident_time


_DELTA_SECONDS_MAX_TEXT = str(DELTA_SECONDS_MAX)


def age_header(age: float) -> str:
    """The ``Age`` field value of a replay that is ``age`` seconds old (RFC 9111 §5.1).

    Delta-seconds: whole seconds, rounded down, never negative (a clock that went back), at most
    2**31 (§1.2.2: a value that overflows "MUST" be taken as 2147483648).

    >>> age_header(14.99), age_header(-0.5), age_header(1e12)
    ('14', '0', '2147483648')
    """
    # No min(): a builtin call with its argument parsing costs more than the rest (a replay
    # makes one of these per hit, in both faces).
    if age > 0.0:
        return str(int(age)) if age < DELTA_SECONDS_MAX else _DELTA_SECONDS_MAX_TEXT
    return "0"  # a clock that went back (and NaN)


def _age_value(age_header: str | None) -> int:
    if age_header is None:
        return 0
    first = age_header.split(",", 1)[0].strip(" \t")  # §5.1: the first member of a list
    value = delta_seconds(first)
    return 0 if value is None else value  # §5.1: an invalid Age is ignored


def is_fresh(lifetime: float | None, age: float) -> bool:
    """Whether a response of this lifetime and age is fresh: ``lifetime > age`` (RFC 9111 §4.2).

    No lifetime (None) is never fresh; an age equal to the lifetime is already stale.

    >>> is_fresh(60.0, 59.5), is_fresh(60.0, 60.0), is_fresh(None, 0.0)
    (True, False, False)
    """
    return lifetime is not None and lifetime > age
