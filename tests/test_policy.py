"""policy.py: option checks, the TTL a response gets, Cache-Control, and which headers are kept."""

from __future__ import annotations

import dataclasses
import email.utils
import math
from typing import Any

import pytest

from coalesce_client.core import policy as policy_module
from coalesce_client.core.policy import CachePolicy
from coalesce_client.spec.freshness import Lifetime, ResponseFacts
from coalesce_client.spec.lifetime import NotStored

# -- validation -----------------------------------------------------------------------------------

BAD_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("methods", {"methods": "GET"}),
    ("methods", {"methods": ["GET", ""]}),
    ("methods", {"methods": ["GET", 1]}),
    ("cacheable_statuses", {"cacheable_statuses": {99}}),
    ("cacheable_statuses", {"cacheable_statuses": {600}}),
    ("cacheable_statuses", {"cacheable_statuses": {200, True}}),
    ("cacheable_statuses", {"cacheable_statuses": {200.0}}),
    ("cacheable_statuses", {"cacheable_statuses": "200"}),
    ("status_ttl", {"status_ttl": [(404, 10)]}),
    ("status_ttl", {"status_ttl": {404: -1}}),
    ("status_ttl", {"status_ttl": {404: math.nan}}),
    ("status_ttl", {"status_ttl": {404: math.inf}}),
    ("status_ttl", {"status_ttl": {404: "10"}}),
    ("status_ttl", {"status_ttl": {404: None}}),
    ("status_ttl", {"status_ttl": {404: True}}),
    ("status_ttl", {"status_ttl": {99: 10}}),
    ("status_ttl", {"status_ttl": {600: 10}}),
    ("status_ttl", {"status_ttl": {True: 10}}),
    ("status_ttl", {"status_ttl": {"404": 10}}),
    ("strip_headers", {"strip_headers": [""]}),
    ("strip_headers", {"strip_headers": ["*"]}),
    ("strip_headers", {"strip_headers": ["x:y*"]}),
    ("strip_headers", {"strip_headers": ["x-é"]}),
    ("strip_headers", {"strip_headers": [None]}),
    ("strip_headers", {"strip_headers": "set-cookie"}),
    ("max_body_size", {"max_body_size": -1}),
    ("max_body_size", {"max_body_size": "8MiB"}),
    ("max_body_size", {"max_body_size": None}),
    ("max_body_size", {"max_body_size": True}),
    ("max_body_size", {"max_body_size": math.nan}),
    ("respect_cache_control", {"respect_cache_control": 1}),
    ("respect_cache_control", {"respect_cache_control": "yes"}),
    ("respect_cache_control", {"respect_cache_control": None}),
    ("sort_query", {"sort_query": 0}),
    ("ignored_params", {"ignored_params": "utm_source"}),
    ("ignored_params", {"ignored_params": b"utm_source"}),
    ("ignored_params", {"ignored_params": ["utm_source", 1]}),
    ("should_store", {"should_store": 42}),
    ("should_store", {"should_store": "yes"}),
    ("credential_headers", {"credential_headers": "authorization"}),
    ("credential_headers", {"credential_headers": [""]}),
    ("credential_headers", {"credential_headers": ["x:y"]}),
    ("credential_headers", {"credential_headers": ["clé"]}),
    ("credential_headers", {"credential_headers": [1]}),
    ("pass_ttl", {"pass_ttl": -1}),
    ("pass_ttl", {"pass_ttl": math.nan}),
    ("pass_ttl", {"pass_ttl": math.inf}),
    ("pass_ttl", {"pass_ttl": "120"}),
    ("pass_ttl", {"pass_ttl": None}),
    ("pass_ttl", {"pass_ttl": True}),
    # Values that used to escape as TypeError or OverflowError (issue 9).
    ("methods", {"methods": None}),
    ("cacheable_statuses", {"cacheable_statuses": None}),
    ("strip_headers", {"strip_headers": None}),
    ("ignored_params", {"ignored_params": None}),
    ("ignored_params", {"ignored_params": 3}),
    ("credential_headers", {"credential_headers": None}),
    ("status_ttl", {"status_ttl": None}),
    ("status_ttl", {"status_ttl": {404: 10**400}}),
    ("pass_ttl", {"pass_ttl": 10**400}),
    ("max_body_size", {"max_body_size": 2**63}),
    ("max_body_size", {"max_body_size": 10**400}),
    ("max_body_size", {"max_body_size": 1.5}),
    ("max_body_size", {"max_body_size": math.inf}),
    ("should_store", {"should_store": "yes"}),
]


