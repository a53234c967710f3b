"""Fault case: fuzzed options and calls.

Modes (every case under tests/faults/ has both):
    python -m pytest tests/faults/test_fuzz_calls.py -s                   # QUICK: 300 of each
    COALESCE_FAULTS=full python -m pytest tests/faults/test_fuzz_calls.py -s   # FULL: 5,000

* Options: every public constructor, each option given a value drawn from a pool of wrong and
  right ones, either builds or raises ``ValueError`` naming the option: never ``TypeError``,
  ``OverflowError`` or anything else.
* Calls: a random mix of aiohttp's own keyword arguments is sent through plain aiohttp and twice
  through one ``CoalescingSession`` (the second may be a hit): each of ours succeeds with the same
  status and body when aiohttp's does, and raises the same type of exception when aiohttp's does.
"""

from __future__ import annotations

import math
import os
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin

from coalesce_client import (
    CachePolicy,
    CoalescingSession,
    DiskStorage,
    MemoryStorage,
    TieredStorage,
    coalesce_middleware,
)

FULL = os.environ.get("COALESCE_FAULTS") == "full"
ROUNDS = 5_000 if FULL else 300
SEED = int(os.environ.get("COALESCE_FAULTS_SEED", "20261126"))

VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 7, 1.5, -0.5, math.inf, -math.inf, math.nan, 10**400, 2**63,
    2**63 - 1, "", "x", "Accept", "X Bad", "X-Ok", b"bytes", [], ["Accept"], ["X Bad"], [None],
    (), {}, {404: 10}, {"404": 1}, {404: -1}, {200}, {600}, object(), print, lambda r: True,
    timedelta(hours=1), timedelta(seconds=-1), timedelta(0), {404: timedelta(minutes=1)},
]  # fmt: skip

OPTIONS: dict[str, list[str]] = {
    "policy": [
        "methods", "cacheable_statuses", "status_ttl", "strip_headers", "max_body_size",
        "respect_cache_control", "sort_query", "ignored_params", "should_store",
        "credential_headers", "forwarded_headers", "pass_ttl", "max_variants", "url_ttl",
        "freshness",
        "heuristic_max", "stale_while_revalidate", "stale_if_error", "keep_stale",
        "targeted_cache_control",
    ],
    "session": ["ttl", "storage", "key_headers", "policy", "wait_timeout", "storage_owner",
                "namespace", "base_url", "clock"],
    "middleware": ["ttl", "storage", "key_headers", "policy", "wait_timeout", "key_func",
                   "cache_status_header", "namespace", "clock"],
    "memory": ["max_entries", "max_bytes", "clock"],
    "disk": ["max_bytes", "lock_timeout", "loop_timeout", "clock"],
    "tiered": ["front", "back", "clock"],
}  # fmt: skip


def build(kind: str, tmp: Path, kwargs: dict[str, Any]) -> Any:
    if kind == "policy":
        return CachePolicy(**kwargs)
    if kind == "session":
        return CoalescingSession(**kwargs)
    if kind == "middleware":
        return coalesce_middleware(**kwargs)
    if kind == "memory":
        return MemoryStorage(**kwargs)
    if kind == "disk":
        return DiskStorage(tmp, **kwargs)
    kwargs.setdefault("front", MemoryStorage())
    kwargs.setdefault("back", MemoryStorage())
    return TieredStorage(**kwargs)


async def test_fuzzed_options_build_or_raise_value_error_naming_the_option(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    seen = {"built": 0, "refused": 0}
    unnamed = []
    for i in range(ROUNDS):
        kind = rng.choice(sorted(OPTIONS))
        option = rng.choice(OPTIONS[kind])
        value = rng.choice(VALUES)
        try:
            made = build(kind, tmp_path / f"d{i % 7}", {option: value})
        except ValueError as exc:
            if option not in str(exc) and kind != "tiered":
                unnamed.append((kind, option, value, exc))
            seen["refused"] += 1
        except Exception as exc:  # anything else is a bug
            raise AssertionError(f"{kind}({option}={value!r}) raised {exc!r}") from exc
        else:
            seen["built"] += 1
            if isinstance(made, (CoalescingSession, DiskStorage, MemoryStorage, TieredStorage)):
                await made.close()
    print(f"\noptions fuzzed, seed {SEED}: {seen}")
    assert unnamed == []
    assert seen["refused"] > 0 and seen["built"] > 0


def random_call(rng: random.Random, base: str) -> tuple[str, dict[str, Any]]:
    """A path and aiohttp keyword arguments, right and wrong ones mixed."""
    path = rng.choice(["/echo", "/echo?b=2&a=1", "/redirect", "/status/404", "/status/500"])
    kwargs: dict[str, Any] = {}
    pool: dict[str, list[Any]] = {
        "params": [{"q": "1"}, [("q", "1"), ("q", "2")], {"q": 1.5}, {"q": None}],
        "headers": [
            {"X-A": "1"},
            {"Accept": "text/plain"},
            {"Authorization": "Bearer a"},
            {"X-A": "a\r\nb"},
            {"X A": "1"},
        ],
        "allow_redirects": [True, False],
        "max_redirects": [0, 1, 10],
        "raise_for_status": [True, False],
        "timeout": [aiohttp.ClientTimeout(total=5), 5, None],
        "cookies": [{"c": "1"}, {"c": "2"}],
        "auth": ["u:p", ("u", "p")],  # wrong: aiohttp wants a BasicAuth
        "data": [b"body", "text", {"f": "v"}],
        "json": [{"k": 1}, [1, 2]],
        "compress": [None],
        "no_such_option": [1],
        "ssl": [False],
    }
    for name in rng.sample(sorted(pool), k=rng.randrange(0, 4)):
        kwargs[name] = rng.choice(pool[name])
    if "data" in kwargs and "json" in kwargs and rng.random() < 0.5:
        del kwargs["json"]  # mostly the valid one of the pair, sometimes both (aiohttp refuses)
    return base + path, kwargs


async def outcome(session: Any, url: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
    """What ``async with session.get(url, **kwargs) as resp`` does: a status and body, or the
    type of exception raised (when the call is made, or when it is awaited)."""
    try:
        async with session.get(url, **kwargs) as resp:
            return "ok", (resp.status, await resp.read())
    except Exception as exc:
        return "raised", type(exc)


# aiohttp 3.14 deprecates per-call auth=; the warning is aiohttp's, the comparison is of behaviour.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_fuzzed_calls_behave_as_plain_aiohttp(origin: Origin) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.method} {request.path_qs}")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status")

    origin.route("/echo", echo)
    origin.route("/redirect", redirect)
    origin.route("/status/{code}", status)
    await origin.start()
    rng = random.Random(SEED)
    mismatches = []
    async with aiohttp.ClientSession() as plain, CoalescingSession(ttl=60) as ours:
        for _ in range(ROUNDS):
            url, kwargs = random_call(rng, origin.base)
            theirs = await outcome(plain, url, kwargs)
            for attempt in ("first", "again"):
                mine = await outcome(ours, url, dict(kwargs))
                if mine != theirs:
                    mismatches.append((attempt, url, kwargs, theirs, mine))
    print(f"\ncalls fuzzed, seed {SEED}: {ROUNDS} calls, {len(mismatches)} mismatches")
    for attempt, url, kwargs, theirs, mine in mismatches[:20]:
        print(f"  {attempt}: {url} {kwargs}: aiohttp {theirs}, ours {mine}")
    assert mismatches == []
