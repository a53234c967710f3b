"""Who may share a response, through coalesce_middleware (README, Who may share; issue 10).

Every test here runs a real aiohttp.web app on 127.0.0.1 whose handler answers from a pure
function of the request (``greeting``, ``home``, ``ranged``...): a user's answer is right when it
equals what that function gives for the user's own request. Bursts of mixed users are sent at
once with the handler held at the gate, which opens once every request is inside the application
(and, where the test says so, once every request that must not wait for anybody has reached the
handler); then the handler's runs are counted exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import aiohttp
import pytest
from aiohttp import web
from conftest import FakeClock, Handler, Origin, finished
from multidict import CIMultiDictProxy

from coalesce_client import CachePolicy, coalesce_middleware

Call = tuple[str, dict[str, Any]]  # a path, and the keyword arguments of client.get()
USER = "a user's request"  # the name of every request task (a failed test cancels the rest)


class Reply(NamedTuple):
    status: int
    body: str
    headers: CIMultiDictProxy[str]

    @property
    def cache(self) -> str:
        return self.headers.get("X-Cache", "(none)")


@contextlib.asynccontextmanager
async def serving(origin: Origin) -> AsyncIterator[aiohttp.ClientSession]:
    """Start the origin; a client without a connection limit (bursts are all in flight at once)."""
    await origin.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
            try:
                yield client
            finally:
                # A test that failed may leave requests in flight: end them before their client.
                left = [t for t in asyncio.all_tasks() if t.get_name() == USER and not t.done()]
                for task in left:
                    task.cancel()
                await asyncio.gather(*left, return_exceptions=True)
    finally:
        await origin.stop()


async def send(client: aiohttp.ClientSession, url: str, **kw: Any) -> Reply:
    async with client.get(url, allow_redirects=False, **kw) as r:
        return Reply(r.status, await r.text(), r.headers)


async def leading(origin: Origin, client: aiohttp.ClientSession, call: Call) -> asyncio.Task[Reply]:
    """Send ``call`` with the gate closed; return once its handler run is waiting at the gate."""
    origin.gate.clear()
    at_gate = origin.at_gate.count
    path, kw = call
    task = asyncio.create_task(send(client, origin.url(path), **kw), name=USER)
    await origin.at_gate.reach(at_gate + 1, f"the first request to {path} at the handler's gate")
    return task


async def burst(
    origin: Origin, client: aiohttp.ClientSession, calls: Sequence[Call], *, at_gate: int = 0
) -> list[Reply]:
    """Send ``calls`` at once; open the gate once all are in the application and ``at_gate``
    handler runs (in all, since the origin started) are waiting at it; the replies, in order."""
    before = origin.entered.count
    origin.gate.clear()
    tasks = [asyncio.create_task(send(client, origin.url(p), **kw), name=USER) for p, kw in calls]
    await origin.entered.reach(before + len(calls), f"{len(calls)} requests in the application")
    await origin.at_gate.reach(at_gate, "the handler runs that wait for nobody, at the gate")
    origin.gate.set()
    return await finished(asyncio.gather(*tasks), f"the replies to {len(calls)} requests")


def caches(replies: Iterable[Reply]) -> Counter[str]:
    return Counter(r.cache for r in replies)


# -- Vary -----------------------------------------------------------------------------------------

GREETINGS = {"en": "hello", "fr": "bonjour", "de": "hallo", "es": "hola", "it": "ciao"}


def greeting(language: str | None) -> str:
    return GREETINGS[language or "en"]


def greeter(origin: Origin) -> None:
    async def greet(request: web.Request) -> web.Response:
        language = request.headers.get("Accept-Language")
        await origin.wait()
        return web.Response(text=greeting(language), headers={"Vary": "Accept-Language"})

    origin.route("/greet", greet)


def speaking(language: str) -> Call:
    return ("/greet", {"headers": {"Accept-Language": language}})


async def test_vary_150_users_over_3_languages_each_get_their_own_in_3_runs() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])
    greeter(origin)
    langs = [("en", "fr", "de")[i % 3] for i in range(150)]
    async with serving(origin) as client:
        replies = await burst(origin, client, [speaking(lang) for lang in langs])
        wrong = [r.body for lang, r in zip(langs, replies, strict=True) if r.body != greeting(lang)]
        assert wrong == []  # 0 users got another language
        assert {r.status for r in replies} == {200}
        assert origin.calls["/greet"] == 3  # one run per language, whoever led
        counts = caches(replies)
        assert counts["MISS"] == 3 and counts["MISS"] + counts["COALESCED"] + counts["HIT"] == 150
        for lang in ("de", "fr", "en"):  # then each language is a hit of its own
            reply = await send(client, origin.url("/greet"), headers={"Accept-Language": lang})
            assert (reply.body, reply.cache) == (greeting(lang), "HIT")
        # Once the URL is known to vary, a burst over new and stored variants: the stored one is
        # a hit, each new one runs once and its users coalesce among themselves.
        langs = [("en", "es", "it")[i % 3] for i in range(60)]
        replies = await burst(origin, client, [speaking(lang) for lang in langs])
        assert [r.body for r in replies] == [greeting(lang) for lang in langs]
        assert origin.calls["/greet"] == 5
        assert caches(r for lang, r in zip(langs, replies, strict=True) if lang == "en") == {
            "HIT": 20
        }


def home(forwarded_host: str | None) -> str:
    return f'<a href="https://{forwarded_host or "shop.example"}/login">log in</a>'


async def test_a_poisoned_x_forwarded_host_never_reaches_a_victim(clock: FakeClock) -> None:
    # The handler reads X-Forwarded-Host and says so (Vary): the attacker's value makes its own
    # variant, never the page of anybody who did not send it; concurrent or stored first.
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])

    async def page(request: web.Request) -> web.Response:
        forwarded = request.headers.get("X-Forwarded-Host")
        await origin.wait()
        return web.Response(text=home(forwarded), headers={"Vary": "X-Forwarded-Host"})

    origin.route("/", page)
    evil = "evil.example"
    attack: Call = ("/", {"headers": {"X-Forwarded-Host": evil}})
    visit: Call = ("/", {})
    async with serving(origin) as client:
        # The attacker leads the flight; 30 victims and 6 more attacks join it.
        first = await leading(origin, client, attack)
        attacks = [i % 6 == 5 for i in range(36)]
        replies = await burst(origin, client, [attack if a else visit for a in attacks], at_gate=1)
        assert (await first).body == home(evil)
        victims = [r.body for a, r in zip(attacks, replies, strict=True) if not a]
        assert len(victims) == 30
        assert [body for body in victims if evil in body] == []  # 0 poisoned
        assert [r.body for r in replies] == [home(evil if a else None) for a in attacks]
        assert origin.calls["/"] == 2  # the attacker's variant and the victims'
        # Both expire; the attacker stores the poison first, then 30 victims arrive at once.
        clock.advance(61)
        assert (await send(client, origin.url("/"), **attack[1])).cache == "MISS"
        replies = await burst(origin, client, [visit] * 30)
        assert [r.body for r in replies] == [home(None)] * 30
        assert origin.calls["/"] == 4
        assert (await send(client, origin.url("/"))).body == home(None)
        assert (await send(client, origin.url("/"), **attack[1])).cache == "HIT"
        assert origin.calls["/"] == 4


@pytest.mark.parametrize("vary", ["*", "Accept-Language, *"])
async def test_vary_star_is_never_stored_nor_replayed(vary: str) -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def h(request: web.Request) -> web.Response:
        run = origin.calls[request.path]  # this run's number
        await origin.wait()
        return web.Response(text=f"run #{run}", headers={"Vary": vary})

    origin.route("/any", h)
    async with serving(origin) as client:
        calls: list[Call] = [("/any", {"headers": {"Accept-Language": "en"}})] * 50
        replies = await burst(origin, client, calls)
        assert origin.calls["/any"] == 50  # each request ran the handler
        assert sorted(r.body for r in replies) == sorted(f"run #{i}" for i in range(1, 51))
        for run in range(51, 54):
            reply = await send(client, origin.url("/any"), headers={"Accept-Language": "en"})
            assert reply.body == f"run #{run}"
            replies.append(reply)
        assert "HIT" not in caches(replies)
        assert origin.calls["/any"] == 53
        assert mw.stats.stored == 0


async def test_max_variants_drops_the_oldest_variant() -> None:
    mw = coalesce_middleware(ttl=60, policy=CachePolicy(max_variants=2))
    origin = Origin(middlewares=[mw])
    greeter(origin)

    async def ask(lang: str) -> str:
        reply = await send(client, origin.url("/greet"), headers={"Accept-Language": lang})
        assert reply.body == greeting(lang)
        return reply.cache

    async with serving(origin) as client:
        assert [await ask(lang) for lang in ("en", "fr", "de")] == ["MISS"] * 3
        # en, the oldest, went when de came; fr and de are kept.
        assert [await ask(lang) for lang in ("fr", "de", "en")] == ["HIT", "HIT", "MISS"]
        # en is back, the newest: fr, now the oldest, went.
        assert [await ask(lang) for lang in ("de", "en", "fr")] == ["HIT", "HIT", "MISS"]
        assert origin.calls["/greet"] == 5


# -- requests that must not share -----------------------------------------------------------------


def results(query: bytes) -> str:
    return f"results for {query.decode()}" if query else "the front page"


async def test_gets_with_a_body_bypass_and_each_gets_its_own_results() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def search(request: web.Request) -> web.Response:
        query = await request.read()
        await origin.wait()
        return web.Response(text=results(query))

    origin.route("/search", search)
    bodies = [(b"", b"apples", b"pears")[i % 3] for i in range(60)]  # 20 plain, 40 searches
    async with serving(origin) as client:
        calls = [("/search", {"data": body} if body else {}) for body in bodies]
        # Every search reaches the handler at once: none waits for a flight.
        replies = await burst(origin, client, calls, at_gate=1 + 40)
        assert [r.body for r in replies] == [results(body) for body in bodies]
        assert origin.calls["/search"] == 41  # one run per search, one for the plain GETs
        by_kind = Counter((bool(body), r.cache) for body, r in zip(bodies, replies, strict=True))
        assert by_kind == {(True, "BYPASS"): 40, (False, "MISS"): 1, (False, "COALESCED"): 19}
        # The plain page is stored; a search still runs the handler and is not given it.
        assert (await send(client, origin.url("/search"))).cache == "HIT"
        reply = await send(client, origin.url("/search"), data=b"pears")
        assert (reply.body, reply.cache) == (results(b"pears"), "BYPASS")
        assert origin.calls["/search"] == 42


DATA = string.ascii_letters * 20  # 1,040 bytes


def ranged(range_header: str | None) -> tuple[int, str]:
    """The handler's answer: the whole DATA, or the bytes a ``bytes=first-last`` range names."""
    if range_header is None:
        return 200, DATA
    first, last = (int(n) for n in range_header.removeprefix("bytes=").split("-"))
    return 206, DATA[first : last + 1]


