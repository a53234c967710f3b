"""The ``cache`` subcommand: inspect or clean a disk cache written by ``DiskStorage``.

Rules: never a new cache where there was none, so a directory that is missing, or holds no cache,
is bad input. ``stats`` and ``list`` only read, so that they work on a read-only cache and change
nothing in it; ``clear`` removes every entry, ``prune`` the expired ones. Entries are responses:
what the storage keeps for its own bookkeeping (Vary pointers, URL indexes) is never listed nor
counted, though ``clear`` and ``prune`` remove it too. An entry is *fresh* until its
``expires_at``; past it, the storage may keep it longer to be revalidated or served stale
(``keep_stale``, ``stale-while-revalidate``, ``stale-if-error``): it is *stale, kept for
revalidation* until the storage's own expiry of it, which ``get_with_expiry`` tells, and
*expired* after that, when ``prune`` removes it. The cache is opened before the event loop starts
and closed whatever happens; everything on the loop is async. Output goes to stdout, exit status 0.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple, get_args

from ._common import open_disk, plural, unreachable

if TYPE_CHECKING:
    from .. import DiskStorage, Snapshot

Action = Literal["stats", "list", "clear", "prune"]
ACTIONS: tuple[Action, ...] = get_args(Action)
_READS_ONLY: tuple[Action, ...] = ("stats", "list")
_PRUNED = "expired or unreadable entries and stray files"

Kind = Literal["fresh", "stale", "expired"]


class State(NamedTuple):
    """Where an entry stands now (module rules): fresh until ``until``, or stale and kept until
    ``until``; an expired one's ``until`` is when its freshness ended."""

    kind: Kind
    until: float


async def _state(storage: DiskStorage, key: str, snap: Snapshot, now: float) -> State:
    if snap.expires_at > now:
        return State("fresh", snap.expires_at)
    # Past its freshness: the storage's own expiry says how long it is kept. stats and list open
    # the cache read-only, so this read deletes nothing, even where the row has expired.
    kept = await storage.get_with_expiry(key)
    if kept is None or not kept[1] > now:
        return State("expired", snap.expires_at)
    return State("stale", kept[1])


def run(action: Action, directory: Path) -> int:
    storage = open_disk(directory, create=False, read_only=action in _READS_ONLY)
    asyncio.run(_act(action, directory, storage))
    return 0


async def _act(action: Action, directory: Path, storage: DiskStorage) -> None:
    try:
        if action == "stats":
            await _stats(directory, storage)
        elif action == "list":
            await _list(storage)
        elif action == "clear":
            await _clear(storage)
        elif action == "prune":
            removed = await storage.prune()
            what = plural(removed, "expired or unreadable entry or stray file", _PRUNED)
            print(f"removed {what}")
        else:
            unreachable(action)
    finally:
        await storage.close()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _urls(snap: Snapshot) -> str:
    """The URL that was asked for, then where its redirects led if elsewhere."""
    requested = snap.history[0].url if snap.history else snap.url
    return requested if requested == snap.url else f"{requested} -> {snap.url}"


async def _stats(directory: Path, storage: DiskStorage) -> None:
    now = time.time()
    kinds = dict.fromkeys(get_args(Kind), 0)
    oldest = newest = None
    async for key, snap in storage.entries():
        kinds[(await _state(storage, key, snap, now)).kind] += 1
        oldest = snap.stored_at if oldest is None else min(oldest, snap.stored_at)
        newest = snap.stored_at if newest is None else max(newest, snap.stored_at)
    print(f"directory: {directory}")
    print(
        f"entries:   {sum(kinds.values())} ({kinds['fresh']} fresh, {kinds['stale']} stale kept "
        f"for revalidation, {kinds['expired']} expired that prune would remove)"
    )
    print(f"bytes:     {await storage.volume()}")
    if oldest is not None and newest is not None:
        print(f"oldest:    {_when(oldest)}")
        print(f"newest:    {_when(newest)}")


async def _list(storage: DiskStorage) -> None:
    """One line per entry, oldest first."""
    now = time.time()
    listed = []  # (stored_at, line): the bodies are not kept
    async for key, snap in storage.entries():
        shown = _shown(await _state(storage, key, snap, now))
        line = f"{key[:16]}  {snap.status}  {_body_size(snap):>9}  {shown}  {_urls(snap)}"
        listed.append((snap.stored_at, line))
    for _, line in sorted(listed, key=lambda item: item[0]):
        print(line)


def _body_size(snap: Snapshot) -> int:
    """The body's length, a streamed entry's (issue 24: in a file of its own) included."""
    stream = snap.stream
    return len(snap.body) if stream is None else stream.length or 0


def _shown(where: State) -> str:
    if where.kind == "fresh":
        return f"expires {_when(where.until)}"
    if where.kind == "stale":
        return f"stale, kept for revalidation until {_when(where.until)}"
    return "expired"


async def _clear(storage: DiskStorage) -> None:
    count = 0
    async for _ in storage.entries():
        count += 1
    await storage.clear()
    print(f"removed {plural(count, 'entry', 'entries')}")
