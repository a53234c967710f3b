"""The middleware answers conditional requests from a fresh stored response (issue 13; RFC 9111
§4.3.2, RFC 9110 §13): a matching If-None-Match / If-Modified-Since gets a 304 without the
handler, a mismatching one the full stored response, and with nothing fresh stored the request
goes through alone. Real aiohttp.web apps on 127.0.0.1 count the handler's runs; the handler
answers conditional requests itself (an origin that validates), so a bypass gets the origin's own
answer and a test can tell who answered."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping
from typing import NamedTuple

import aiohttp
import pytest
from aiohttp import web
from conftest import FakeClock, Origin, finished
from test_server_sharing import USER, Call, Reply, burst, leading, send, serving

from coalesce_client import CachePolicy, coalesce_middleware
from coalesce_client.spec.dates import format_http_date

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
BEFORE = "Tue, 20 Oct 2015 07:28:00 GMT"  # a day before Last-Modified
AFTER = "Thu, 22 Oct 2015 07:28:00 GMT"
ETAGS = {"en": '"v2"', "fr": '"v2-fr"'}  # each language is a variant (Vary: Accept-Language)
BODIES = {"en": "the whole document", "fr": "le document entier"}
# What a 200 carries; a 304 carries the first six and the Date, never the others (RFC 9110 §15.4.5).
CARRIED = {
    "Cache-Control": "max-age=60",
    "Expires": "Thu, 01 Jan 2099 00:00:00 GMT",
    "Vary": "Accept-Language",
    "Content-Location": "/doc.html",
    "Last-Modified": LAST_MODIFIED,
}
NOT_CARRIED = {"X-Custom": "only in the 200", "Content-Language": "en"}


def language(headers: Mapping[str, str]) -> str:
    return "fr" if headers.get("Accept-Language") == "fr" else "en"


def origin_answer(method: str, headers: Mapping[str, str]) -> tuple[int, str]:
    """What the validating origin answers (RFC 9110 §13.2.2, validators compared as strings)."""
    lang = language(headers)
    etag = ETAGS[lang]
    if headers.get("If-Match", etag) != etag:
        return 412, ""
    if method in ("GET", "HEAD"):
        inm = headers.get("If-None-Match")
        if inm is not None:
            if inm in ("*", etag, f"W/{etag}"):
                return 304, ""
        elif headers.get("If-Modified-Since") == LAST_MODIFIED:
            return 304, ""
    return 200, BODIES[lang]


def validating(origin: Origin, *, status: int = 200) -> None:
    async def doc(request: web.Request) -> web.Response:
        answer, body = origin_answer(request.method, request.headers)
        await origin.wait()
        lang = language(request.headers)
        if status != 200 and answer == 200:
            answer = status
        headers = {"ETag": ETAGS[lang], **CARRIED, **NOT_CARRIED}
        return web.Response(status=answer, text=body or None, headers=headers)

    origin.route("/doc", doc)
    origin.route("/doc", doc, method="OPTIONS")


def reply_of(r: Reply) -> tuple[int, str, str]:
    return r.status, r.body, r.cache


# -- a 304 from storage ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        {"If-None-Match": '"v2"'},
        {"If-None-Match": 'W/"v2"'},  # weak comparison (RFC 9110 §13.1.2)
        {"If-None-Match": '"v1", "v2"'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": LAST_MODIFIED},
        {"If-Modified-Since": AFTER},
    ],
    ids=lambda c: f"{next(iter(c))}: {next(iter(c.values()))}",
)
async def test_a_matching_validator_gets_a_304_from_storage_without_the_handler(
    clock: FakeClock, condition: dict[str, str]
) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    validating(origin)
    date = format_http_date(clock.now)  # stored with the response (the handler sets none)
    async with serving(origin) as client:
        assert (await send(client, origin.url("/doc"))).cache == "MISS"
        clock.advance(5)
        async with client.get(origin.url("/doc"), headers=condition) as r:
            assert (r.status, await r.read()) == (304, b"")
            got = {k.lower(): v for k, v in r.headers.items() if k.lower() != "server"}
        carried = {"ETag": '"v2"', **CARRIED, "Date": date}  # the stored Date, not now
        expected = {**carried, "Age": "5", "X-Cache": "HIT"}
        assert got == {k.lower(): v for k, v in expected.items()}
        assert origin.calls["/doc"] == 1  # the handler never ran for it
        assert (mw.stats.hits, mw.stats.bypassed) == (1, 0)


async def test_head_304_needs_its_own_stored_head(clock: FakeClock) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    validating(origin)
    async with serving(origin) as client:
        async with client.head(origin.url("/doc")) as r:
            assert (r.status, r.headers["X-Cache"]) == (200, "MISS")
        async with client.head(origin.url("/doc"), headers={"If-None-Match": '"v2"'}) as r:
            assert (r.status, r.headers["X-Cache"]) == (304, "HIT")
        assert origin.calls["/doc"] == 1


@pytest.mark.parametrize(
    "condition",
    [
        {"If-None-Match": '"v1"'},
        {"If-None-Match": '"v2-evil"'},
        {"If-None-Match": '"V2"'},
        {"If-None-Match": "v2"},  # malformed: nothing can be said
        {"If-None-Match": '"v1"', "If-Modified-Since": LAST_MODIFIED},  # INM decides alone
        {"If-Modified-Since": BEFORE},
        {"If-Modified-Since": "yesterday"},
    ],
    ids=lambda c: ", ".join(f"{k}: {v}" for k, v in c.items()),
)
async def test_a_mismatching_validator_gets_the_full_stored_response(
    clock: FakeClock, condition: dict[str, str]
) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    validating(origin)
    async with serving(origin) as client:
        await send(client, origin.url("/doc"))
        clock.advance(5)
        reply = await send(client, origin.url("/doc"), headers=condition)
        assert reply_of(reply) == (200, BODIES["en"], "HIT")
        assert (reply.headers["Age"], reply.headers["X-Custom"]) == ("5", "only in the 200")
        assert origin.calls["/doc"] == 1


async def test_a_stored_error_ignores_the_precondition(clock: FakeClock) -> None:
    # RFC 9110 §13.2.1: preconditions are ignored when the response would not be a 2xx.
    mw = coalesce_middleware(ttl=60, clock=clock, policy=CachePolicy(status_ttl={404: 60}))
    origin = Origin(middlewares=[mw])
    validating(origin, status=404)
    async with serving(origin) as client:
        assert reply_of(await send(client, origin.url("/doc"))) == (404, BODIES["en"], "MISS")
        for condition in ({"If-None-Match": "*"}, {"If-None-Match": '"v2"'}):
            reply = await send(client, origin.url("/doc"), headers=condition)
            assert reply_of(reply) == (404, BODIES["en"], "HIT")
        assert origin.calls["/doc"] == 1


# -- nothing fresh stored: through, alone ---------------------------------------------------------


async def test_with_nothing_fresh_stored_a_conditional_request_goes_through_alone(
    clock: FakeClock,
) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    validating(origin)
    matching = {"If-None-Match": '"v2"'}
    async with serving(origin) as client:
        # Nothing stored: the origin's own 304 reaches its caller, and is stored for nobody.
        assert reply_of(await send(client, origin.url("/doc"), headers=matching)) == (
            304,
            "",
            "BYPASS",
        )
        assert mw.stats.stored == 0
        assert reply_of(await send(client, origin.url("/doc"))) == (200, BODIES["en"], "MISS")
        # Stored, then stale: through again.
        clock.advance(61)
        reply = await send(client, origin.url("/doc"), headers=matching)
        assert reply_of(reply) == (304, "", "BYPASS")
        assert origin.calls["/doc"] == 3
        stats = mw.stats
        assert (stats.bypassed, stats.misses, stats.hits, stats.stored) == (2, 1, 0, 1)


async def test_conditional_requests_never_join_a_flight_even_with_a_stored_entry_expiring(
    clock: FakeClock,
) -> None:
    # The entry expired and a plain request leads its revalidation: a conditional request
    # arriving then neither joins it nor waits for it; it goes through on its own.
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    validating(origin)
    async with serving(origin) as client:
        await send(client, origin.url("/doc"))
        clock.advance(61)
        first = await leading(origin, client, ("/doc", {}))
        calls: list[Call] = [("/doc", {"headers": {"If-None-Match": '"v2"'}})] * 5
        replies = await burst(origin, client, calls, at_gate=1 + 1 + 5)
        assert [reply_of(r) for r in replies] == [(304, "", "BYPASS")] * 5
        assert reply_of(await first) == (200, BODIES["en"], "REVALIDATED")  # the origin's 304
        assert origin.calls["/doc"] == 7


async def test_a_stored_response_that_must_be_revalidated_never_answers_304_itself(
    clock: FakeClock,
) -> None:
    # Cache-Control: no-cache is stored (it has a validator) but is stale from the start: the
    # origin, which has changed since, must be asked; a 304 from storage would keep the old copy.
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    version = ["v2"]

    async def doc(request: web.Request) -> web.Response:
        etag = f'"{version[0]}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(text=f"document {version[0]}", headers=headers)

    origin.route("/doc", doc)
    async with serving(origin) as client:
        assert reply_of(await send(client, origin.url("/doc"))) == (200, "document v2", "MISS")
        version[0] = "v3"
        reply = await send(client, origin.url("/doc"), headers={"If-None-Match": '"v2"'})
        assert reply_of(reply) == (200, "document v3", "BYPASS")
        assert origin.calls["/doc"] == 2


@pytest.mark.parametrize(
    "condition",
    [
        {"If-None-Match": '"v2"', "If-Match": '"v2"'},
        {"If-None-Match": '"v2"', "If-Unmodified-Since": LAST_MODIFIED},
        {"If-None-Match": '"v2"', "Authorization": "Bearer alice"},
        {"If-Match": '"v1"'},
    ],
    ids=lambda c: ", ".join(c),
)
async def test_other_preconditions_and_credentials_still_go_through(
    clock: FakeClock, condition: dict[str, str]
) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    validating(origin)
    async with serving(origin) as client:
        await send(client, origin.url("/doc"))
        reply = await send(client, origin.url("/doc"), headers=condition)
        assert reply_of(reply)[1:] == (origin_answer("GET", condition)[1], "BYPASS")
        assert reply.status == origin_answer("GET", condition)[0]
        assert origin.calls["/doc"] == 2


async def test_only_get_and_head_are_answered_304(clock: FakeClock) -> None:
    # A 304 is an answer to a GET or HEAD (RFC 9110 §15.4.5): another method the policy caches
    # goes through with its validators, even with a response stored for it.
    policy = CachePolicy(methods={"GET", "HEAD", "OPTIONS"})
    mw = coalesce_middleware(ttl=60, clock=clock, policy=policy)
    origin = Origin(middlewares=[mw])
    validating(origin)
    async with serving(origin) as client:
        for headers, cache in (({}, "MISS"), ({}, "HIT"), ({"If-None-Match": '"v2"'}, "BYPASS")):
            async with client.options(origin.url("/doc"), headers=headers) as r:
                assert (r.status, await r.text(), r.headers["X-Cache"]) == (
                    200,
                    BODIES["en"],
                    cache,
                )
        assert origin.calls["/doc"] == 2


async def test_a_request_that_asks_for_no_cache_goes_through(clock: FakeClock) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock, request_cache_control=True)
    origin = Origin(middlewares=[mw])
    validating(origin)
    async with serving(origin) as client:
        await send(client, origin.url("/doc"))
        headers = {"If-None-Match": '"v2"', "Cache-Control": "no-cache"}
        assert reply_of(await send(client, origin.url("/doc"), headers=headers)) == (
            304,
            "",
            "BYPASS",
        )
        headers = {"If-None-Match": '"v2"', "Cache-Control": "max-age=3600"}
        assert reply_of(await send(client, origin.url("/doc"), headers=headers)) == (
            304,
            "",
            "HIT",
        )
        assert origin.calls["/doc"] == 2


# -- many users at once, validators of every kind -------------------------------------------------


class Case(NamedTuple):
    """One kind of user: what it sends, and what it must get (status, body, cache status)."""

    method: str
    headers: dict[str, str]
    expected: tuple[int, str, str]


def cases() -> list[Case]:
    en, fr = BODIES["en"], BODIES["fr"]
    not_mod = (304, "", "HIT")
    full_en, full_fr = (200, en, "HIT"), (200, fr, "HIT")
    fr_h = {"Accept-Language": "fr"}
    return [
        Case("GET", {}, full_en),
        Case("GET", fr_h, full_fr),
        Case("GET", {"If-None-Match": '"v2"'}, not_mod),
        Case("GET", {"If-None-Match": 'W/"v2"'}, not_mod),
        Case("GET", {"If-None-Match": '"x", "v2"'}, not_mod),
        Case("GET", {"If-None-Match": "*"}, not_mod),
        Case("GET", {"If-Modified-Since": LAST_MODIFIED}, not_mod),
        Case("GET", {"If-None-Match": '"v1"'}, full_en),
        Case("GET", {"If-None-Match": '"v2-evil"'}, full_en),
        Case("GET", {"If-None-Match": '"v2'}, full_en),
        Case("GET", {"If-None-Match": '"v2" "v1"'}, full_en),
        Case("GET", {"If-None-Match": '"v1"', "If-Modified-Since": LAST_MODIFIED}, full_en),
        Case("GET", {"If-Modified-Since": BEFORE}, full_en),
        Case("GET", {"If-Modified-Since": f"{LAST_MODIFIED}, {LAST_MODIFIED}"}, full_en),
        # Another variant's validator is not this variant's: the French page, whole.
        Case("GET", {**fr_h, "If-None-Match": '"v2"'}, full_fr),
        Case("GET", {**fr_h, "If-None-Match": '"v2-fr"'}, not_mod),
        Case("GET", {"If-None-Match": '"v2-fr"'}, full_en),
        # Not ours to answer: the origin's own answers.
        Case("GET", {"If-Match": '"v1"'}, (412, "", "BYPASS")),
        Case("GET", {"If-None-Match": '"v2"', "If-Match": '"v2"'}, (304, "", "BYPASS")),
        Case("GET", {"If-None-Match": '"v1"', "Cookie": "session=bob"}, (200, en, "BYPASS")),
        # Range is answered from storage too (issue 24), after the validators (§13.2.2).
        Case("GET", {"If-None-Match": '"v2"', "Range": "bytes=0-3"}, not_mod),
        Case("HEAD", {}, (200, "", "HIT")),
        Case("HEAD", {"If-None-Match": '"v2"'}, not_mod),
        Case("HEAD", {"If-None-Match": '"v1"'}, (200, "", "HIT")),
    ]


async def test_many_users_with_mixed_validators_get_exactly_their_own_answer(
    clock: FakeClock,
) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    validating(origin)
    kinds = cases()
    users = [kinds[i % len(kinds)] for i in range(420)]
    random.Random(13).shuffle(users)
    async with serving(origin) as client:
        # Both variants stored (en: no Accept-Language, a variant of its own), and a HEAD.
        for lang, kw in (("en", {}), ("fr", {"headers": {"Accept-Language": "fr"}})):
            reply = await send(client, origin.url("/doc"), **kw)
            assert reply_of(reply) == (200, BODIES[lang], "MISS")
        async with client.head(origin.url("/doc")) as r:
            assert (r.status, r.headers["X-Cache"]) == (200, "MISS")
        clock.advance(7)
        through = sum(u.expected[2] == "BYPASS" for u in users)
        replies = await burst_of(origin, client, users, at_gate=3 + through)
        got = [(r.status, r.body, r.cache) for r in replies]
        wrong = [(u, g) for u, g in zip(users, got, strict=True) if g != u.expected]
        assert wrong == []  # not one 304 too many, not one body of another variant
        assert origin.calls["/doc"] == 3 + through  # only the bypasses ran the handler
        for u, r in zip(users, replies, strict=True):
            if r.cache == "HIT":
                assert r.headers["Age"] == "7"
            if r.status == 304 and r.cache == "HIT":
                assert r.headers["ETag"] == ETAGS[language(u.headers)]
                assert "X-Custom" not in r.headers and "Content-Type" not in r.headers
        assert Counter(g[2] for g in got) == {"HIT": 420 - through, "BYPASS": through}


async def burst_of(
    origin: Origin, client: aiohttp.ClientSession, users: list[Case], *, at_gate: int
) -> list[Reply]:
    """``burst`` (test_server_sharing) for users of several methods: all sent at once, the gate
    opened once all are in the application and ``at_gate`` handler runs wait at it."""
    before = origin.entered.count
    origin.gate.clear()

    async def ask(u: Case) -> Reply:
        async with client.request(u.method, origin.url("/doc"), headers=u.headers) as r:
            return Reply(r.status, await r.text(), r.headers)

    tasks = [asyncio.create_task(ask(u), name=USER) for u in users]
    await origin.entered.reach(before + len(users), f"{len(users)} requests in the application")
    await origin.at_gate.reach(at_gate, "the handler runs of the requests that go through")
    origin.gate.set()
    return await finished(asyncio.gather(*tasks), f"the replies to {len(users)} requests")