@pytest.mark.parametrize(
    ("option", "kwargs"),
    BAD_OPTIONS,
    ids=[f"{option}={kwargs[option]!r}" for option, kwargs in BAD_OPTIONS],
)
def test_bad_option_raises_value_error_naming_it(option: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=option):
        CachePolicy(**kwargs)


def test_default_policy_matches_the_design() -> None:
    p = CachePolicy()
    assert p.methods == {"GET", "HEAD"}
    assert p.cacheable_statuses == {200, 203, 300, 301, 308}
    assert p.status_ttl == {}
    assert p.max_body_size == 8 * 1024 * 1024
    assert p.respect_cache_control is True
    assert p.sort_query is True
    assert p.credential_headers == (
        "authorization",
        "cookie",
        "proxy-authorization",
        "x-api-key",
        "x-auth-token",
        "api-key",
    )
    assert p.pass_ttl == 120


def test_good_edge_values_are_accepted() -> None:
    p = CachePolicy(
        methods=[],
        cacheable_statuses={100, 599},
        status_ttl={100: 0, 599: 1.5},
        strip_headers=(),
        max_body_size=0,
        ignored_params=[],
        should_store=lambda response: True,
        credential_headers=(),
        pass_ttl=0,
    )
    assert p.cacheable_statuses == {100, 599}
    assert p.status_ttl == {100: 0.0, 599: 1.5}
    assert p.credential_headers == ()


def test_methods_are_upper_cased() -> None:
    assert CachePolicy(methods={"get", "Post", "HEAD"}).methods == {"GET", "POST", "HEAD"}


def test_credential_headers_are_lower_cased_and_deduplicated() -> None:
    p = CachePolicy(credential_headers=["Authorization", "X-Api-Key", "authorization"])
    assert p.credential_headers == ("authorization", "x-api-key")


def test_collections_are_frozen_copies() -> None:
    statuses = [200]
    params = ["utm_source"]
    p = CachePolicy(cacheable_statuses=statuses, ignored_params=params)
    statuses.append(500)
    params.append("q")
    assert p.cacheable_statuses == frozenset({200})
    assert p.ignored_params == frozenset({"utm_source"})


def test_policy_is_frozen() -> None:
    p = CachePolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_body_size = 1  # type: ignore[misc]


# -- ttl_for: precedence --------------------------------------------------------------------------


def test_session_ttl_applies_to_a_cacheable_status() -> None:
    assert CachePolicy().ttl_for(200, [], session_ttl=60) == 60.0


def test_status_ttl_beats_session_ttl() -> None:
    assert CachePolicy(status_ttl={200: 10}).ttl_for(200, [], session_ttl=60) == 10.0


def test_call_ttl_beats_status_ttl() -> None:
    policy = CachePolicy(status_ttl={200: 10})
    assert policy.ttl_for(200, [], session_ttl=60, call_ttl=5) == 5.0


def test_call_ttl_beats_session_ttl() -> None:
    assert CachePolicy().ttl_for(200, [], session_ttl=60, call_ttl=300) == 300.0


@pytest.mark.parametrize("status", [201, 204, 302, 404, 500, 503])
def test_status_outside_cacheable_and_status_ttl_is_not_stored(status: int) -> None:
    assert CachePolicy().ttl_for(status, [], session_ttl=60) == 0.0


@pytest.mark.parametrize("status", [404, 500, 503])
def test_call_ttl_does_not_make_an_uncacheable_status_storable(status: int) -> None:
    # A status outside cacheable_statuses and status_ttl is never stored: a call's cache_ttl
    # chooses how long, not whether; an error page must not be kept for cache_ttl.
    assert CachePolicy().ttl_for(status, [], session_ttl=60, call_ttl=30) == 0.0


