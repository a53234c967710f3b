"""Who may share a response, in the client (issue 10; README "Who may share a response").

Every test is a burst of mixed callers through one ``CoalescingSession`` against a real origin on
127.0.0.1 whose handlers echo what tells their callers apart (a cookie, a credential, the Host,
the range asked for, the language...). The origin's gate is closed until every caller is in a
flight or has sent its own request, so that they all are in flight together; the tests count
the origin's calls exactly and check that every caller got its own answer.
"""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Handler, LoopClock, Origin, finished, until
from yarl import URL

from coalesce_client import CachedResponse, CachePolicy, CoalescingSession, MemoryStorage
from coalesce_client.client.compat import counts_cookies

Outcome = CachedResponse | BaseException

# aiohttp takes per-call client middlewares= from 3.12 on.
HAS_MIDDLEWARES = tuple(int(p) for p in aiohttp.__version__.split(".")[:2]) >= (3, 12)


# -- lining callers up ----------------------------------------------------------------------------


def placed(s: CoalescingSession) -> int:
    """Callers of ``s`` that are in a flight, sent a request of their own, or were answered from
    storage (the session's own records: nothing public tells a joined flight)."""
    flight = s._core.flight
    st = s.stats
    return flight.started + flight.joined + st.bypassed + st.hits


async def line_up(
    origin: Origin,
    sessions: CoalescingSession | Sequence[CoalescingSession],
    calls: Sequence[Awaitable[CachedResponse]],
    *,
    callers: int | None = None,
) -> list[asyncio.Future[CachedResponse]]:
    """Start ``calls`` at once with the origin's gate closed; return once every caller is placed
    (``callers`` of them, all by default) and every request sent waits at the gate."""
    if not isinstance(sessions, Sequence):  # one session (or MiddlewareClient)
        sessions = [sessions]
    origin.gate.clear()
    gate = origin.at_gate.count
    was_placed = sum(placed(s) for s in sessions)
    was_sent = sum(s.stats.upstream for s in sessions)
    tasks = [asyncio.ensure_future(c) for c in calls]
    expected = len(tasks) if callers is None else callers
    await until(
        lambda: sum(placed(s) for s in sessions) - was_placed >= expected,
        "every caller in a flight, sent alone, or answered from storage",
    )
    sent = sum(s.stats.upstream for s in sessions) - was_sent
    await origin.at_gate.reach(gate + sent, "every request sent waiting at the origin's gate")
    return tasks


async def burst(
    origin: Origin,
    sessions: CoalescingSession | Sequence[CoalescingSession],
    calls: Sequence[Awaitable[CachedResponse]],
    *,
    callers: int | None = None,
) -> list[Outcome]:
    """Every caller in flight together (``line_up``), then the gate opened; each one's outcome,
    an exception as a value."""
    tasks = await line_up(origin, sessions, calls, callers=callers)
    origin.gate.set()
    return await finished(asyncio.gather(*tasks, return_exceptions=True), "every caller answered")


async def answers(outcomes: Sequence[Outcome]) -> list[tuple[int, str, str]]:
    """(status, body, cache_status) of each caller, the body as latin-1 text (any bytes); an
    exception fails the test."""
    out = []
    for r in outcomes:
        assert isinstance(r, (CachedResponse, aiohttp.ClientResponse)), r
        out.append((r.status, (await r.read()).decode("latin-1"), r.cache_status))
    return out


def statuses(
    results: Sequence[tuple[int, str, str]], who: Sequence[str]
) -> dict[str, Counter[str]]:
    """The cache statuses each identity's callers got."""
    by: dict[str, Counter[str]] = {}
    for name, (_, _, status) in zip(who, results, strict=True):
        by.setdefault(name, Counter())[status] += 1
    return by


def gated(origin: Origin, echo: Callable[[web.Request], str]) -> Handler:
    """A handler that echoes ``echo(request)`` and its call number, after the gate."""

    async def handler(request: web.Request) -> web.Response:
        n = origin.calls[request.path]
        await origin.wait()
        return web.Response(text=f"{echo(request)} #{n}")

    return handler


def one_flight_each(
    results: Sequence[tuple[int, str, str]], who: Sequence[str]
) -> dict[str, Counter[str]]:
    """Every identity's callers shared one request: one miss, the rest coalesced."""
    by = statuses(results, who)
    for name, count in by.items():
        assert count == Counter({"miss": 1, "coalesced": sum(count.values()) - 1}), (name, count)
    return by


# -- cookies and credentials split the key --------------------------------------------------------


