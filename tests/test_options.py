"""Every public constructor refuses a bad option value with a ValueError that names the option.

Never TypeError or OverflowError: ``None`` where a collection belongs, ``10**400`` seconds (too
large for a float) and ``2**63`` bytes (too large for the backends) are bad values like any other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coalesce_client import (
    CachePolicy,
    CoalescingSession,
    DiskStorage,
    MemoryStorage,
    TieredStorage,
    coalesce_middleware,
)
from coalesce_client.options import (
    check_choice,
    check_collection,
    check_header_name,
    check_header_names,
    check_seconds,
    check_seconds_map,
    check_seconds_or_none,
    is_nonempty_string,
    is_string,
)
from coalesce_client.spec.fields import is_status

HUGE = 10**400  # an int that float() cannot hold

BAD: list[tuple[str, str, Any]] = [
    ("session", "ttl", HUGE),
    ("session", "ttl", -1),
    ("session", "ttl", math.nan),
    ("session", "ttl", "60"),
    ("session", "wait_timeout", HUGE),
    ("session", "wait_timeout", 0),
    ("session", "key_headers", None),
    ("session", "key_headers", "Accept"),
    ("session", "key_headers", ["X Bad"]),
    ("session", "storage_owner", None),
    ("session", "namespace", None),
    ("session", "clock", 5),
    ("session", "policy", {}),
    ("session", "storage", "memory"),
    ("session", "base_url", "relative/"),
    ("session", "base_url", "http://h/no-trailing-slash"),
    ("middleware", "ttl", HUGE),
    ("middleware", "wait_timeout", -1),
    ("middleware", "key_headers", None),
    ("middleware", "key_func", "not callable"),
    ("middleware", "cache_status_header", "X Cache"),
    ("middleware", "cache_status_header", "X-Cache:"),
    ("middleware", "cache_status_header", ""),
    ("middleware", "cache_status_header", 1),
    ("middleware", "namespace", 3),
    ("memory", "max_entries", 0),
    ("memory", "max_entries", 2**63),
    ("memory", "max_bytes", 1.5),
    ("memory", "max_bytes", math.inf),
    ("memory", "max_bytes", None),
    ("memory", "clock", None),
    ("disk", "max_bytes", 2**63),
    ("disk", "max_bytes", 10**400),
    ("disk", "lock_timeout", HUGE),
    ("disk", "loop_timeout", -0.1),
    ("policy", "max_body_size", 1.5),
    ("policy", "max_body_size", math.inf),
    ("policy", "max_body_size", 2**63),
    ("policy", "methods", None),
    ("policy", "status_ttl", {404: HUGE}),
]


def build(kind: str, tmp_path: Path) -> Callable[..., Any]:
    return {
        "session": CoalescingSession,
        "middleware": coalesce_middleware,
        "memory": MemoryStorage,
        "disk": lambda **kw: DiskStorage(tmp_path / "cache", **kw),
        "policy": CachePolicy,
    }[kind]


@pytest.mark.parametrize(
    ("kind", "option", "value"), BAD, ids=[f"{k}-{o}={v!r:.20}" for k, o, v in BAD]
)
def test_a_bad_option_is_a_value_error_naming_it(
    kind: str, option: str, value: Any, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=option):
        build(kind, tmp_path)(**{option: value})


def test_tiered_storage_refuses_what_is_not_a_storage() -> None:
    with pytest.raises(ValueError, match="front"):
        TieredStorage(None, MemoryStorage())  # type: ignore[arg-type]
    store = MemoryStorage()
    with pytest.raises(ValueError, match="two different"):
        TieredStorage(store, store)


def test_key_headers_take_any_iterable_of_strings() -> None:
    # A set, a generator, a tuple: all a collection of names (mypy accepts them too).
    CoalescingSession(key_headers={"Accept", "Accept-Language"})
    coalesce_middleware(key_headers=(h for h in ["Accept"]))
    assert check_header_names({"Accept"}, "key_headers") == ("accept",)


def test_a_valid_cache_status_header_is_kept() -> None:
    coalesce_middleware(cache_status_header="X-My_Cache.Status")
    coalesce_middleware(cache_status_header=None)


def test_the_checks_say_what_they_expected() -> None:
    with pytest.raises(ValueError, match=r"^ttl must be a non-negative number of seconds, got "):
        check_seconds(HUGE, "ttl")
    with pytest.raises(ValueError, match=r"seconds or None, got 0"):
        check_seconds_or_none(0, "wait_timeout", positive=True)
    assert check_seconds_or_none(None, "wait_timeout") is None


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (lambda: check_seconds(-1, "ttl"), "ttl must be a non-negative number of seconds, got -1"),
        (
            lambda: check_seconds_or_none(0, "wait_timeout", positive=True),
            "wait_timeout must be a positive number of seconds or None, got 0",
        ),
        (
            lambda: check_choice("rfc", "freshness", ("ttl", "http")),
            'freshness must be "ttl" or "http", got \'rfc\'',
        ),
        (
            lambda: check_collection(["GET", ""], "methods", is_nonempty_string, "HTTP methods"),
            "methods must hold only HTTP methods, got ''",
        ),
        (
            lambda: check_collection("GET", "methods", is_nonempty_string, "HTTP methods"),
            "methods must be a collection of HTTP methods, got 'GET'",
        ),
        (
            lambda: check_header_names(["X Bad"], "key_headers"),
            "key_headers must hold only header names (RFC 9110 tokens), got 'X Bad'",
        ),
        (
            lambda: check_header_names("Accept", "key_headers"),
            "key_headers must be a collection of header names (RFC 9110 tokens), got 'Accept'",
        ),
        (
            lambda: check_header_name("X-A:", "cache_status_header"),
            "cache_status_header must be a header name (an RFC 9110 token), got 'X-A:'",
        ),
        (
            lambda: check_seconds_map([("a", 1)], "url_ttl", is_string, "URL patterns"),
            "url_ttl must map URL patterns to seconds, got [('a', 1)]",
        ),
        (
            lambda: check_seconds_map({"a/*": -1}, "url_ttl", is_string, "URL patterns"),
            "url_ttl['a/*'] must be a non-negative number of seconds, got -1",
        ),
        (
            lambda: check_seconds_map({3: 1}, "url_ttl", is_string, "URL patterns"),
            "url_ttl must hold only URL patterns, got 3",
        ),
    ],
)
def test_every_check_speaks_one_style(check: Callable[[], object], message: str) -> None:
    """``<option> must ..., got <value>``: the option first, what was wanted, what came."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check()


def test_check_seconds_map_returns_float_seconds_by_key() -> None:
    assert check_seconds_map({404: 10, 500: 1.5}, "status_ttl", is_status, "status codes") == {
        404: 10.0,
        500: 1.5,
    }


def test_header_names_are_lower_cased_once_each_in_order() -> None:
    names = check_header_names(["Accept", "X-A", "accept", "x-a", "B"], "key_headers")
    assert names == ("accept", "x-a", "b")