def test_status_ttl_adds_a_status() -> None:
    policy = CachePolicy(status_ttl={404: 10})
    assert policy.ttl_for(404, [], session_ttl=60) == 10.0
    assert policy.ttl_for(200, [], session_ttl=60) == 60.0


def test_status_ttl_zero_disables_a_default_status() -> None:
    policy = CachePolicy(status_ttl={200: 0})
    assert policy.ttl_for(200, [], session_ttl=60) == 0.0
    assert policy.ttl_for(203, [], session_ttl=60) == 60.0


@pytest.mark.parametrize(("session_ttl", "call_ttl"), [(0, None), (60, 0), (60, -5), (-1, None)])
def test_zero_or_negative_ttl_means_not_stored(session_ttl: float, call_ttl: float | None) -> None:
    assert CachePolicy().ttl_for(200, [], session_ttl=session_ttl, call_ttl=call_ttl) == 0.0


def test_ttl_for_returns_a_float() -> None:
    ttl = CachePolicy().ttl_for(200, [], session_ttl=60)
    assert type(ttl) is float


# -- ttl_for: Cache-Control -----------------------------------------------------------------------


def cc_ttl(
    value: str, *, shared: bool = False, respect: bool = True, session_ttl: float = 60
) -> float:
    policy = CachePolicy(respect_cache_control=respect)
    return policy.ttl_for(
        200, [("Cache-Control", value)], session_ttl=session_ttl, shared_cache=shared
    )


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize(
    "value", ["no-store", "no-cache", "max-age=0", 'no-cache="Set-Cookie"', "public, no-store"]
)
def test_cache_control_forbidding_storage_gives_zero(value: str, shared: bool) -> None:
    assert cc_ttl(value, shared=shared) == 0.0


def test_no_store_beats_a_call_ttl() -> None:
    policy = CachePolicy()
    headers = [("Cache-Control", "no-store")]
    assert policy.ttl_for(200, headers, session_ttl=60, call_ttl=30) == 0.0


def test_max_age_caps_the_ttl() -> None:
    assert cc_ttl("max-age=5") == 5.0


def test_max_age_larger_than_ttl_does_not_raise_it() -> None:
    assert cc_ttl("max-age=3600") == 60.0


def test_max_age_caps_status_ttl_and_call_ttl() -> None:
    policy = CachePolicy(status_ttl={404: 600})
    headers = [("Cache-Control", "max-age=7")]
    assert policy.ttl_for(404, headers, session_ttl=60) == 7.0
    assert policy.ttl_for(200, headers, session_ttl=60, call_ttl=600) == 7.0


def test_cache_control_header_name_is_case_insensitive() -> None:
    headers = [("CACHE-CONTROL", "max-age=5")]
    assert CachePolicy().ttl_for(200, headers, session_ttl=60) == 5.0


def test_cache_control_split_over_two_headers_is_read_as_one() -> None:
    headers = [("Cache-Control", "public"), ("cache-control", "max-age=5")]
    assert CachePolicy().ttl_for(200, headers, session_ttl=60) == 5.0
    headers = [("Cache-Control", "max-age=5"), ("Cache-Control", "no-store")]
    assert CachePolicy().ttl_for(200, headers, session_ttl=60) == 0.0


def test_max_age_repeated_over_two_headers_gives_zero() -> None:
    headers = [("Cache-Control", "max-age=30"), ("Cache-Control", "max-age=30")]
    assert CachePolicy().ttl_for(200, headers, session_ttl=60) == 0.0


@pytest.mark.parametrize("value", ["max-age=abc", "max-age=30, max-age=30", "max-age=-1"])
def test_invalid_max_age_gives_zero(value: str) -> None:
    assert cc_ttl(value) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "no-store",
        "no-cache",
        "max-age=0",
        "max-age=5",
        "max-age=abc",
        "private",
        "s-maxage=0",
        "no-store, private, max-age=0, s-maxage=0",
    ],
)
@pytest.mark.parametrize("shared", [False, True])
def test_respect_cache_control_false_ignores_it(value: str, shared: bool) -> None:
    assert cc_ttl(value, respect=False, shared=shared) == 60.0