async def test_per_call_cookies_split_the_key_in_a_burst_of_60_callers(
    origin: Origin, client_face: Any
) -> None:
    origin.route("/me", gated(origin, lambda r: f"me={r.cookies.get('session', '-')}"))
    await origin.start()
    users = [f"u{i}" for i in range(10)]
    who = [users[i % 10] for i in range(50)] + ["-"] * 10  # ten users, five calls each; ten anons
    async with client_face(ttl=60) as s:

        def call(user: str) -> Awaitable[CachedResponse]:
            if user == "-":
                return s.get(origin.url("/me"))
            return s.get(origin.url("/me"), cookies={"session": user})

        results = await answers(await burst(origin, s, [call(u) for u in who]))
        assert origin.calls["/me"] == 11
        assert all(
            body.startswith(f"me={u} #") for u, (_, body, _) in zip(who, results, strict=True)
        )
        one_flight_each(results, who)
        again = await answers(await burst(origin, s, [call(u) for u in who]))
        assert [body for _, body, _ in again] == [body for _, body, _ in results]
        assert {status for _, _, status in again} == {"hit"}
        assert origin.calls["/me"] == 11


async def test_session_cookie_jars_split_the_key_of_a_shared_storage(origin: Origin) -> None:
    origin.route("/me", gated(origin, lambda r: f"me={r.cookies.get('sid', '-')}"))
    await origin.start()
    storage = MemoryStorage()
    users = [f"u{i}" for i in range(5)]
    sessions = []
    for user in users:
        jar = aiohttp.CookieJar(unsafe=True)  # the default jar refuses cookies from IP addresses
        jar.update_cookies({"sid": user}, URL(origin.base))
        sessions.append(
            CoalescingSession(ttl=60, storage=storage, storage_owner=False, cookie_jar=jar)
        )
    try:
        who = [users[i % 5] for i in range(60)]

        def calls() -> list[Awaitable[CachedResponse]]:
            return [sessions[users.index(u)].get(origin.url("/me")) for u in who]

        results = await answers(await burst(origin, sessions, calls()))
        assert origin.calls["/me"] == 5
        assert all(
            body.startswith(f"me={u} #") for u, (_, body, _) in zip(who, results, strict=True)
        )
        one_flight_each(results, who)
        # The storage is shared: each jar finds its own page there, never another's.
        again = await answers(await burst(origin, sessions, calls()))
        assert [body for _, body, _ in again] == [body for _, body, _ in results]
        assert {status for _, _, status in again} == {"hit"}
        assert origin.calls["/me"] == 5

        # One session whose jar changes between calls.
        s = sessions[0]
        s.session.cookie_jar.update_cookies({"sid": "other"}, URL(origin.base))
        origin.gate.set()
        mine = await s.get(origin.url("/me"))
        assert (mine.cache_status, await mine.text()) == ("miss", "me=other #6")
        s.session.cookie_jar.update_cookies({"sid": "u0"}, URL(origin.base))
        back = await s.get(origin.url("/me"))
        assert (back.cache_status, await back.text()) == ("hit", results[0][1])
    finally:
        for s in sessions:
            await s.close()
        await storage.close()


async def test_a_jar_that_gains_a_cookie_after_a_remembered_call_is_not_served_its_page(
    origin: Origin,
) -> None:
    """A plain call's identity is remembered while the session's jar is empty (calls.py); a
    cookie that arrives later makes the next call its own, not the anonymous page."""

    async def me(request: web.Request) -> web.Response:
        return web.Response(text=f"me={request.cookies.get('sid', '-')}")

    origin.route("/me", me)
    await origin.start()
    jar = aiohttp.CookieJar(unsafe=True)
    async with CoalescingSession(ttl=60, cookie_jar=jar) as s:
        for _ in range(2):  # the second is a hit through the remembered identity
            anonymous = await s.get(origin.url("/me"))
            assert await anonymous.text() == "me=-"
        assert anonymous.cache_status == "hit"
        jar.update_cookies({"sid": "u1"}, URL(origin.base))
        mine = await s.get(origin.url("/me"))
        assert (mine.cache_status, await mine.text()) == ("miss", "me=u1")


async def test_the_jar_count_read_without_a_call_is_the_jar_s_length() -> None:
    """``compat.counts_cookies``: where it says so, ``_cookie_count`` is ``len(jar)`` through
    cookies added, replaced and expired (it fails on an aiohttp whose count drifts)."""
    jar = aiohttp.CookieJar(unsafe=True)
    if not counts_cookies(jar):
        pytest.skip(f"aiohttp {aiohttp.__version__} keeps no count: len(jar) is used")
    url = URL("http://127.0.0.1/")
    jar.update_cookies({"a": "1", "b": "2"}, url)
    jar.update_cookies({"a": "3"}, url)
    jar.update_cookies({"c": "4; Max-Age=0"}, url)
    jar.update_cookies({"b": "gone; Max-Age=0"}, url)
    assert jar._cookie_count == len(jar) == len(list(jar))

    class Counted(aiohttp.CookieJar):
        def __len__(self) -> int:
            return 1

    assert not counts_cookies(Counted(unsafe=True))
    assert not counts_cookies(aiohttp.DummyCookieJar())


