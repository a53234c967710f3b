"""spec/lifetime.py: every row of its tables, as plain data (no event loop, no clock).

The rows are those of the module's header: ``decide_lifetime`` (rows 1 to 15), the stale windows
(three rows), ``is_private``, and the configured lifetime's precedence.
"""

from __future__ import annotations

import email.utils
import fnmatch
import re
from dataclasses import replace

import pytest

from coalesce_client.spec.freshness import (
    FreshnessRules,
    Lifetime,
    ResponseFacts,
    StaleWindows,
    UrlTtl,
)
from coalesce_client.spec.lifetime import (
    NOT_STORED,
    NotStored,
    configured_lifetime,
    decide_lifetime,
    is_private,
    lifetime,
    may_serve_stale,
    stale_windows,
    url_lifetime,
)

T = 1_780_000_000.0  # when every response here arrived; its Date headers are relative to it

TTL = FreshnessRules(
    freshness="ttl",
    respect_cache_control=True,
    cacheable_statuses=frozenset({200, 203, 300, 301, 308}),
    status_ttl={},
    url_ttl=(),
    heuristic_max=86_400.0,
    keep_stale=600.0,
    stale=StaleWindows(0.0, 0.0),
    targeted_cache_control=(),
)
HTTP = replace(TTL, freshness="http")
IGNORES_ORIGIN = replace(TTL, respect_cache_control=False)


def http_date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def facts(status: int = 200, *headers: tuple[str, str], **call: object) -> ResponseFacts:
    """A response of ``status`` with ``headers`` that arrived at ``T``, for a session ttl of 60;
    ``call`` replaces any other field (``call_ttl``, ``url``, ``shared_cache``...)."""
    base = ResponseFacts(status, headers, request_time=T, response_time=T, session_ttl=60.0)
    return replace(base, **call)  # type: ignore[arg-type]


def cc(value: str) -> tuple[str, str]:
    return ("Cache-Control", value)


ETAG = ("ETag", '"v1"')
DATED = ("Date", http_date(T))


# -- decide_lifetime: one case (at least) per row of the table -----------------------------------

