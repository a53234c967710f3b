"""The framework-free pipeline alone: counting, shareability, storage abilities (no aiohttp here).

Each test drives ``Coalescer`` with a ``send`` closure of its own, gated by events, and counts
the real "requests" that closure makes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import astuple

import pytest
from conftest import FakeClock, signalled, until

from coalesce_client import CachePolicy, MemoryStorage, Snapshot, Stats, StorageClosedError
from coalesce_client.core.coalescer import Coalescer
from coalesce_client.core.records import Answer, Call, Fetched, Setup
from coalesce_client.storage.base import ReadsExpiry, ReadsNowait, Storage, StorageBase
from coalesce_client.storage.records import Record

KEY = "k" * 64


def snap(body: bytes = b"body", headers: tuple[tuple[str, str], ...] = ()) -> Snapshot:
    return Snapshot(200, "OK", headers, "http://origin/x", "GET", body)


class Upstream:
    """A ``send`` that counts its calls and holds each at a gate until the test opens it."""

    def __init__(self, response: Snapshot | None = None) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()
        self.response = response if response is not None else snap()

    async def __call__(self) -> Fetched:
        self.calls += 1
        self.arrived.set()
        await self.gate.wait()
        return Fetched(self.response)


def outcomes(stats: Stats) -> int:
    return (
        stats.hits
        + stats.misses
        + stats.coalesced
        + stats.stale
        + stats.revalidated
        + stats.bypassed
    )


class ParkedStorage(MemoryStorage):
    """A storage whose reads wait at a gate: a slow disk, under the test's control."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.gate = asyncio.Event()
        self.reading = asyncio.Event()

    async def get(self, key: str) -> Snapshot | None:
        self.reading.set()
        await self.gate.wait()
        return await super().get(key)


async def test_a_caller_cancelled_during_the_storage_read_counts_in_one_outcome(
    clock: FakeClock,
) -> None:
    storage = ParkedStorage(clock)
    core = Coalescer(storage, Setup.of(policy=None, ttl=60, clock=clock))
    upstream = Upstream()
    task = asyncio.ensure_future(core.fetch(Call(KEY), upstream))
    await storage.reading.wait()
    assert core.stats.requests == 1 and outcomes(core.stats) == 0  # in progress
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = core.stats
    assert (stats.requests, stats.misses, stats.errors, outcomes(stats)) == (1, 1, 1, 1)
    assert upstream.calls == 0


async def test_every_call_counts_in_requests_and_in_exactly_one_outcome(clock: FakeClock) -> None:
    core = Coalescer(MemoryStorage(clock=clock), Setup.of(policy=None, ttl=60, clock=clock))
    upstream = Upstream()
    upstream.gate.clear()
    burst = [asyncio.ensure_future(core.fetch(Call(KEY), upstream)) for _ in range(20)]
    await upstream.arrived.wait()
    assert core.flight.joined == 19  # every follower is waiting on the leader's flight
    upstream.gate.set()
    answers = await asyncio.gather(*burst)
    assert sorted(a.status for a in answers) == ["coalesced"] * 19 + ["miss"]
    assert core.peek(KEY) is not None  # a hit without a coroutine (MemoryStorage reads nowait)
    assert (await core.fetch(Call(KEY), upstream)).status == "hit"
    assert (await core.fetch(Call(None), upstream)).status == "bypass"
    stats = core.stats
    assert astuple(stats) == (23, 2, 1, 19, 0, 0, 1, 1, 0, 2)
    assert stats.requests == outcomes(stats)
    assert upstream.calls == 2


async def test_the_request_is_cancelled_when_its_last_caller_leaves_followers_included(
    clock: FakeClock,
) -> None:
    core = Coalescer(MemoryStorage(clock=clock), Setup.of(policy=None, ttl=60, clock=clock))
    upstream = Upstream()
    upstream.gate.clear()
    leader = asyncio.ensure_future(core.fetch(Call(KEY), upstream))
    await upstream.arrived.wait()
    followers = [asyncio.ensure_future(core.fetch(Call(KEY), upstream)) for _ in range(2)]
    await until(lambda: core.flight.joined == 2, "the followers joined")
    for caller in (leader, followers[0]):  # the others still want the response
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert KEY in core.flight
    followers[1].cancel()  # the last one out: nobody wants it any more
    with pytest.raises(asyncio.CancelledError):
        await followers[1]
    assert KEY not in core.flight
    stats = core.stats
    assert (stats.requests, stats.misses, stats.coalesced, stats.errors) == (3, 1, 2, 3)