async def test_credentials_in_the_url_split_the_key(origin: Origin, client_face: Any) -> None:
    def who_asks(request: web.Request) -> str:
        auth = request.headers.get("Authorization")
        if auth is None:
            return "anonymous"
        basic = aiohttp.BasicAuth.decode(auth)
        return f"{basic.login}:{basic.password}"

    origin.route("/me", gated(origin, who_asks))
    await origin.start()
    port = URL(origin.base).port
    # Nine users, and one of them again with another password; anonymous callers too.
    creds = [f"u{i}:pw{i}" for i in range(9)] + ["u0:other", "anonymous"]
    who = [creds[i % len(creds)] for i in range(66)]

    def url(cred: str) -> str:
        at = "" if cred == "anonymous" else cred + "@"
        return f"http://{at}127.0.0.1:{port}/me"

    async with client_face(ttl=60) as s:
        results = await answers(await burst(origin, s, [s.get(url(c)) for c in who]))
        assert origin.calls["/me"] == len(creds)
        assert all(body.startswith(f"{c} #") for c, (_, body, _) in zip(who, results, strict=True))
        one_flight_each(results, who)
        again = await answers(await burst(origin, s, [s.get(url(c)) for c in who]))
        assert [body for _, body, _ in again] == [body for _, body, _ in results]
        assert {status for _, _, status in again} == {"hit"}
        assert origin.calls["/me"] == len(creds)


@pytest.mark.parametrize("header", ["X-Api-Key", "X-Auth-Token", "Api-Key"])
async def test_api_key_headers_split_the_key_by_default(
    origin: Origin, header: str, client_face: Any
) -> None:
    def who_asks(request: web.Request) -> str:
        names = ("X-Api-Key", "X-Auth-Token", "Api-Key")
        sent = [f"{h}={request.headers[h]}" for h in names if h in request.headers]
        return ",".join(sent) or "anonymous"

    origin.route("/me", gated(origin, who_asks))
    await origin.start()
    # Ten keys in the header under test, and the same values in another credential header (the
    # header's name splits the key, not only its value), and anonymous callers.
    other = "Api-Key" if header != "Api-Key" else "X-Api-Key"
    ids = [(header, f"k{i}") for i in range(10)] + [(other, "k0"), ("", "")]
    who = [ids[i % len(ids)] for i in range(60)]

    def name(h: str, v: str) -> str:
        return f"{h}={v}" if h else "anonymous"

    async with client_face(ttl=60) as s:
        calls = [s.get(origin.url("/me"), headers={h: v} if h else None) for h, v in who]
        results = await answers(await burst(origin, s, calls))
        assert origin.calls["/me"] == len(ids)
        assert all(
            body.startswith(name(*i) + " #") for i, (_, body, _) in zip(who, results, strict=True)
        )
        one_flight_each(results, [name(*i) for i in who])
        calls = [s.get(origin.url("/me"), headers={h: v} if h else None) for h, v in who]
        again = await answers(await burst(origin, s, calls))
        assert [body for _, body, _ in again] == [body for _, body, _ in results]
        assert origin.calls["/me"] == len(ids)


# -- per-call middlewares -------------------------------------------------------------------------