def test_shared_cache_does_not_store_private() -> None:
    assert cc_ttl("private, max-age=30", shared=True) == 0.0
    assert cc_ttl('private="Set-Cookie"', shared=True) == 0.0


def test_private_cache_stores_private() -> None:
    assert cc_ttl("private") == 60.0
    assert cc_ttl("private, max-age=30") == 30.0


def test_shared_cache_prefers_s_maxage_over_max_age() -> None:
    assert cc_ttl("max-age=5, s-maxage=30", shared=True) == 30.0
    assert cc_ttl("max-age=30, s-maxage=5", shared=True) == 5.0
    assert cc_ttl("max-age=30, s-maxage=0", shared=True) == 0.0


def test_shared_cache_s_maxage_does_not_raise_the_ttl() -> None:
    assert cc_ttl("s-maxage=3600", shared=True) == 60.0


def test_shared_cache_uses_max_age_without_s_maxage() -> None:
    assert cc_ttl("max-age=5", shared=True) == 5.0


def test_private_cache_ignores_s_maxage() -> None:
    assert cc_ttl("s-maxage=5") == 60.0
    assert cc_ttl("max-age=30, s-maxage=5") == 30.0
    assert cc_ttl("s-maxage=0") == 60.0


# -- Cache-Control as the policy reads it (the parser itself: tests/test_freshness.py) -----------


@pytest.mark.parametrize(
    "value",
    [
        "max-age=abc",
        "max-age=",
        "max-age=-1",
        "max-age=1.5",
        "max-age=+60",
        "max-age = 60",
        "max-age=60, max-age=30",
        "max-age=\u00b2",
        "max-age=\uff16\uff10",
    ],
)
def test_an_invalid_or_conflicting_max_age_is_not_stored(value: str) -> None:
    # RFC 9111 §4.2.1: invalid freshness information makes the response stale.
    assert CachePolicy().ttl_for(200, [("Cache-Control", value)], session_ttl=60) == 0


def test_several_cache_control_lines_are_read_together() -> None:
    headers = [("Cache-Control", "public"), ("cache-control", "max-age=5")]
    assert CachePolicy().ttl_for(200, headers, session_ttl=60) == 5.0


# -- storable_headers -----------------------------------------------------------------------------


def test_default_strip_keeps_order_and_repeats_of_other_headers() -> None:
    headers = [
        ("Content-Type", "text/html"),
        ("Set-Cookie", "a=1"),
        ("Vary", "Accept"),
        ("set-cookie", "b=2"),
        ("Vary", "Origin"),
        ("Access-Control-Allow-Origin", "*"),
        ("X-RateLimit-Remaining", "9"),
        ("Link", "</a>"),
        ("ACCESS-CONTROL-MAX-AGE", "60"),
        ("x-ratelimit-limit", "10"),
        ("Link", "</b>"),
    ]
    assert CachePolicy().storable_headers(headers) == (
        ("Content-Type", "text/html"),
        ("Vary", "Accept"),
        ("Vary", "Origin"),
        ("Link", "</a>"),
        ("Link", "</b>"),
    )


@pytest.mark.parametrize(
    "name", ["Set-Cookie", "SET-COOKIE", "Access-Control-Expose-Headers", "X-RATELIMIT-RESET"]
)
def test_default_strip_headers_in_any_case(name: str) -> None:
    assert CachePolicy().storable_headers([(name, "v"), ("ETag", '"1"')]) == (("ETag", '"1"'),)


@pytest.mark.parametrize(
    "name",
    [
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Connection",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Something-New",
        "transfer-encoding",
        "PROXY-AUTHENTICATE",
    ],
)
@pytest.mark.parametrize("strip", [None, ()], ids=["default strip", "strip nothing"])
def test_hop_by_hop_headers_are_always_stripped(name: str, strip: tuple[str, ...] | None) -> None:
    policy = CachePolicy() if strip is None else CachePolicy(strip_headers=strip)
    headers = [("Content-Type", "text/plain"), (name, "x"), ("ETag", '"1"')]
    assert policy.storable_headers(headers) == (("Content-Type", "text/plain"), ("ETag", '"1"'))