async def test_range_requests_never_lead_nor_join_a_flight() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def data(request: web.Request) -> web.Response:
        status, body = ranged(request.headers.get("Range"))
        await origin.wait()
        return web.Response(status=status, text=body)

    origin.route("/data", data)
    ranges = [None if i % 11 else f"bytes={i}-{i + 9}" for i in range(55)]  # 50 plain, 5 ranges
    async with serving(origin) as client:
        # A Range request first: it must not lead the plain GETs' flight.
        first = await leading(origin, client, ("/data", {"headers": {"Range": "bytes=0-9"}}))
        calls = [("/data", {"headers": {"Range": r}} if r else {}) for r in ranges]
        # The first Range, the plain GETs' one run and the 5 other Ranges, all at the gate.
        replies = await burst(origin, client, calls, at_gate=1 + 1 + 5)
        head = await first
        assert (head.status, head.body, head.cache) == (206, DATA[:10], "BYPASS")
        assert [(r.status, r.body) for r in replies] == [ranged(r) for r in ranges]
        assert origin.calls["/data"] == 7
        by_kind = Counter((bool(rng), r.cache) for rng, r in zip(ranges, replies, strict=True))
        assert by_kind == {(True, "BYPASS"): 5, (False, "MISS"): 1, (False, "COALESCED"): 49}
        # The full response is stored now: a Range request is answered from it (issue 24).
        reply = await send(client, origin.url("/data"), headers={"Range": "bytes=5-7"})
        assert (reply.status, reply.body, reply.cache) == (206, DATA[5:8], "HIT")
        assert (await send(client, origin.url("/data"))).cache == "HIT"
        assert origin.calls["/data"] == 7