async def test_a_body_in_memory_is_shared_whatever_its_size_and_stored_within_max_stored_size(
    clock: FakeClock,
) -> None:
    """Issue 24: the faces stream a body over max_body_size (Snapshot.stream); a body the face
    hands over as bytes is shared by the flight as it is, and stored up to max_stored_size."""
    policy = CachePolicy(max_body_size=3, max_stored_size=3)
    core = Coalescer(
        MemoryStorage(clock=clock),
        Setup.of(policy=policy, ttl=60, clock=clock, shared_cache=False),
    )
    upstream = Upstream(snap(b"four"))
    upstream.gate.clear()
    burst = [asyncio.ensure_future(core.fetch(Call(KEY), upstream)) for _ in range(5)]
    await upstream.arrived.wait()
    assert core.flight.joined == 4
    upstream.gate.set()
    answers = await asyncio.gather(*burst)
    assert sorted(a.status for a in answers) == ["coalesced"] * 4 + ["miss"]
    assert all(a.snapshot is not None and a.snapshot.body == b"four" for a in answers)
    assert {a.reason for a in answers} == {"body over max_stored_size"}
    assert upstream.calls == 1
    assert core.stats.stored == 0


@pytest.mark.parametrize(
    "headers",
    [
        (("Set-Cookie", "session=alice"),),
        (("Cache-Control", "private, max-age=60"),),
        (("Cache-Control", "no-store"),),
    ],
)
async def test_a_shared_cache_never_shares_a_private_response(
    clock: FakeClock, headers: tuple[tuple[str, str], ...]
) -> None:
    core = Coalescer(
        MemoryStorage(clock=clock), Setup.of(policy=None, ttl=60, clock=clock, shared_cache=True)
    )
    upstream = Upstream(snap(b"alice's page", headers))
    upstream.gate.clear()
    burst = [asyncio.ensure_future(core.fetch(Call(KEY), upstream)) for _ in range(10)]
    await upstream.arrived.wait()
    upstream.gate.set()
    answers = await asyncio.gather(*burst)
    assert [a.status for a in answers] == ["miss"] * 10
    assert upstream.calls == 10
    # Remembered as pass-through (hit-for-miss): the next call neither waits nor coalesces.
    assert (await core.fetch(Call(KEY), upstream)).status == "bypass"
    assert core.stats.stored == 0


async def test_a_private_cache_shares_set_cookie_responses_within_a_flight(
    clock: FakeClock,
) -> None:
    core = Coalescer(
        MemoryStorage(clock=clock), Setup.of(policy=None, ttl=60, clock=clock, shared_cache=False)
    )
    upstream = Upstream(snap(b"page", (("Set-Cookie", "a=1"),)))
    upstream.gate.clear()
    burst = [asyncio.ensure_future(core.fetch(Call(KEY), upstream)) for _ in range(3)]
    await upstream.arrived.wait()
    upstream.gate.set()
    answers = await asyncio.gather(*burst)
    assert upstream.calls == 1
    leader = next(a for a in answers if a.status == "miss")
    assert leader.snapshot is not None and leader.snapshot.header("set-cookie") == "a=1"
    followers = [a for a in answers if a.status == "coalesced"]
    assert all(
        a.snapshot is not None and a.snapshot.header("set-cookie") is None for a in followers
    )