def test_headers_named_by_connection_are_stripped() -> None:
    headers = [
        ("X-Conn-A", "1"),
        ("Content-Type", "text/plain"),
        ("Connection", "keep-alive, X-CONN-A ,x-conn-b"),
        ("x-conn-b", "2"),
        ("Connection", "X-Conn-C"),
        ("X-Conn-C", "3"),
        ("X-Conn-D", "4"),
    ]
    assert CachePolicy(strip_headers=()).storable_headers(headers) == (
        ("Content-Type", "text/plain"),
        ("X-Conn-D", "4"),
    )


def test_custom_strip_headers_replace_the_defaults() -> None:
    policy = CachePolicy(strip_headers=("Server",))
    headers = [("Server", "nginx"), ("Set-Cookie", "a=1"), ("Server-Timing", "db;dur=1")]
    # An exact name is not a prefix: Server-Timing stays.
    assert policy.storable_headers(headers) == (
        ("Set-Cookie", "a=1"),
        ("Server-Timing", "db;dur=1"),
    )


def test_custom_strip_header_with_trailing_star_is_a_prefix() -> None:
    policy = CachePolicy(strip_headers=("X-Internal-*",))
    headers = [
        ("X-Internal-Id", "1"),
        ("x-internal-trace", "2"),
        ("X-Internalish", "3"),
        ("X-Other", "4"),
    ]
    assert policy.storable_headers(headers) == (("X-Internalish", "3"), ("X-Other", "4"))


def test_storable_headers_of_nothing_is_nothing() -> None:
    assert CachePolicy().storable_headers([]) == ()


def test_storable_headers_accepts_a_one_shot_iterator() -> None:
    # The parameter is an Iterable: a generator (or multidict items iterator) must not lose headers.
    headers = [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("ETag", '"1"')]
    assert CachePolicy().storable_headers(iter(headers)) == (
        ("Content-Type", "text/plain"),
        ("ETag", '"1"'),
    )


def test_ttl_for_accepts_a_one_shot_iterator() -> None:
    headers = iter([("Cache-Control", "max-age=5")])
    assert CachePolicy().ttl_for(200, headers, session_ttl=60) == 5.0


# -- url_ttl --------------------------------------------------------------------------------------

URLS = {"api.example.com/static/*": 3600, "*/live/*": 0, "*.example.com/*": 30}


def test_url_ttl_first_matching_pattern_in_insertion_order() -> None:
    policy = CachePolicy(url_ttl=URLS)
    assert policy.ttl_for(200, [], session_ttl=60, url="api.example.com/static/a.js") == 3600
    assert policy.ttl_for(200, [], session_ttl=60, url="api.example.com/live/x") == 0
    assert policy.ttl_for(200, [], session_ttl=60, url="www.example.com/page?q=1") == 30
    assert policy.ttl_for(200, [], session_ttl=60, url="other.org/page") == 60
    assert policy.ttl_for(200, [], session_ttl=60) == 60  # no URL: the session's ttl


def test_url_ttl_precedence_call_then_status_then_url_then_session() -> None:
    policy = CachePolicy(url_ttl=URLS, status_ttl={404: 5})
    live = "api.example.com/live/x"
    assert policy.ttl_for(200, [], session_ttl=60, url=live, call_ttl=7) == 7  # beats url_ttl 0
    assert policy.ttl_for(404, [], session_ttl=60, url=live) == 5  # status_ttl beats url_ttl
    static = "api.example.com/static/a.js"
    assert policy.ttl_for(200, [("Cache-Control", "max-age=10")], session_ttl=60, url=static) == 10


@pytest.mark.parametrize(
    "url_ttl",
    [None, [("a/*", 1)], {"a/*": -1}, {"a/*": math.inf}, {"a/*": "1"}, {3: 1}, {"a/*": 10**400}],
)
def test_bad_url_ttl_is_a_value_error_naming_it(url_ttl: Any) -> None:
    with pytest.raises(ValueError, match="url_ttl"):
        CachePolicy(url_ttl=url_ttl)