ETAG = '"v2"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def conditional(headers: Mapping[str, str]) -> tuple[int, str]:
    """The handler's answer (RFC 9110 §13.2.2, with validators compared as strings)."""
    if headers.get("If-Match", ETAG) != ETAG:
        return 412, "precondition failed: If-Match"
    if headers.get("If-Unmodified-Since", LAST_MODIFIED) != LAST_MODIFIED:
        return 412, "precondition failed: If-Unmodified-Since"
    if headers.get("If-None-Match") == ETAG or headers.get("If-Modified-Since") == LAST_MODIFIED:
        return 304, ""
    return 200, "the whole document"  # If-Range without Range is ignored (§13.1.5)


@pytest.mark.parametrize(
    "condition",
    [
        {"If-None-Match": ETAG},
        {"If-Modified-Since": LAST_MODIFIED},
        {"If-Match": '"v1"'},
        {"If-Unmodified-Since": "Tue, 20 Oct 2015 07:28:00 GMT"},
        {"If-Range": '"v1"'},
    ],
    ids=lambda condition: next(iter(condition)),
)
async def test_conditional_requests_never_lead_nor_join_a_flight(condition: dict[str, str]) -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def doc(request: web.Request) -> web.Response:
        status, body = conditional(request.headers)
        await origin.wait()
        headers = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
        return web.Response(status=status, text=body or None, headers=headers)

    origin.route("/doc", doc)
    async with serving(origin) as client:
        first = await leading(origin, client, ("/doc", {"headers": condition}))
        conditionals = [i % 10 == 9 for i in range(55)]  # 50 plain, 5 more conditionals
        calls = [("/doc", {"headers": condition} if c else {}) for c in conditionals]
        replies = await burst(origin, client, calls, at_gate=1 + 1 + 5)
        replies.insert(0, await first)
        conditionals.insert(0, True)
        expected = conditional(condition)
        assert [(r.status, r.body) for r in replies] == [
            expected if c else (200, "the whole document") for c in conditionals
        ]
        assert origin.calls["/doc"] == 7
        by_kind = Counter((c, r.cache) for c, r in zip(conditionals, replies, strict=True))
        assert by_kind == {(True, "BYPASS"): 6, (False, "MISS"): 1, (False, "COALESCED"): 49}