ROWS: list[tuple[str, FreshnessRules, ResponseFacts, Lifetime | NotStored]] = [
    # 1: status_ttl={status: 0} wins over everything, a call's cache_ttl included, in both modes
    ("1 ttl", replace(TTL, status_ttl={200: 0.0}), facts(call_ttl=30), NotStored("ttl 0")),
    (
        "1 http",
        replace(HTTP, status_ttl={200: 0.0}),
        facts(200, cc("max-age=60")),
        NotStored("ttl 0"),
    ),
    # 2: no-store, read only when the origin's directives are read; must-understand overrides it
    ("2 ttl", TTL, facts(200, cc("no-store"), ETAG, call_ttl=30), NotStored("no-store")),
    ("2 http", HTTP, facts(200, cc("max-age=60, no-store")), NotStored("no-store")),
    ("2 not read", IGNORES_ORIGIN, facts(200, cc("no-store")), Lifetime(60.0, 0.0)),
    (
        "2 understood",
        HTTP,
        facts(200, cc("must-understand, no-store, max-age=60")),
        Lifetime(60.0, 0.0),
    ),
    (
        "2 not understood",
        HTTP,
        facts(206, cc("must-understand, no-store, max-age=60")),
        NotStored("no-store"),
    ),
    # 3: private, in a shared cache only
    ("3 shared", TTL, facts(200, cc("private"), shared_cache=True), NotStored("private")),
    ("3 private cache", TTL, facts(200, cc("private")), Lifetime(60.0, 0.0)),
    (
        "3 not read",
        IGNORES_ORIGIN,
        facts(200, cc("private"), shared_cache=True),
        Lifetime(60.0, 0.0),
    ),
    # 4: "ttl" mode stores cacheable_statuses and status_ttl's statuses only, whatever cache_ttl
    # says
    ("4", TTL, facts(500, call_ttl=30), NotStored("status not cacheable")),
    ("4 status_ttl adds", replace(TTL, status_ttl={404: 10.0}), facts(404), Lifetime(10.0, 0.0)),
    ("4 not in http mode", HTTP, facts(500, cc("max-age=5")), Lifetime(5.0, 0.0)),
    # 5: a configured lifetime of 0 (or less) in "ttl" mode
    ("5 session", TTL, facts(200, session_ttl=0.0), NotStored("ttl 0")),
    ("5 call", TTL, facts(200, ETAG, call_ttl=0.0), NotStored("ttl 0")),
    ("5 negative", TTL, facts(200, call_ttl=-5.0), NotStored("ttl 0")),
    # 6: "http" mode never stores a 206 or a 304 as a complete response (RFC 9111 §3)
    ("6 206", HTTP, facts(206, cc("max-age=5")), NotStored("status not cacheable")),
    ("6 304", HTTP, facts(304, cc("max-age=5"), ETAG), NotStored("status not cacheable")),
    # 7: no-cache: fresh 0, kept for revalidation with a validator, else stale on arrival (row 14)
    ("7 validator", TTL, facts(200, cc("no-cache"), ETAG), Lifetime(0.0, 600.0)),
    ("7 no validator", HTTP, facts(200, cc("no-cache, max-age=60")), NotStored("stale on arrival")),
    ("7 not read", IGNORES_ORIGIN, facts(200, cc("no-cache"), ETAG), Lifetime(60.0, 600.0)),
    # 8: "ttl" mode, the origin's remaining freshness caps the configured lifetime
    ("8 cap", TTL, facts(200, DATED, cc("max-age=30"), ("Age", "20")), Lifetime(10.0, 0.0)),
    ("8 no raise", TTL, facts(200, DATED, cc("max-age=600")), Lifetime(60.0, 0.0)),
    ("8 expires", TTL, facts(200, DATED, ("Expires", http_date(T + 20))), Lifetime(20.0, 0.0)),
    (
        "8 shared",
        TTL,
        facts(200, cc("max-age=30, s-maxage=5"), shared_cache=True),
        Lifetime(5.0, 0.0),
    ),
    # 9: "ttl" mode otherwise: the configured lifetime
    ("9", TTL, facts(200, DATED), Lifetime(60.0, 0.0)),
    ("9 not read", IGNORES_ORIGIN, facts(200, cc("max-age=5")), Lifetime(60.0, 0.0)),
    ("9 call", TTL, facts(200, call_ttl=300.0), Lifetime(300.0, 0.0)),
    # 10: "http" mode, the origin's explicit lifetime minus the age on arrival
    ("10", HTTP, facts(200, DATED, cc("max-age=600"), ("Age", "100")), Lifetime(500.0, 0.0)),
    (
        "10 apparent age",
        HTTP,
        facts(200, ("Date", http_date(T - 25)), cc("max-age=30")),
        Lifetime(5.0, 0.0),
    ),
    # 11: "http" mode without an explicit lifetime: only heuristically cacheable or public statuses
    (
        "11",
        HTTP,
        facts(500, DATED, ("Last-Modified", http_date(T - 1000))),
        NotStored("status not cacheable"),
    ),
    (
        "11 public",
        HTTP,
        facts(599, DATED, ("Last-Modified", http_date(T - 1000)), cc("public")),
        Lifetime(100.0, 600.0),
    ),
    # 12: a heuristic lifetime: 10% of Date - Last-Modified, at most heuristic_max
    ("12", HTTP, facts(200, DATED, ("Last-Modified", http_date(T - 1000))), Lifetime(100.0, 600.0)),
    (
        "12 capped",
        replace(HTTP, heuristic_max=30.0),
        facts(200, DATED, ("Last-Modified", http_date(T - 1000))),
        Lifetime(30.0, 600.0),
    ),
    # 13: "http" mode otherwise: the configured lifetime minus the age on arrival
    ("13", HTTP, facts(200, DATED), Lifetime(60.0, 0.0)),
    ("13 aged", HTTP, facts(200, DATED, ("Age", "45")), Lifetime(15.0, 0.0)),
    ("13 ttl 0", HTTP, facts(200, DATED, session_ttl=0.0), NotStored("ttl 0")),
    # 14: fresh 0, and no validator or nothing kept
    ("14 no validator", TTL, facts(200, cc("max-age=0")), NotStored("stale on arrival")),
    ("14 aged out", HTTP, facts(200, DATED, ("Age", "100")), NotStored("stale on arrival")),
    (
        "14 nothing kept",
        replace(TTL, keep_stale=0.0),
        facts(200, cc("max-age=0"), ETAG),
        NotStored("stale on arrival"),
    ),
    # 15: stored; kept is the longest of keep_stale (with a validator) and the stale windows
    ("15 keep_stale", TTL, facts(200, cc("max-age=0"), ETAG), Lifetime(0.0, 600.0)),
    ("15 window", TTL, facts(200, cc("stale-if-error=900")), Lifetime(60.0, 900.0)),
    (
        "15 policy window",
        replace(TTL, stale=StaleWindows(0.0, 90.0)),
        facts(200, cc("stale-while-revalidate=30")),
        Lifetime(60.0, 90.0),
    ),
    (
        "15 forbidden",
        TTL,
        facts(200, cc("must-revalidate, stale-if-error=900")),
        Lifetime(60.0, 0.0),
    ),
    (
        "15 last-modified",
        replace(TTL, keep_stale=5.0),
        facts(200, ("Last-Modified", http_date(T - 9))),
        Lifetime(60.0, 5.0),
    ),
]