# -- freshness modes (RFC 9111 §4.2): lifetimes from the origin, the age on arrival --------------

T = 1_780_000_000.0  # the response time of these tests; Date headers are written relative to it


def http_date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def lifetime(policy: CachePolicy, status: int, **headers: str) -> float:
    pairs = [(name.replace("_", "-"), value) for name, value in headers.items()]
    return policy.ttl_for(status, pairs, session_ttl=60, request_time=T, response_time=T)


def test_ttl_mode_is_capped_by_the_origins_remaining_freshness() -> None:
    policy = CachePolicy()
    assert lifetime(policy, 200, Date=http_date(T), Cache_Control="max-age=600") == 60
    assert lifetime(policy, 200, Date=http_date(T), Cache_Control="max-age=30") == 30
    assert lifetime(policy, 200, Date=http_date(T), Cache_Control="max-age=30", Age="20") == 10
    assert lifetime(policy, 200, Date=http_date(T), Cache_Control="max-age=30", Age="30") == 0
    assert lifetime(policy, 200, Date=http_date(T - 25), Cache_Control="max-age=30") == 5
    assert lifetime(policy, 200, Date=http_date(T), Expires=http_date(T + 20)) == 20
    assert lifetime(policy, 200, Date=http_date(T), Expires=http_date(T - 1)) == 0
    assert lifetime(policy, 200, Date=http_date(T), Expires="0") == 0  # invalid: already stale
    assert lifetime(policy, 200, Date=http_date(T)) == 60  # no word from the origin


def test_http_mode_takes_the_origins_lifetime() -> None:
    policy = CachePolicy(freshness="http")
    assert lifetime(policy, 200, Date=http_date(T), Cache_Control="max-age=600") == 600
    assert lifetime(policy, 200, Date=http_date(T), Cache_Control="max-age=600", Age="100") == 500
    assert lifetime(policy, 500, Date=http_date(T), Cache_Control="max-age=5") == 5  # §3: any
    assert lifetime(policy, 206, Date=http_date(T), Cache_Control="max-age=5") == 0  # never
    # Heuristic: 10% of Date - Last-Modified, for heuristically cacheable statuses only.
    assert lifetime(policy, 200, Date=http_date(T), Last_Modified=http_date(T - 1000)) == 100
    assert lifetime(policy, 500, Date=http_date(T), Last_Modified=http_date(T - 1000)) == 0
    capped = CachePolicy(freshness="http", heuristic_max=30)
    assert lifetime(capped, 200, Date=http_date(T), Last_Modified=http_date(T - 1000)) == 30
    # Neither: the configured lifetime (ttl=0 stores only what the origin allows).
    assert lifetime(policy, 200, Date=http_date(T)) == 60
    assert policy.ttl_for(200, [], session_ttl=0, response_time=T) == 0
    assert lifetime(policy, 200, Date=http_date(T), Cache_Control="no-store, max-age=60") == 0


def test_freshness_options_are_checked() -> None:
    with pytest.raises(ValueError, match="freshness"):
        CachePolicy(freshness="rfc")
    with pytest.raises(ValueError, match="heuristic_max"):
        CachePolicy(heuristic_max=-1)


# -- issue 13: how long past freshness a response stays stored, and may be served stale ---------


@pytest.mark.parametrize(
    ("headers", "policy", "expected"),
    [
        ([("ETag", '"a"')], {}, (60.0, 600.0)),  # keep_stale for a validator
        ([("Last-Modified", "Sat, 01 Jan 2022 00:00:00 GMT")], {"keep_stale": 5}, (60.0, 5.0)),
        ([], {}, (60.0, 0.0)),  # nothing to revalidate with: gone at expiry
        ([("Cache-Control", "stale-if-error=900")], {}, (60.0, 900.0)),
        ([("Cache-Control", "stale-while-revalidate=30")], {"stale_if_error": 90}, (60.0, 90.0)),
        ([("Cache-Control", "must-revalidate, stale-if-error=900")], {}, (60.0, 0.0)),
        ([("Cache-Control", "no-cache"), ("ETag", '"a"')], {}, (0.0, 600.0)),
        ([("Cache-Control", "no-cache")], {}, (0.0, 0.0)),  # no validator: not stored
        ([("Cache-Control", "no-store"), ("ETag", '"a"')], {}, (0.0, 0.0)),
        ([("Cache-Control", "max-age=0"), ("ETag", '"a"')], {}, (0.0, 600.0)),  # stale on arrival
        ([("Cache-Control", "max-age=0")], {}, (0.0, 0.0)),
    ],
)
def test_lifetime_fresh_and_kept(
    headers: list[tuple[str, str]], policy: dict[str, float], expected: tuple[float, float]
) -> None:
    assert CachePolicy(**policy).lifetime(200, headers, session_ttl=60) == expected


