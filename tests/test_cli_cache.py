"""coalesce-client cache as a new user meets it (issue 19): an entry kept past its freshness for
revalidation is told apart from one that ``prune`` removes, and one of each is singular."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web
from conftest import FakeClock, Origin
from test_cli import arun

from coalesce_client import CoalescingSession, DiskStorage, Snapshot


async def store_three(origin: Origin, cache: Path) -> float:
    """A fresh entry, a stale one kept for revalidation, an expired one; when the stale one's
    keep ends (its freshness ended 90 s ago, and keep_stale is 600 s)."""

    async def validated(request: web.Request) -> web.Response:
        headers = {"ETag": '"v1"', "Cache-Control": "max-age=10"}
        return web.Response(text="validated", headers=headers)

    origin.route("/validated", validated)
    await origin.start()
    now = time.time()
    for stored_at, path in ((now - 100, "/validated"), (now, "/text")):
        clock = FakeClock(stored_at)
        storage = DiskStorage(cache, clock=clock)
        async with CoalescingSession(ttl=60, storage=storage, clock=clock) as s:
            assert (await s.get(origin.url(path))).cache_status == "miss"
    long_ago = now - 1000  # written by a process whose clock says it expired long ago
    old = DiskStorage(cache, clock=lambda: long_ago)
    expired = Snapshot(200, "OK", (), "http://old.example/", "GET", b"old", long_ago, long_ago + 1)
    await old.set("0" * 64, expired, ttl=1)
    await old.close()
    return now - 100 + 10 + 600


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


async def test_an_entry_kept_for_revalidation_is_not_called_expired(
    origin: Origin, tmp_path: Path
) -> None:
    # Issue 19: stats said "3 (2 expired)", list "expired", and prune removed only one of them.
    cache = tmp_path / "cache"
    kept_until = await store_three(origin, cache)

    stats = await arun("cache", "stats", "--cache-dir", str(cache))
    assert stats.returncode == 0, stats.stderr
    assert (
        "entries:   3 (1 fresh, 1 stale kept for revalidation, 1 expired that prune would remove)"
        in stats.stdout
    ), stats.stdout

    listing = (await arun("cache", "list", "--cache-dir", str(cache))).stdout.splitlines()
    states = {line.split("  ")[-1]: line.split("  ")[-2] for line in listing}
    assert states["http://old.example/"] == "expired"
    stale = states[origin.url("/validated")]
    assert stale.startswith("stale, kept for revalidation until ")
    shown = datetime.strptime(stale[-23:], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc)
    assert abs(shown.timestamp() - kept_until) <= 2, (stale, when(kept_until))
    assert states[origin.url("/text")].startswith("expires ")

    pruned = await arun("cache", "prune", "--cache-dir", str(cache))
    assert pruned.stdout.strip() == "removed 1 expired or unreadable entry or stray file"
    stats = await arun("cache", "stats", "--cache-dir", str(cache))
    assert "entries:   2 (1 fresh, 1 stale kept for revalidation, 0 expired" in stats.stdout


async def test_clear_says_1_entry(started: Origin, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    assert (await arun("fetch", started.url("/text"), "--cache-dir", cache)).returncode == 0
    cleared = await arun("cache", "clear", "--cache-dir", cache)
    assert cleared.stdout.strip() == "removed 1 entry"