@pytest.mark.parametrize(
    ("rules", "response", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_decide_lifetime_row_by_row(
    rules: FreshnessRules, response: ResponseFacts, expected: Lifetime | NotStored
) -> None:
    assert decide_lifetime(response, rules) == expected
    # lifetime() is the same decision as a Lifetime alone.
    assert lifetime(response, rules) == (
        NOT_STORED if isinstance(expected, NotStored) else expected
    )


def test_every_row_of_the_table_has_a_case() -> None:
    rows = {int(name.split()[0]) for name, *_ in ROWS}
    assert rows == set(range(1, 16))


def test_a_targeted_field_decides_in_a_shared_cache_only() -> None:
    cdn = replace(HTTP, targeted_cache_control=("cdn-cache-control",))
    response = (cc("max-age=100"), ("CDN-Cache-Control", "no-store"))
    assert decide_lifetime(facts(200, *response, shared_cache=True), cdn) == NotStored("no-store")
    assert decide_lifetime(facts(200, *response), cdn) == Lifetime(100.0, 0.0)


def test_the_request_time_counts_in_the_age_on_arrival() -> None:
    # RFC 9111 §4.2.3: the response delay (response_time - request_time) is added to Age.
    slow = facts(200, DATED, cc("max-age=30"), ("Age", "10"), request_time=T - 5)
    assert decide_lifetime(slow, HTTP) == Lifetime(15.0, 0.0)


# -- the configured lifetime: cache_ttl, then status_ttl, then url_ttl, then the session's ttl ---

URL_TTL = tuple(
    UrlTtl(re.compile(fnmatch.translate(pattern)), seconds)
    for pattern, seconds in (("a.com/static/*", 3600.0), ("*/live/*", 0.0))
)
CONFIGURED = replace(TTL, status_ttl={404: 5.0}, url_ttl=URL_TTL)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (facts(200, call_ttl=7.0, url="b.com/live/1"), 7.0),  # the call's beats url_ttl 0
        (facts(404, url="a.com/static/x"), 5.0),  # status_ttl beats url_ttl
        (facts(200, url="a.com/static/x"), 3600.0),  # the first matching pattern
        (facts(200, url="b.com/live/1"), 0.0),
        (facts(200, url="c.org/other"), 60.0),  # no pattern: the session's
        (facts(200), 60.0),  # no URL: the session's
        (facts(500, call_ttl=30.0), None),  # "ttl" mode: a status it does not store
    ],
)
def test_configured_lifetime_precedence(response: ResponseFacts, expected: float | None) -> None:
    assert configured_lifetime(response, CONFIGURED) == expected


def test_http_mode_has_a_configured_lifetime_for_any_status() -> None:
    assert configured_lifetime(facts(500), replace(CONFIGURED, freshness="http")) == 60.0