def test_stale_windows_origin_wins_and_shared_caches_honour_proxy_revalidate() -> None:
    p = CachePolicy(stale_while_revalidate=10, stale_if_error=20)
    assert p.stale_windows([]) == (10.0, 20.0)
    assert p.stale_windows([("Cache-Control", "stale-while-revalidate=1")]) == (1.0, 20.0)
    for cc in ("proxy-revalidate", "s-maxage=5"):
        assert p.stale_windows([("Cache-Control", cc)]) == (10.0, 20.0)  # a private cache
        assert p.stale_windows([("Cache-Control", cc)], shared_cache=True) == (0.0, 0.0)
        assert not p.may_serve_stale([("Cache-Control", cc)], shared_cache=True)
    assert not p.may_serve_stale([("Cache-Control", "no-cache")])
    assert CachePolicy(respect_cache_control=False).may_serve_stale(
        [("Cache-Control", "must-revalidate")]
    )


@pytest.mark.parametrize("name", ["stale_while_revalidate", "stale_if_error", "keep_stale"])
@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "5", None])
def test_stale_options_are_checked(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=name):
        CachePolicy(**{name: bad})  # type: ignore[arg-type]


def test_must_understand_with_an_understood_status_overrides_no_store() -> None:
    """RFC 9111 §5.2.2.3: a cache that understands the status ignores no-store beside
    must-understand; for a status it does not (206: no ranges here), no-store stands."""
    cc = [("Cache-Control", "must-understand, no-store, max-age=60")]
    assert CachePolicy(freshness="http").ttl_for(200, cc, session_ttl=0) == 60.0
    assert CachePolicy(freshness="http").ttl_for(206, cc, session_ttl=0) == 0.0
    assert CachePolicy().ttl_for(200, [("Cache-Control", "no-store")], session_ttl=60) == 0.0


def test_public_allows_heuristic_freshness_for_any_status() -> None:
    """RFC 9111 §4.2.2: heuristics also for a response marked public, whatever its status."""
    headers = [
        ("Date", "Sat, 11 Jan 2025 00:00:00 GMT"),
        ("Last-Modified", "Wed, 01 Jan 2025 00:00:00 GMT"),
    ]
    http = CachePolicy(freshness="http")
    assert http.ttl_for(599, headers, session_ttl=0, response_time=1736553600.0) == 0.0
    public = [*headers, ("Cache-Control", "public")]
    assert http.ttl_for(599, public, session_ttl=0, response_time=1736553600.0) == 86400.0


def test_a_shared_cache_shares_no_store_must_understand_only_for_understood_statuses() -> None:
    p = CachePolicy()
    cc = [("Cache-Control", "no-store, must-understand")]
    assert not p.is_private(cc, 200)
    assert p.is_private(cc, 206) and p.is_private(cc)
    assert p.is_private([("Cache-Control", "no-store")], 200)


# -- RFC 9213: a targeted field (CDN-Cache-Control) in a shared cache ---------------------------

CDN = CachePolicy(freshness="http", targeted_cache_control=("CDN-Cache-Control",))