CREDENTIALS = (
    "Authorization",
    "Cookie",
    "Proxy-Authorization",
    "X-Api-Key",
    "X-Auth-Token",
    "Api-Key",
)


def account(headers: Mapping[str, str]) -> str:
    """The handler's answer: the account of the first credential the request carries."""
    for name in CREDENTIALS:
        if name in headers:
            return f"the account of {name}: {headers[name]}"
    return "the public page"


def credentialed(origin: Origin) -> None:
    async def me(request: web.Request) -> web.Response:
        answer = account(request.headers)
        await origin.wait()
        return web.Response(text=answer)

    origin.route("/me", me)


async def test_credential_headers_bypass_by_default() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])
    credentialed(origin)
    # For each credential header, two users sending 4 requests each; and 12 anonymous requests.
    users = [{name: f"user-{name}-{i % 2}"} for name in CREDENTIALS for i in range(8)]
    users += [{}] * 12
    async with serving(origin) as client:
        calls = [("/me", {"headers": headers}) for headers in users]
        replies = await burst(origin, client, calls, at_gate=48 + 1)
        assert [r.body for r in replies] == [account(headers) for headers in users]
        assert origin.calls["/me"] == 49  # each credentialed request its own run
        assert caches(replies[:48]) == {"BYPASS": 48}
        assert caches(replies[48:]) == {"MISS": 1, "COALESCED": 11}
        # The anonymous page is stored; credentialed requests still run the handler.
        for name in CREDENTIALS:
            reply = await send(client, origin.url("/me"), headers={name: "user-again"})
            assert (reply.body, reply.cache) == (account({name: "user-again"}), "BYPASS")
        assert origin.calls["/me"] == 49 + len(CREDENTIALS)


async def test_credential_headers_in_key_headers_are_keyed_per_user() -> None:
    mw = coalesce_middleware(ttl=60, key_headers=["Authorization"])
    origin = Origin(middlewares=[mw])
    credentialed(origin)
    users = [{"Authorization": f"Bearer user-{i % 6}"} for i in range(60)]
    async with serving(origin) as client:
        calls = [("/me", {"headers": headers}) for headers in users]
        replies = await burst(origin, client, calls)
        assert [r.body for r in replies] == [account(headers) for headers in users]
        assert origin.calls["/me"] == 6  # one run per user
        assert caches(replies) == {"MISS": 6, "COALESCED": 54}
        for i in range(6):
            headers = {"Authorization": f"Bearer user-{i}"}
            reply = await send(client, origin.url("/me"), headers=headers)
            assert (reply.body, reply.cache) == (account(headers), "HIT")
        # Another credential than the keyed one still bypasses.
        reply = await send(client, origin.url("/me"), headers={"X-Api-Key": "k"})
        assert (reply.body, reply.cache) == (account({"X-Api-Key": "k"}), "BYPASS")
        assert origin.calls["/me"] == 7