def bearer(user: str) -> Any:
    """A per-call client middleware that signs the request as ``user``."""

    async def sign(request: Any, handler: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {user}"
        return await handler(request)

    return sign


@pytest.mark.skipif(not HAS_MIDDLEWARES, reason="aiohttp < 3.12 takes no per-call middlewares=")
async def test_per_call_middlewares_make_the_call_a_bypass(origin: Origin) -> None:
    origin.route("/me", gated(origin, lambda r: r.headers.get("Authorization", "anonymous")))
    await origin.start()
    users = [f"u{i}" for i in range(10)]
    # Fifty signed callers (ten users; a signed one leads), then ten plain ones.
    who = [users[i % 10] for i in range(50)] + ["-"] * 10

    async with CoalescingSession(ttl=60) as s:

        def call(user: str) -> Awaitable[CachedResponse]:
            if user == "-":
                return s.get(origin.url("/me"))
            return s.get(origin.url("/me"), middlewares=(bearer(user),))

        results = await answers(await burst(origin, s, [call(u) for u in who]))
        assert origin.calls["/me"] == 51  # every signed call its own; the plain ones one
        for u, (_, body, status) in zip(who, results, strict=True):
            if u == "-":
                assert body.startswith("anonymous #"), body
            else:
                assert (body.split(" #")[0], status) == (f"Bearer {u}", "bypass")
        assert len({body for u, (_, body, _) in zip(who, results, strict=True) if u != "-"}) == 50
        assert sorted(st for u, (_, _, st) in zip(who, results, strict=True) if u == "-") == [
            "coalesced"
        ] * 9 + ["miss"]
        # The plain page is stored; a signed call after it still goes to the origin itself.
        assert (await s.get(origin.url("/me"))).cache_status == "hit"
        signed = await s.get(origin.url("/me"), middlewares=(bearer("u1"),))
        assert (signed.cache_status, await signed.text()) == ("bypass", "Bearer u1 #52")
        assert origin.calls["/me"] == 52


@pytest.mark.skipif(HAS_MIDDLEWARES, reason="aiohttp >= 3.12 takes per-call middlewares=")
async def test_per_call_middlewares_are_rejected_on_every_path_as_aiohttp_rejects_them(
    started: Origin,
) -> None:
    url = started.url("/text")
    async with CoalescingSession(ttl=60) as s:
        with pytest.raises(TypeError):  # a miss
            await s.get(url, middlewares=(bearer("u0"),))
        assert started.calls["/text"] == 0
        await s.get(url)
        calls = [s.get(url) for _ in range(40)]
        calls += [s.get(url, middlewares=(bearer(f"u{i}"),)) for i in range(10)]
        # The good calls are hits: nothing waits on the origin.
        gathered = asyncio.gather(*calls, return_exceptions=True)
        outcomes = await finished(gathered, "every caller answered")
        assert [type(o) for o in outcomes[40:]] == [TypeError] * 10  # hits
        assert {r.cache_status for r in outcomes[:40] if isinstance(r, CachedResponse)} == {"hit"}
        assert started.calls["/text"] == 1


# -- Range and conditional requests bypass --------------------------------------------------------

BODY = bytes(range(256)) * 40  # 10,240 bytes
ETAG = '"v1"'
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
ASKED = (
    "Range",
    "If-None-Match",
    "If-Modified-Since",
    "If-Match",
    "If-Unmodified-Since",
    "If-Range",
)


def file_handler(origin: Origin) -> Handler:
    """A 10,240-byte resource that honours Range and preconditions, and says in ``X-Asked``
    which of them its request carried."""

    async def handler(request: web.Request) -> web.Response:
        await origin.wait()
        h = request.headers
        headers = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
        headers["X-Asked"] = ",".join(name for name in ASKED if name in h)
        if h.get("If-Match", ETAG) != ETAG or "If-Unmodified-Since" in h:  # ours are all older
            return web.Response(status=412, headers=headers)
        if h.get("If-None-Match") == ETAG or h.get("If-Modified-Since") == LAST_MODIFIED:
            return web.Response(status=304, headers=headers)
        if "Range" in h:  # If-Range is only ever sent alone here: it is then ignored
            start, end = (int(x) for x in h["Range"].removeprefix("bytes=").split("-"))
            headers["Content-Range"] = f"bytes {start}-{end}/{len(BODY)}"
            return web.Response(status=206, body=BODY[start : end + 1], headers=headers)
        return web.Response(body=BODY, headers=headers)

    return handler


# (header, its value for the i-th caller, the status the origin answers it with)
SPECIAL: list[tuple[str, Callable[[int], str], int]] = [
    ("Range", lambda i: f"bytes={10 * i}-{10 * i + 9}", 206),
    ("If-None-Match", lambda i: ETAG, 304),
    ("If-Modified-Since", lambda i: LAST_MODIFIED, 304),
    ("If-Match", lambda i: f'"v0-{i}"', 412),
    ("If-Unmodified-Since", lambda i: "Sun, 01 Jan 2023 00:00:00 GMT", 412),
    ("If-Range", lambda i: ETAG, 200),
]


@pytest.mark.parametrize(("header", "value", "status"), SPECIAL, ids=[s[0] for s in SPECIAL])
async def test_range_and_conditional_requests_bypass_and_plain_gets_get_the_full_body(
    origin: Origin, header: str, value: Callable[[int], str], status: int, client_face: Any
) -> None:
    origin.route("/file", file_handler(origin))
    await origin.start()
    url = origin.url("/file")
    async with client_face(ttl=60) as s:
        # The special request leads: it is in flight before any plain GET arrives.
        first = await line_up(origin, s, [s.get(url, headers={header: value(0)})])
        who = [i if i % 6 == 0 else -1 for i in range(1, 60)]  # nine more specials, 50 plain
        calls = [s.get(url, headers={header: value(i)}) if i >= 0 else s.get(url) for i in who]
        outcomes = [*await burst(origin, s, calls), await first[0]]
        who.append(0)
        assert origin.calls["/file"] == 10 + 1  # each special its own; the plain GETs one
        plain = Counter[str]()
        for i, resp in zip(who, outcomes, strict=True):
            assert isinstance(resp, (CachedResponse, aiohttp.ClientResponse)), resp
            if i < 0:
                assert (resp.status, await resp.read()) == (200, BODY)
                assert resp.headers["X-Asked"] == ""
                plain[resp.cache_status] += 1
            else:
                assert (resp.status, resp.cache_status) == (status, "bypass"), (i, resp)
                assert resp.headers["X-Asked"] == header
                if status == 206:
                    assert await resp.read() == BODY[10 * i : 10 * i + 10]
        assert plain == Counter(miss=1, coalesced=49)
        # The plain answer is stored; a special request after it is still its own, but for
        # If-None-Match and If-Modified-Since: answered from the fresh stored response (a 304);
        # and on the session (issue 24), Range (a 206) and If-Range alone (ignored: the 200).
        hit = await s.get(url)
        assert (hit.status, hit.cache_status, len(await hit.read())) == (200, "hit", len(BODY))
        again = await s.get(url, headers={header: value(3)})
        from_storage = {"If-None-Match": (304, b""), "If-Modified-Since": (304, b"")}
        if client_face is CoalescingSession:
            from_storage.update({"Range": (206, BODY[30:40]), "If-Range": (200, BODY)})
        if header in from_storage:
            got = (again.status, await again.read(), again.cache_status)
            assert got == (*from_storage[header], "hit")
            assert origin.calls["/file"] == 11
        else:
            assert (again.status, again.cache_status) == (status, "bypass")
            assert origin.calls["/file"] == 12


# -- key collisions -------------------------------------------------------------------------------


async def test_an_explicit_host_header_splits_the_key(origin: Origin, client_face: Any) -> None:
    origin.route("/page", gated(origin, lambda r: f"host={r.host}"))
    await origin.start()
    hosts = ["", *(f"h{i}.example" for i in range(5))]
    who = [hosts[i % 6] for i in range(60)]
    async with client_face(ttl=60) as s:

        def calls() -> list[Awaitable[CachedResponse]]:
            return [s.get(origin.url("/page"), headers={"Host": h} if h else None) for h in who]

        results = await answers(await burst(origin, s, calls()))
        assert origin.calls["/page"] == 6
        default = URL(origin.base).authority
        for h, (_, body, _) in zip(who, results, strict=True):
            assert body.startswith(f"host={h or default} #"), (h, body)
        one_flight_each(results, who)
        again = await answers(await burst(origin, s, calls()))
        assert [body for _, body, _ in again] == [body for _, body, _ in results]
        assert origin.calls["/page"] == 6


async def test_auto_decompress_false_splits_the_key(origin: Origin) -> None:
    async def zipped(request: web.Request) -> web.Response:
        n = origin.calls[request.path]
        await origin.wait()
        body = gzip.compress(f"hello #{n}".encode())
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    origin.route("/gz", zipped)
    await origin.start()
    raw = [i % 2 == 0 for i in range(60)]  # a raw caller leads; the rest alternate
    async with CoalescingSession(ttl=60) as s:

        def calls() -> list[Awaitable[CachedResponse]]:
            return [
                s.get(origin.url("/gz"), auto_decompress=False) if r else s.get(origin.url("/gz"))
                for r in raw
            ]

        for round_ in range(2):  # a burst, then the same from storage
            outcomes = await burst(origin, s, calls())
            assert origin.calls["/gz"] == 2
            for r, o in zip(raw, outcomes, strict=True):
                assert isinstance(o, CachedResponse), o
                body = await o.read()
                if r:
                    assert body[:2] == b"\x1f\x8b" and gzip.decompress(body).startswith(b"hello #")
                else:
                    assert body.startswith(b"hello #"), body
            results = await answers(outcomes)
            if round_ == 0:
                one_flight_each(results, ["raw" if r else "plain" for r in raw])
            else:
                assert {st for _, _, st in results} == {"hit"}


async def test_allow_redirects_false_gets_its_own_redirect(origin: Origin) -> None:
    async def old(request: web.Request) -> web.Response:
        n = origin.calls[request.path]
        await origin.wait()
        return web.Response(status=301, text=f"moved #{n}", headers={"Location": "/new"})

    origin.route("/old", old)
    origin.route("/new", gated(origin, lambda r: "new"))
    await origin.start()
    no_follow = [i % 2 == 0 for i in range(60)]  # a caller that does not follow leads
    async with CoalescingSession(ttl=60) as s:

        def calls() -> list[Awaitable[CachedResponse]]:
            url = origin.url("/old")
            return [s.get(url, allow_redirects=False) if n else s.get(url) for n in no_follow]

        for round_ in range(2):  # a burst, then the same from storage (301 is stored)
            results = await answers(await burst(origin, s, calls()))
            assert (origin.calls["/old"], origin.calls["/new"]) == (2, 1)
            for n, (status, body, _) in zip(no_follow, results, strict=True):
                assert (status, body.split(" #")[0]) == ((301, "moved") if n else (200, "new"))
            if round_ == 0:
                one_flight_each(results, [str(n) for n in no_follow])
            else:
                assert {st for _, _, st in results} == {"hit"}


async def test_raw_query_bytes_split_the_key(origin: Origin, client_face: Any) -> None:
    origin.route("/q", gated(origin, lambda r: r.raw_path))
    await origin.start()
    # All three decode to U+FFFD; they are three different requests.
    queries = ["t=%FF", "t=%FE", "t=%EF%BF%BD"]
    who = [queries[i % 3] for i in range(60)]
    async with client_face(ttl=60) as s:

        def calls() -> list[Awaitable[CachedResponse]]:
            return [s.get(URL(origin.url(f"/q?{q}"), encoded=True)) for q in who]

        results = await answers(await burst(origin, s, calls()))
        assert origin.calls["/q"] == 3
        assert all(
            body.startswith(f"/q?{q} #") for q, (_, body, _) in zip(who, results, strict=True)
        )
        one_flight_each(results, who)
        again = await answers(await burst(origin, s, calls()))
        assert [body for _, body, _ in again] == [body for _, body, _ in results]
        assert origin.calls["/q"] == 3


# -- per-caller options ---------------------------------------------------------------------------


async def test_a_followers_timeout_bounds_only_its_own_wait(
    started: Origin, loop_clock: LoopClock
) -> None:
    url = started.url("/text")
    short = aiohttp.ClientTimeout(total=10)
    long = aiohttp.ClientTimeout(total=100)
    # A plain leader; followers: every tenth with a short timeout, every tenth with a long one.
    kinds = ["plain"] + [("short", "long", *["plain"] * 8)[i % 10] for i in range(59)]
    async with CoalescingSession(ttl=60) as s:

        def call(kind: str) -> Awaitable[CachedResponse]:
            if kind == "plain":
                return s.get(url)
            return s.get(url, timeout=short if kind == "short" else long)

        tasks = await line_up(started, s, [call(k) for k in kinds])
        await loop_clock.scheduled(10, "the short followers' own timers")
        loop_clock.advance(11)
        timed_out = [t for k, t in zip(kinds, tasks, strict=True) if k == "short"]
        for t in timed_out:
            with pytest.raises(asyncio.TimeoutError):
                await finished(t, "a short follower gave up")
        assert not any(t.done() for k, t in zip(kinds, tasks, strict=True) if k != "short")
        assert started.calls["/text"] == 1
        started.gate.set()
        rest = [t for k, t in zip(kinds, tasks, strict=True) if k != "short"]
        results = await answers(await finished(asyncio.gather(*rest), "the others answered"))
        assert {body for _, body, _ in results} == {"hello /text #1"}
        assert sorted(st for _, _, st in results) == ["coalesced"] * 53 + ["miss"]
        assert started.calls["/text"] == 1
        assert s.stats.errors == 6
        assert (await s.get(url, timeout=short)).cache_status == "hit"


async def test_a_leaders_short_timeout_does_not_fail_the_followers(
    started: Origin, loop_clock: LoopClock
) -> None:
    url = started.url("/text")
    async with CoalescingSession(ttl=60) as s:
        # The caller with the short timeout leads: its request is at the origin before the others.
        tasks = await line_up(started, s, [s.get(url, timeout=aiohttp.ClientTimeout(total=10))])
        tasks += await line_up(started, s, [s.get(url) for _ in range(59)])
        await loop_clock.scheduled(10, "the leader's own timer")
        loop_clock.advance(11)
        with pytest.raises(asyncio.TimeoutError):
            await finished(tasks[0], "the leader gave up")
        assert not any(t.done() for t in tasks[1:])
        started.gate.set()
        results = await answers(await finished(asyncio.gather(*tasks[1:]), "followers answered"))
        assert {body for _, body, _ in results} == {"hello /text #1"}
        assert {st for _, _, st in results} == {"coalesced"}
        assert started.calls["/text"] == 1
        assert (await s.get(url)).cache_status == "hit"


class Refused(Exception):
    """Raised by a caller's own raise_for_status callable."""


async def refuse(resp: Any) -> None:
    if resp.status >= 400:
        raise Refused(resp.status)


@pytest.mark.parametrize("leader", ["check", "plain"])
async def test_raise_for_status_on_one_caller_raises_for_that_caller_alone(
    origin: Origin, leader: str
) -> None:
    async def missing(request: web.Request) -> web.Response:
        n = origin.calls[request.path]
        await origin.wait()
        return web.Response(status=404, text=f"no #{n}")

    origin.route("/missing", missing)
    await origin.start()
    url = origin.url("/missing")
    # Every fourth follower checks, one with a callable of its own.
    kinds = [leader] + [("check", "plain", "plain", "plain")[i % 4] for i in range(59)]
    kinds[10] = "callable"
    policy = CachePolicy(status_ttl={404: 60})  # the 404 is stored: hits are checked too
    async with CoalescingSession(ttl=60, policy=policy) as s:

        def call(kind: str) -> Awaitable[CachedResponse]:
            if kind == "plain":
                return s.get(url)
            return s.get(url, raise_for_status=True if kind == "check" else refuse)

        for round_ in range(2):  # coalesced, then from storage
            outcomes = await burst(origin, s, [call(k) for k in kinds])
            assert origin.calls["/missing"] == 1
            for kind, o in zip(kinds, outcomes, strict=True):
                if kind == "check":
                    assert isinstance(o, aiohttp.ClientResponseError), o
                    assert o.status == 404
                elif kind == "callable":
                    assert isinstance(o, Refused), o
                else:
                    assert isinstance(o, CachedResponse), o
                    assert (o.status, await o.text()) == (404, "no #1")
                    assert o.cache_status in (("miss", "coalesced") if round_ == 0 else ("hit",))
            raised = sum(k != "plain" for k in kinds)
            assert s.stats.errors == raised * (round_ + 1)


async def test_the_sessions_raise_for_status_applies_to_hits_too(origin: Origin) -> None:
    async def missing(request: web.Request) -> web.Response:
        n = origin.calls[request.path]
        await origin.wait()
        return web.Response(status=404, text=f"no #{n}")

    origin.route("/missing", missing)
    await origin.start()
    url = origin.url("/missing")
    opted_out = [i % 5 == 4 for i in range(60)]  # a checked caller leads; every fifth opts out
    policy = CachePolicy(status_ttl={404: 60})
    async with CoalescingSession(ttl=60, policy=policy, raise_for_status=True) as s:

        def calls() -> list[Awaitable[CachedResponse]]:
            return [s.get(url, raise_for_status=False) if o else s.get(url) for o in opted_out]

        for round_ in range(2):  # coalesced, then from storage
            outcomes = await burst(origin, s, calls())
            assert origin.calls["/missing"] == 1
            for out, o in zip(opted_out, outcomes, strict=True):
                if out:
                    assert isinstance(o, CachedResponse), o
                    assert (o.status, o.cache_status) == (404, ("coalesced", "hit")[round_])
                else:
                    assert isinstance(o, aiohttp.ClientResponseError), o
                    assert o.status == 404


async def test_an_unknown_keyword_and_a_crlf_header_are_rejected_on_a_hit_as_on_a_miss(
    started: Origin,
) -> None:
    async with CoalescingSession(ttl=60) as s:
        for calls_so_far, url in enumerate((started.url("/text"), started.url("/text?stored")), 1):
            stored = url.endswith("stored")
            if stored:
                await s.get(url)
            calls = [s.get(url) for _ in range(40)]
            calls += [s.get(url, bogus=1) for _ in range(5)]
            calls += [s.get(url, headers={"X-Note": "a\r\nX-Evil: 1"}) for _ in range(5)]
            outcomes = await burst(started, s, calls, callers=40)
            assert [type(o) for o in outcomes[40:]] == [TypeError] * 5 + [ValueError] * 5
            good = {o.cache_status for o in outcomes[:40] if isinstance(o, CachedResponse)}
            assert good == ({"hit"} if stored else {"miss", "coalesced"})
            assert started.calls["/text"] == calls_so_far  # one each: the bad calls sent nothing
    # What aiohttp itself raises for them.
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(TypeError):
            await plain.get(started.url("/text"), bogus=1)
        with pytest.raises(ValueError, match=r"carriage return|injection"):
            await plain.get(started.url("/text"), headers={"X-Note": "a\r\nX-Evil: 1"})


# -- Vary ------------------------------------------------------------------------------------------

GREETINGS = {"fr": "bonjour", "de": "hallo", "en": "hello"}


def greeter(origin: Origin, vary: str = "Accept-Language") -> Handler:
    """Hello in the request's Accept-Language, and its call number, after the gate."""

    async def handler(request: web.Request) -> web.Response:
        n = origin.calls[request.path]
        await origin.wait()
        lang = request.headers.get("Accept-Language", "en")
        return web.Response(text=f"{GREETINGS[lang]} #{n}", headers={"Vary": vary})

    return handler


async def test_vary_gives_each_language_its_own_variant_in_a_burst(
    origin: Origin, client_face: Any
) -> None:
    origin.route("/greet", greeter(origin))
    await origin.start()
    langs = [("fr", "de", "en")[i % 3] for i in range(60)]
    async with client_face(ttl=60) as s:

        def calls() -> list[Awaitable[CachedResponse]]:
            url = origin.url("/greet")
            return [s.get(url, headers={"Accept-Language": lang}) for lang in langs]

        results = await answers(await burst(origin, s, calls()))
        assert origin.calls["/greet"] == 3  # one per variant
        for lang, (_, body, _) in zip(langs, results, strict=True):
            assert body.split(" #")[0] == GREETINGS[lang], (lang, body)
        one_flight_each(results, langs)
        again = await answers(await burst(origin, s, calls()))
        assert [body for _, body, _ in again] == [body for _, body, _ in results]
        assert {st for _, _, st in again} == {"hit"}
        assert origin.calls["/greet"] == 3


async def test_vary_star_is_never_stored_nor_shared(origin: Origin, client_face: Any) -> None:
    origin.route("/star", greeter(origin, vary="*"))
    await origin.start()
    langs = [("fr", "de", "en")[i % 3] for i in range(50)]
    async with client_face(ttl=60) as s:

        def calls() -> list[Awaitable[CachedResponse]]:
            url = origin.url("/star")
            return [s.get(url, headers={"Accept-Language": lang}) for lang in langs]

        results = await answers(await burst(origin, s, calls()))
        assert origin.calls["/star"] == 50  # each caller its own request
        assert len({body for _, body, _ in results}) == 50
        for lang, (_, body, _) in zip(langs, results, strict=True):
            assert body.split(" #")[0] == GREETINGS[lang]
        assert {st for _, _, st in results} == {"miss"}
        again = await answers(await burst(origin, s, calls()))
        assert origin.calls["/star"] == 100  # nothing was stored
        assert {st for _, _, st in again} == {"miss"}
        assert s.stats.stored == 0


async def test_max_variants_keeps_the_newest_variants_and_the_oldest_misses_again(
    origin: Origin,
    client_face: Any,
) -> None:
    origin.route("/greet", greeter(origin))
    await origin.start()
    policy = CachePolicy(max_variants=2)
    async with client_face(ttl=60, policy=policy) as s:

        async def burst_of(langs: Sequence[str]) -> dict[str, Counter[str]]:
            """A burst of callers asking for ``langs``; the cache statuses of each language."""
            url = origin.url("/greet")
            calls = [s.get(url, headers={"Accept-Language": lang}) for lang in langs]
            results = await answers(await burst(origin, s, calls))
            for lang, (_, body, _) in zip(langs, results, strict=True):
                assert body.split(" #")[0] == GREETINGS[lang], (lang, body)
            return statuses(results, langs)

        assert await burst_of(["fr"] * 20) == {"fr": Counter(miss=1, coalesced=19)}
        assert await burst_of(["de"] * 20) == {"de": Counter(miss=1, coalesced=19)}
        assert await burst_of(["fr", "de"] * 20) == {"fr": Counter(hit=20), "de": Counter(hit=20)}
        assert origin.calls["/greet"] == 2
        # A third language: the oldest variant (fr) goes.
        assert await burst_of(["en"] * 20) == {"en": Counter(miss=1, coalesced=19)}
        mixed = await burst_of(["fr", "de", "en"] * 20)
        assert mixed == {
            "fr": Counter(miss=1, coalesced=19),  # evicted: fetched again
            "de": Counter(hit=20),
            "en": Counter(hit=20),
        }
        assert origin.calls["/greet"] == 4
        # fr came back, so de (now the oldest) went.
        after = await burst_of(["fr", "de", "en"] * 20)
        assert after == {
            "fr": Counter(hit=20),
            "de": Counter(miss=1, coalesced=19),
            "en": Counter(hit=20),
        }
        assert origin.calls["/greet"] == 5