class NoNowait(StorageBase):
    """A storage without the optional abilities: only the Storage protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = MemoryStorage()
        self.reads = 0

    async def get(self, key: str) -> Snapshot | None:
        self.reads += 1
        return await self.inner.get(key)

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
        await self.inner.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def clear(self) -> None:
        await self.inner.clear()

    async def close(self) -> None:
        self._closed = True


async def test_optional_abilities_are_protocols_checked_with_isinstance(clock: FakeClock) -> None:
    plain = NoNowait()
    assert isinstance(plain, Storage)
    assert not isinstance(plain, ReadsNowait) and not isinstance(plain, ReadsExpiry)
    assert isinstance(MemoryStorage(), ReadsNowait)
    core = Coalescer(plain, Setup.of(policy=None, ttl=60, clock=clock))
    await core.fetch(Call(KEY), Upstream())
    await core.drain()  # the write done: nothing pending that peek could answer from
    assert core.peek(KEY) is None  # no get_nowait: peek never guesses, fetch reads
    reads = plain.reads
    assert (await core.fetch(Call(KEY), Upstream())).status == "hit"
    assert plain.reads == reads + 1


async def test_a_closed_storage_raises_through_the_one_check() -> None:
    storage = NoNowait()
    await storage.close()
    assert storage.closed
    with pytest.raises(StorageClosedError, match="NoNowait is closed"):
        storage._check_open()


def test_the_whole_core_imports_without_aiohttp_diskcache_or_redis() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'aiohttp', 'diskcache', 'redis', 'yarl', 'multidict'}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import coalesce_client.core.flight, coalesce_client.core.keys\n"
        "import coalesce_client.spec.snapshot, coalesce_client.storage.codec\n"
        "import coalesce_client.core.policy, coalesce_client.core.coalescer\n"
        "import coalesce_client.options\n"
        "import coalesce_client.spec.freshness, coalesce_client.spec.dates\n"
        "import coalesce_client.spec.cache_control\n"
        "import coalesce_client.storage.base, coalesce_client.storage.memory\n"
        "import coalesce_client.storage.tiered\n"
        "print('core ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "core ok"


class VaryingUpstream:
    """A ``send`` per caller that answers in the caller's language, with ``Vary``."""

    def __init__(self, vary: str = "Accept-Language") -> None:
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.vary = vary

    def send_for(self, lang: str) -> Callable[[], Awaitable[Fetched]]:
        async def send() -> Fetched:
            self.calls.append(lang)
            await self.gate.wait()
            headers = (("Vary", self.vary), ("Content-Language", lang))
            return Fetched(snap(f"hello in {lang}".encode(), headers))

        return send


@pytest.mark.parametrize("stored", [True, False], ids=["stored", "ttl-0"])
async def test_callers_of_other_variants_coalesce_among_themselves(
    clock: FakeClock, stored: bool
) -> None:
    core = Coalescer(
        MemoryStorage(clock=clock), Setup.of(policy=None, ttl=60 if stored else 0, clock=clock)
    )
    upstream = VaryingUpstream()
    langs = ["fr", "de", "en"] * 20

    def call(lang: str) -> Awaitable[Answer]:
        return core.fetch(Call(KEY, header={"accept-language": lang}.get), upstream.send_for(lang))

    burst = [asyncio.ensure_future(call(lang)) for lang in langs]
    await until(lambda: len(upstream.calls) == 1, "the first flight started")
    upstream.gate.set()
    answers = await asyncio.gather(*burst)
    wrong = [
        (lang, a.snapshot.body)
        for lang, a in zip(langs, answers, strict=True)
        if a.snapshot is None or a.snapshot.body != f"hello in {lang}".encode()
    ]
    assert wrong == []
    assert sorted(upstream.calls) == ["de", "en", "fr"]  # one real request per variant
    if stored:
        for lang in ("fr", "de", "en"):
            assert (await call(lang)).status == "hit"
        assert core.peek(KEY, {"accept-language": "de"}.get) is not None
        assert core.peek(KEY, {"accept-language": "it"}.get) is None
    assert len(upstream.calls) == 3


async def test_vary_star_is_never_stored_nor_shared(clock: FakeClock) -> None:
    core = Coalescer(MemoryStorage(clock=clock), Setup.of(policy=None, ttl=60, clock=clock))
    upstream = VaryingUpstream(vary="*")
    burst = [
        asyncio.ensure_future(core.fetch(Call(KEY, header={}.get), upstream.send_for("fr")))
        for _ in range(5)
    ]
    await until(lambda: len(upstream.calls) == 1, "the first flight started")
    upstream.gate.set()
    answers = await asyncio.gather(*burst)
    assert [a.status for a in answers] == ["miss"] * 5
    assert len(upstream.calls) == 5
    assert core.stats.stored == 0