# -- body-less responses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "stored"),
    [(204, {}, False), (301, {"Location": "/new-home"}, True)],
    ids=["204", "301"],
)
async def test_body_less_responses_are_shared_and_the_key_is_not_made_pass_through(
    status: int, headers: dict[str, str], stored: bool
) -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def h(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(status=status, headers=headers)  # no body at all

    origin.route("/empty", h)
    async with serving(origin) as client:
        replies = await burst(origin, client, [("/empty", {})] * 50)
        assert origin.calls["/empty"] == 1
        assert {(r.status, r.body, r.headers.get("Location")) for r in replies} == {
            (status, "", headers.get("Location"))
        }
        assert caches(replies) == {"MISS": 1, "COALESCED": 49}
        # Not remembered as pass-through: a later burst is one run again (a 204 is not stored)
        # or a hit of what was stored (a 301 is).
        replies = await burst(origin, client, [("/empty", {})] * 50)
        assert {(r.status, r.headers.get("Location")) for r in replies} == {
            (status, headers.get("Location"))
        }
        if stored:
            assert caches(replies) == {"HIT": 50}
            assert origin.calls["/empty"] == 1
        else:
            assert caches(replies) == {"MISS": 1, "COALESCED": 49}
            assert origin.calls["/empty"] == 2


# -- errors ---------------------------------------------------------------------------------------


async def raise_404(request: web.Request) -> web.Response:
    raise web.HTTPNotFound(text="no such page")


async def return_404(request: web.Request) -> web.Response:
    return web.Response(status=404, text="no such page")


async def raise_bug(request: web.Request) -> web.Response:
    raise RuntimeError("a bug in the handler")


@pytest.mark.parametrize(
    ("answer", "status"), [(raise_404, 404), (return_404, 404), (raise_bug, 500)]
)
async def test_error_answers_carry_the_callers_own_cache_status(
    answer: Handler, status: int
) -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def h(request: web.Request) -> web.StreamResponse:
        await origin.wait()
        return await answer(request)

    origin.route("/err", h)
    keyed = [i % 11 != 10 for i in range(55)]  # 50 plain; 5 that bypass (a credential)
    calls = [
        ("/err", {} if k else {"headers": {"Authorization": f"Bearer {i}"}})
        for i, k in enumerate(keyed)
    ]
    async with serving(origin) as client:
        replies = await burst(origin, client, calls, at_gate=1 + 5)
        assert {r.status for r in replies} == {status}
        assert origin.calls["/err"] == 6
        by_kind = Counter((k, r.cache) for k, r in zip(keyed, replies, strict=True))
        assert by_kind == {(True, "MISS"): 1, (True, "COALESCED"): 49, (False, "BYPASS"): 5}


async def test_one_failed_run_logs_one_traceback(caplog: pytest.LogCaptureFixture) -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def h(request: web.Request) -> web.Response:
        await origin.wait()
        return await raise_bug(request)

    origin.route("/bug", h)
    async with serving(origin) as client:
        replies = await burst(origin, client, [("/bug", {})] * 50)
        assert [r.status for r in replies] == [500] * 50
        assert origin.calls["/bug"] == 1
    errors = [
        (r.name, r.exc_info[0] if r.exc_info else None)
        for r in caplog.records
        if r.levelno >= logging.ERROR
    ]
    assert errors == [("coalesce_client", RuntimeError)]  # aiohttp.server logged nothing


# -- keys -----------------------------------------------------------------------------------------


async def test_raw_queries_that_decode_alike_are_different_requests() -> None:
    # Keys: the query is keyed as the request sends it. ``%FF`` and ``%FE`` both decode
    # to U+FFFD, ``a`` and ``a=`` both to an empty value: a handler reading the raw query
    # answers each differently. Order is not part of it (sorted).
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def echo(request: web.Request) -> web.Response:
        query = request.rel_url.raw_query_string
        await origin.wait()
        return web.Response(text="&".join(sorted(query.split("&"))))

    origin.route("/q", echo)
    queries = ["t=%FF", "t=%FE", "a", "a=", "x=1&y=2", "y=2&x=1"]
    asked = [queries[i % len(queries)] for i in range(60)]
    async with serving(origin) as client:
        calls: list[Call] = [(f"/q?{query}", {}) for query in asked]
        replies = await burst(origin, client, calls)
        assert [r.body for r in replies] == ["&".join(sorted(q.split("&"))) for q in asked]
        assert origin.calls["/q"] == 5  # x=1&y=2 and y=2&x=1 are one request