def test_url_lifetime_in_insertion_order() -> None:
    assert url_lifetime("a.com/static/live/x", URL_TTL, 1.0) == 3600.0
    assert url_lifetime("x.com/live/y", URL_TTL, 1.0) == 0.0
    assert url_lifetime("x.com/y", URL_TTL, 1.0) == 1.0


# -- stale_windows and may_serve_stale: the module's second table --------------------------------

POLICY_WINDOWS = StaleWindows(10.0, 20.0)

STALE_ROWS: list[tuple[str, FreshnessRules, tuple[str, str], bool, StaleWindows, bool]] = [
    # origin not read: the policy's windows, whatever the origin says
    (
        "not read",
        replace(IGNORES_ORIGIN, stale=POLICY_WINDOWS),
        cc("must-revalidate"),
        False,
        POLICY_WINDOWS,
        True,
    ),
    # read, and the origin forbids stale
    (
        "no-cache",
        replace(TTL, stale=POLICY_WINDOWS),
        cc("no-cache"),
        False,
        StaleWindows(0.0, 0.0),
        False,
    ),
    (
        "must-revalidate",
        replace(HTTP, stale=POLICY_WINDOWS),
        cc("must-revalidate"),
        False,
        StaleWindows(0.0, 0.0),
        False,
    ),
    (
        "proxy-revalidate shared",
        replace(TTL, stale=POLICY_WINDOWS),
        cc("proxy-revalidate"),
        True,
        StaleWindows(0.0, 0.0),
        False,
    ),
    (
        "s-maxage shared",
        replace(TTL, stale=POLICY_WINDOWS),
        cc("s-maxage=5"),
        True,
        StaleWindows(0.0, 0.0),
        False,
    ),
    # read, not forbidden: the origin's windows where given, else the policy's
    (
        "proxy-revalidate private",
        replace(TTL, stale=POLICY_WINDOWS),
        cc("proxy-revalidate"),
        False,
        POLICY_WINDOWS,
        True,
    ),
    (
        "origin's swr",
        replace(TTL, stale=POLICY_WINDOWS),
        cc("stale-while-revalidate=1"),
        False,
        StaleWindows(1.0, 20.0),
        True,
    ),
    (
        "origin's both",
        replace(TTL, stale=POLICY_WINDOWS),
        cc("stale-while-revalidate=1, stale-if-error=2"),
        True,
        StaleWindows(1.0, 2.0),
        True,
    ),
]


@pytest.mark.parametrize(
    ("rules", "header", "shared", "windows", "allowed"),
    [r[1:] for r in STALE_ROWS],
    ids=[r[0] for r in STALE_ROWS],
)
def test_stale_windows_and_may_serve_stale_row_by_row(
    rules: FreshnessRules,
    header: tuple[str, str],
    shared: bool,
    windows: StaleWindows,
    allowed: bool,
) -> None:
    assert stale_windows((header,), rules, shared_cache=shared) == windows
    assert may_serve_stale((header,), rules, shared_cache=shared) is allowed


# -- is_private ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "private"),
    [
        ((("Set-Cookie", "a=1"),), 200, True),
        ((cc("private"),), 200, True),
        ((cc('private="X-A"'),), 200, True),  # the qualified form, as the unqualified one
        ((cc("no-store"),), 200, True),
        ((cc("no-store, must-understand"),), 200, False),  # a status we implement
        ((cc("no-store, must-understand"),), 206, True),  # one we do not
        ((cc("no-store, must-understand"),), None, True),  # status unknown
        ((cc("public, max-age=60"),), 200, False),
        ((), 200, False),
    ],
)
def test_is_private(
    headers: tuple[tuple[str, str], ...], status: int | None, private: bool
) -> None:
    assert is_private(headers, status, TTL) is private


def test_is_private_reads_the_targeted_field_when_one_is_named() -> None:
    cdn = replace(TTL, targeted_cache_control=("cdn-cache-control",))
    assert is_private((cc("max-age=9"), ("CDN-Cache-Control", "private")), 200, cdn)
    assert not is_private((cc("private"), ("CDN-Cache-Control", "max-age=9")), 200, cdn)
    assert not is_private((cc("max-age=9"), ("CDN-Cache-Control", "private")), 200, TTL)
