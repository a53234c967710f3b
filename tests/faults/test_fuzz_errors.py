"""Fault case: random calls, right and wrong, through plain aiohttp and through CoalescingSession.

Modes (every case under tests/faults/ has both):
    python -m pytest tests/faults/test_fuzz_errors.py -s                        # QUICK: 400 calls
    COALESCE_FAULTS=full python -m pytest tests/faults/test_fuzz_errors.py -s   # FULL: 20,000

Each call (a URL with or without scheme or host, relative, odd characters; ``params=`` of wrong
types; ``json=`` with mixed key types; header values that are bytes or hold CR/LF; cookies, auth,
timeouts, ``raise_for_status``, unknown arguments...) is made under one of several session
configurations (session headers with CR/LF or bytes, session auth, base URL...) through a plain
``aiohttp.ClientSession`` and through ours on each path:

* **miss**: a ``CoalescingSession(ttl=0)``, where every call is its own leader;
* **hit**: the call's "clean" twin (the same call without what the key ignores: other headers,
  ``timeout``, ``raise_for_status``) is stored first, then the call is made (a hit when its key
  is the twin's);
* **follower**: the twin is sent and held at the origin, then the call is made while it is in
  flight (it joins the twin's flight when its key is the twin's).

On every path ours must succeed with aiohttp's status and body where aiohttp succeeds, and raise
aiohttp's exception type where aiohttp raises. The run prints its figures: calls, divergences
(another exception type, or success where aiohttp raises, or another status or body), crashes
(an exception where aiohttp succeeds), and how many calls really took the hit and follower paths.
COALESCE_FAULTS_SEED=N replays a run.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin, finished
from yarl import URL

from coalesce_client import CachePolicy, CoalescingSession

FULL = os.environ.get("COALESCE_FAULTS") == "full"
CALLS = 20_000 if FULL else 400
SEED = int(os.environ.get("COALESCE_FAULTS_SEED", "20261206"))
PATHS = ["/echo", "/echo?b=2&a=1", "/redirect", "/status/404", "/status/500"]
with warnings.catch_warnings():  # aiohttp 3.14 deprecates BasicAuth: the comparison is of behaviour
    warnings.simplefilter("ignore", DeprecationWarning)
    SESSION_AUTH, CALL_AUTH = aiohttp.BasicAuth("u", "p"), aiohttp.BasicAuth("v", "q")
KEY_HEADERS = {"accept", "authorization", "cookie", "proxy-authorization", "x-api-key"}


def session_configs(base: str) -> list[dict[str, Any]]:
    """The sessions each call is made under (plain aiohttp's options, ours the same)."""
    return [
        {},
        {"headers": {"X-Session": "b\nc"}},
        {"headers": {"X-Session": b"bytes"}},
        {"headers": {"X-Session": "a\x00b"}},  # aiohttp 3.14 refuses NUL, 3.10 sends it
        {"headers": {"Accept": "text/plain", "X-Session": "1"}},
        {"auth": SESSION_AUTH},
        {"raise_for_status": True},
        {"base_url": base + "/"},
        {"cookies": {"c": "1"}},
        {"expire_after": 60},  # not an aiohttp option: refused at construction by both
    ]


def random_url(rng: random.Random, base: str) -> Any:
    """A URL as a user might write it: mostly right, often not."""
    path = rng.choice(PATHS)
    host = base.removeprefix("http://")
    port = host.rsplit(":", 1)[1]
    if rng.random() < 0.5:
        return base + path
    return rng.choice(
        [
            base + path,
            URL(base + path),
            host + path,  # no scheme
            f"localhost:{port}{path}",
            "http://",
            "http:///x",
            "http://:80" + path,
            "http://@" + path,
            "http://[::1",
            "http://127.0.0.1:99999" + path,
            path,  # relative: right with a base URL
            path[1:],
            URL(path),
            "/rel%zz",
            "rel path",
            "",
            " ",
            "?q=1",
            "mailto:someone",
            "ftp://127.0.0.1/x",
            base + "/echo/%zz",
            base + "/ech o",
            base + "/echo?q=%zz",
            base + "/echo#frag",
            5,
            None,
            b"http://127.0.0.1/",
        ]
    )


POOL: dict[str, list[Any]] = {
    "params": [
        {"q": "1"},
        [("q", "1"), ("q", "2")],
        {"q": 1.5},
        {"q": [1, 2]},
        "a=b",
        True,
        {1, 2},
        {"q": True},
        {"q": None},
        {"q": {1}},
        {"q": math.nan},
        {1: "x"},
        b"a=b",
        [("a",)],
        {},
    ],
    "headers": [
        {"X-A": "1"},
        {"Accept": "text/plain"},
        {"Authorization": "Bearer a"},
        [("X-Fuzz", b"bytes")],
        {"X-Fuzz": 1},
        {"X-Fuzz": None},
        {"X-A": "b\nc"},
        {"X-A": "b\r\nX-Injected: 1"},
        {"X\nA": "1"},
        {"X-A": "a\x00b"},
        {"X-A": "\x7f"},
        {"X A": "1"},
        {1: "x"},
        "not headers",
        [("X-A",)],
    ],
    "json": [{"k": 1}, [1, 2], {1: "a", "b": 2}, {"b": 1, "a": 2}, {(1, 2): 3}, {1, 2}, math.nan],
    "data": [b"body", "text", {"f": "v"}, {1: "a"}, 5],
    "cookies": [{"c": "2"}, {"a b": "1"}, "c=1"],
    "auth": ["u:p", ("u", "p"), CALL_AUTH],
    "timeout": [aiohttp.ClientTimeout(total=5), 5, 0, -1, None, "5"],
    "raise_for_status": [True, False, None, "yes"],
    "allow_redirects": [True, False],
    "max_redirects": [0, 1, 10],
    "ssl": [False, "x"],
    "skip_auto_headers": [["X-B"], 5],
    "no_such_option": [1],
}


def random_call(rng: random.Random, base: str) -> tuple[str, Any, dict[str, Any]]:
    method = rng.choice(["GET", "GET", "GET", "HEAD", "POST"])
    kwargs = {name: rng.choice(POOL[name]) for name in rng.sample(sorted(POOL), rng.randrange(4))}
    return method, random_url(rng, base), kwargs


def clean_twin(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call without what its key ignores (module docstring): the headers but the key's, the
    caller's own options."""
    twin = {k: v for k, v in kwargs.items() if k not in ("timeout", "raise_for_status", "headers")}
    headers = kwargs.get("headers")
    if isinstance(headers, dict):
        kept = {n: v for n, v in headers.items() if isinstance(n, str) and n.lower() in KEY_HEADERS}
        if kept:
            twin["headers"] = kept
    return twin


async def outcome(session: Any, method: str, url: Any, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """("ok", status, body, cache_status) or ("raised", exception type, None, None)."""
    try:
        async with session.request(method, url, **dict(kwargs)) as resp:
            return "ok", resp.status, await resp.read(), getattr(resp, "cache_status", None)
    except Exception as exc:
        return "raised", type(exc), None, None


class Tally:
    """The run's figures, by path."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []

    def compare(self, path: str, call: tuple[Any, ...], theirs: tuple[Any, ...], mine: Any) -> None:
        self.counts[f"{path} calls"] += 1
        if mine[3] in ("hit", "coalesced"):
            self.counts[f"{path} as {mine[3]}"] += 1
        if mine[:3] == theirs[:3]:
            return
        kind = "crashes" if theirs[0] == "ok" and mine[0] == "raised" else "divergences"
        self.counts[kind] += 1
        self.counts[f"{path} {kind}"] += 1
        if len(self.examples) < 25:
            self.examples.append(f"{path}: {call}: aiohttp {theirs[:2]}, ours {mine[:2]}")


async def run_paths(
    sessions: dict[str, Any], origin: Origin, call: tuple[str, Any, dict[str, Any]], tally: Tally
) -> None:
    method, url, kwargs = call
    theirs = await outcome(sessions["plain"], method, url, kwargs)
    for session in (sessions["miss"], sessions["hit"], sessions["follower"]):
        await session.clear()  # status_ttl stores a 404 even with ttl=0
    tally.compare("miss", call, theirs, await outcome(sessions["miss"], method, url, kwargs))
    hit = sessions["hit"]
    await outcome(hit, method, url, clean_twin(kwargs))
    tally.compare("hit", call, theirs, await outcome(hit, method, url, kwargs))
    follow = sessions["follower"]
    origin.gate.clear()
    origin.arrived.clear()
    leader = asyncio.ensure_future(outcome(follow, method, url, clean_twin(kwargs)))
    arrived = asyncio.ensure_future(origin.arrived.wait())
    await finished(asyncio.wait({leader, arrived}, return_when=asyncio.FIRST_COMPLETED), "twin")
    arrived.cancel()
    mine = asyncio.ensure_future(outcome(follow, method, url, kwargs))
    for _ in range(20):  # its checks and its join take a few loop turns, no I/O
        await asyncio.sleep(0)
    origin.gate.set()
    await finished(leader, "the twin's request")
    tally.compare("follower", call, theirs, await finished(mine, "the follower"))


async def construct(make: Callable[..., Any], **options: Any) -> Any:
    """``make(**options)``, or the type of what it raised (in a coroutine: aiohttp wants a loop)."""
    try:
        return make(**options)
    except Exception as exc:
        return type(exc)


@pytest.mark.timeout(900 if FULL else 60)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_fuzzed_calls_raise_what_plain_aiohttp_raises(origin: Origin) -> None:
    async def echo(request: web.Request) -> web.Response:
        await origin.wait()  # open but for the follower path
        return web.Response(text=f"{request.method} {request.path_qs} {await request.text()}")

    async def redirect(request: web.Request) -> web.Response:
        await origin.wait()
        raise web.HTTPFound("/echo")

    async def status(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(status=int(request.match_info["code"]), text="status")

    origin.route("/echo", echo, method="*")
    origin.route("/echo/{rest:.*}", echo, method="*")
    origin.route("/redirect", redirect, method="*")
    origin.route("/status/{code}", status, method="*")
    await origin.start()
    rng = random.Random(SEED)
    tally = Tally()
    policy = CachePolicy(methods={"GET", "HEAD", "POST"}, status_ttl={404: 60, 500: 60})
    configs = session_configs(origin.base)
    for n, config in enumerate(configs):
        plain = await construct(aiohttp.ClientSession, **config)
        ours = [
            await construct(CoalescingSession, ttl=ttl, policy=policy, **config)
            for ttl in (0, 60, 0)
        ]
        if isinstance(plain, type):  # refused at construction: so must ours be
            for made in ours:
                mine = ("raised", made) if isinstance(made, type) else ("ok", None)
                tally.compare(
                    "construction", (config,), ("raised", plain, None), (*mine, None, None)
                )
                if not isinstance(made, type):
                    await made.close()
            continue
        sessions = {"plain": plain, "miss": ours[0], "hit": ours[1], "follower": ours[2]}
        try:
            calls = CALLS // len(configs) + (n < CALLS % len(configs))
            for _ in range(calls):
                call = random_call(rng, origin.base)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    await run_paths(sessions, origin, call, tally)
        finally:
            for session in sessions.values():
                await session.close()
    figures = dict(sorted(tally.counts.items()))
    print(f"\ncalls fuzzed against plain aiohttp {aiohttp.__version__}, seed {SEED}: {figures}")
    for example in tally.examples:
        print("  " + example)
    assert tally.counts["divergences"] == 0 and tally.counts["crashes"] == 0, tally.examples
    assert tally.counts["hit as hit"] > 0 and tally.counts["follower as coalesced"] > 0