async def test_background_refreshes_are_bounded_and_drained(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stale-while-revalidate: at most MAX_REFRESHES refreshes run at once (the others' callers
    are still served stale, and a later caller starts theirs); drain() waits for them."""
    import coalesce_client.core.refreshes as refreshes_module

    monkeypatch.setattr(refreshes_module, "MAX_REFRESHES", 2)
    core = Coalescer(
        MemoryStorage(clock=clock),
        Setup.of(policy=CachePolicy(stale_while_revalidate=60), ttl=10, clock=clock),
    )

    class Refresh(Upstream):
        async def __call__(self, conditional: object = (), detached: bool = False) -> Fetched:
            return await super().__call__()

    upstream = Refresh()
    keys = [f"{i:064x}" for i in range(5)]
    for key in keys:
        assert (await core.fetch(Call(key), upstream)).status == "miss"
    clock.advance(20)  # every entry stale, within the window
    upstream.gate.clear()
    answers = [await core.fetch(Call(key), upstream) for key in keys]
    assert [a.status for a in answers] == ["stale"] * 5
    await until(lambda: upstream.calls == 5 + 2, "two refreshes at the origin")
    assert len(core._refreshes) == 2  # the bound: three callers started none
    upstream.gate.set()
    await core.drain()
    assert not core._refreshes and upstream.calls == 7
    assert outcomes(core.stats) == core.stats.requests == 10


class SlowWrites(MemoryStorage):
    """A storage whose writes wait at a gate, and say when they are done as their last step."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.gate = asyncio.Event()
        self.written = asyncio.Event()

    async def set(self, key: str, value: Record, ttl: float) -> None:
        await self.gate.wait()
        await super().set(key, value, ttl)
        self.written.set()  # the test wakes before the write's task is done


@pytest.mark.timeout(10)
async def test_draining_as_a_background_write_ends_does_not_spin(clock: FakeClock) -> None:
    """Issue 26: on Python 3.12+ gather() of done futures returns without yielding, so a drain
    that waited for the done callbacks to empty its set spun forever."""
    storage = SlowWrites(clock)  # the caller is answered at once, stored in the background
    core = Coalescer(storage, Setup.of(policy=None, ttl=60, clock=clock))
    assert (await core.fetch(Call(KEY), Upstream())).status == "miss"
    storage.gate.set()
    await signalled(storage.written, "the background write")
    await core.drain()  # at once: the write's done callbacks have not run yet
    assert core.stats.stored == 1 and await storage.get(KEY) is not None


class TurnStorage(MemoryStorage):
    """A storage whose every read takes one turn of the loop, as a disk's or a network's does."""

    async def get(self, key: str) -> Record | None:
        await asyncio.sleep(0)
        return await super().get(key)


async def test_callers_of_other_variants_regroup_when_storage_reads_suspend(
    clock: FakeClock,
) -> None:
    """Issue 26: the regrouped followers read storage for their variant (each read a turn of the
    loop; nothing is stored, ttl 0), then all of a variant share one flight, whichever of them
    the loop resumes first."""
    core = Coalescer(TurnStorage(clock=clock), Setup.of(policy=None, ttl=0, clock=clock))
    upstream = VaryingUpstream()
    langs = ["fr", "de", "en"] * 20
    burst = [
        asyncio.ensure_future(
            core.fetch(Call(KEY, header={"accept-language": lang}.get), upstream.send_for(lang))
        )
        for lang in langs
    ]
    await until(lambda: len(upstream.calls) == 1, "the first flight started")
    upstream.gate.set()
    answers = await asyncio.gather(*burst)
    assert [a.snapshot.body if a.snapshot else None for a in answers] == [
        f"hello in {lang}".encode() for lang in langs
    ]
    assert sorted(upstream.calls) == ["de", "en", "fr"]  # one real request per variant