@pytest.mark.parametrize(
    ("headers", "shared", "private"),
    [
        ([("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=100")], 100.0, 0.0),
        ([("Cache-Control", "max-age=100"), ("CDN-Cache-Control", "no-store")], 0.0, 100.0),
        ([("Cache-Control", "max-age=100"), ("CDN-Cache-Control", "max-age=5")], 5.0, 100.0),
        # Expires is ignored beside a valid targeted field, whatever it says
        (
            [("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"), ("CDN-Cache-Control", "max-age=9")],
            9.0,
            0.0,
        ),
        # not a Structured Fields Dictionary: ignored, Cache-Control decides
        ([("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=100, &&&")], 0.0, 0.0),
        ([("Cache-Control", "max-age=7"), ("CDN-Cache-Control", "max-age =100")], 7.0, 7.0),
        # the wrong type: the directive is ignored (no lifetime left: not stored in http mode)
        ([("Cache-Control", "max-age=100"), ("CDN-Cache-Control", 'max-age="100"')], 0.0, 100.0),
        ([("CDN-Cache-Control", "max-age=99999999999")], 2.0**31, 0.0),
    ],
)
def test_targeted_cache_control_replaces_cache_control_in_a_shared_cache(
    headers: list[tuple[str, str]], shared: float, private: float
) -> None:
    assert CDN.ttl_for(200, headers, session_ttl=0, shared_cache=True) == shared
    assert CDN.ttl_for(200, headers, session_ttl=0) == private  # a private cache: not its field


def test_targeted_private_and_no_cache() -> None:
    fresh = ("Cache-Control", "max-age=10000")
    assert CDN.is_private([fresh, ("CDN-Cache-Control", "private")])
    assert not CDN.is_private([("Cache-Control", "private"), ("CDN-Cache-Control", "max-age=9")])
    no_cache = [fresh, ("CDN-Cache-Control", "no-cache")]
    assert CDN.lifetime(200, no_cache, session_ttl=0, shared_cache=True) == (0.0, 0.0)
    assert CachePolicy().is_private([fresh, ("CDN-Cache-Control", "private")]) is False  # off


# -- lifetime_of: the record-taking form (issue 18), and the keyword form's arguments ------------


def test_lifetime_of_takes_one_record_and_says_why_not() -> None:
    policy = CachePolicy(keep_stale=300)
    stored = ResponseFacts(200, (("ETag", '"a"'),), T, T, session_ttl=60, url="x/y")
    assert policy.lifetime_of(stored) == Lifetime(60.0, 300.0)
    no_store = ResponseFacts(200, (("Cache-Control", "no-store"),), T, T, session_ttl=60)
    assert policy.lifetime_of(no_store) == NotStored("no-store")
    private = ResponseFacts(200, (("Cache-Control", "private"),), T, T, 60, shared_cache=True)
    assert policy.lifetime_of(private) == NotStored("private")
    assert CachePolicy(url_ttl={"x/*": 0}).lifetime_of(stored) == NotStored("ttl 0")


def test_lifetime_and_ttl_for_agree_with_lifetime_of() -> None:
    policy = CachePolicy(freshness="http", stale_if_error=30)
    headers = (("Date", http_date(T)), ("Cache-Control", "max-age=90"), ("Age", "10"))
    facts = ResponseFacts(200, headers, T - 2, T, session_ttl=60, shared_cache=True)
    kw: dict[str, Any] = {"session_ttl": 60, "shared_cache": True}
    times = {"request_time": T - 2, "response_time": T}
    assert policy.lifetime(200, headers, **kw, **times) == policy.lifetime_of(facts)
    assert policy.ttl_for(200, headers, **kw, **times) == 78.0  # 90 - (10 + 2 s on the way)


def test_without_its_times_a_response_is_taken_as_received_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The one clock the policy reads: ttl_for and lifetime called without response_time.
    monkeypatch.setattr(policy_module.time, "time", lambda: T)
    headers = [("Date", http_date(T - 25)), ("Cache-Control", "max-age=30")]
    assert CachePolicy().ttl_for(200, headers, session_ttl=60) == 5.0


@pytest.mark.parametrize(
    "kwargs", [{"session_ttl": 60, "shared": True}, {"call_ttl": 5}], ids=["unknown", "missing"]
)
def test_ttl_for_refuses_an_unknown_or_missing_keyword(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="ttl_for"):
        CachePolicy().ttl_for(200, [], **kwargs)
