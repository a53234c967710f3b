"""spec/cache_control.py's ``field_values`` and spec/targeted.py's ``directives_of``: the one
pass over a response's headers that the lifetime reads (issue 20), as plain data.

Each row must read as the field-by-field reads did (``field_value``, ``effective_directives``):
any case of a name, the lines of a repeated field joined, absent fields absent.
"""

from __future__ import annotations

import email.utils
from dataclasses import replace

import pytest

from coalesce_client.spec.cache_control import field_value, field_values
from coalesce_client.spec.freshness import FreshnessRules, Lifetime, ResponseFacts, StaleWindows
from coalesce_client.spec.lifetime import NotStored, decide_lifetime
from coalesce_client.spec.targeted import (
    DIRECTIVE_FIELDS,
    directive_fields,
    directives_of,
    effective_directives,
)

T = 1_780_000_000.0
NAMES = ("cache-control", "expires", "date", "age", "etag", "cdn-cache-control")

HEADERS = [
    (),
    (("Date", "x"),),
    (("AGE", "1"), ("X-Other", "y"), ("age", "2")),
    (("Cache-Control", "max-age=5"), ("cache-control", "no-cache"), ("ETag", "")),
    (("CDN-Cache-Control", "no-store"), ("Expires", "0"), ("Cache-Control", "public")),
    (("eTaG", '"a"'), ("Expires", "0"), ("EXPIRES", "1")),
]


@pytest.mark.parametrize("headers", HEADERS)
def test_field_values_reads_as_field_value_for_each_name(
    headers: tuple[tuple[str, str], ...],
) -> None:
    found = field_values(headers, frozenset(NAMES))
    assert found == {n: v for n in NAMES if (v := field_value(headers, n)) is not None}


@pytest.mark.parametrize("headers", HEADERS)
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("targeted", [(), ("cdn-cache-control",)])
def test_directives_of_reads_as_effective_directives(
    headers: tuple[tuple[str, str], ...], shared: bool, targeted: tuple[str, ...]
) -> None:
    names = directive_fields(DIRECTIVE_FIELDS, targeted, shared=shared)
    gathered = directives_of(field_values(headers, names), targeted, shared=shared)
    assert gathered == effective_directives(headers, targeted, shared=shared)


TTL = FreshnessRules(
    freshness="ttl",
    respect_cache_control=True,
    cacheable_statuses=frozenset({200}),
    status_ttl={},
    url_ttl=(),
    heuristic_max=86_400.0,
    keep_stale=600.0,
    stale=StaleWindows(0.0, 0.0),
    targeted_cache_control=("cdn-cache-control",),
)
HTTP = replace(TTL, freshness="http")


def date(delta: float) -> str:
    return email.utils.formatdate(T + delta, usegmt=True)


# rules, shared, headers, expected: each row fails if a name is read in one case only, or a
# repeated field's later lines are lost, or a field is read that the rule does not count.
ROWS = [
    (TTL, False, (("CACHE-CONTROL", "max-age=30"),), Lifetime(30.0, 0.0)),
    (TTL, False, (("Cache-Control", "max-age=30"), ("cache-control", "no-cache")), "stale"),
    (TTL, False, (("ETAG", '"a"'), ("Cache-Control", "no-cache")), Lifetime(0.0, 600.0)),
    (TTL, False, (("last-MODIFIED", date(-900)), ("Cache-Control", "no-cache")), "kept"),
    (TTL, False, (("EXPIRES", date(30)), ("DATE", date(0))), Lifetime(30.0, 0.0)),
    (TTL, False, (("Expires", date(30)), ("date", date(10))), Lifetime(20.0, 0.0)),
    (TTL, False, (("Cache-Control", "max-age=50"), ("AGE", "30")), Lifetime(20.0, 0.0)),
    (TTL, False, (("Age", "30"), ("Date", "not a date")), Lifetime(60.0, 0.0)),
    (TTL, False, (("CDN-Cache-Control", "max-age=20"), ("Cache-Control", "max-age=5")), 5.0),
    (TTL, True, (("CDN-Cache-Control", "max-age=20"), ("Cache-Control", "max-age=5")), 20.0),
    (TTL, True, (("cdn-cache-control", "max-age=20"), ("Expires", "0")), 20.0),
    (replace(TTL, respect_cache_control=False), False, (("Cache-Control", "max-age=5"),), 60.0),
    (HTTP, False, (("Cache-Control", "max-age=5"), ("Age", "1"), ("age", "2")), 4.0),
    (HTTP, False, (("Last-Modified", date(-1000)), ("DATE", date(0))), Lifetime(100.0, 600.0)),
    (HTTP, False, (("Expires", date(100)), ("Date", date(0)), ("date", date(50))), 100.0),
]


@pytest.mark.parametrize(("rules", "shared", "headers", "expected"), ROWS)
def test_decide_lifetime_reads_every_field_in_one_pass(
    rules: FreshnessRules,
    shared: bool,
    headers: tuple[tuple[str, str], ...],
    expected: Lifetime | float | str,
) -> None:
    facts = ResponseFacts(
        200, headers, request_time=T, response_time=T, session_ttl=60.0, shared_cache=shared
    )
    decided = decide_lifetime(facts, rules)
    if expected == "stale":
        assert decided == NotStored("stale on arrival")
    elif expected == "kept":
        assert decided == Lifetime(0.0, 600.0)
    elif isinstance(expected, float):
        assert isinstance(decided, Lifetime) and decided.fresh == expected
    else:
        assert decided == expected
