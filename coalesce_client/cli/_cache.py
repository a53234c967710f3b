"""The ``cache`` subcommand: inspect or clean a disk cache written by ``DiskStorage``.

Rules: never a new cache where there was none, so a directory that is missing, or holds no cache,
is bad input. ``stats`` and ``list`` only read, so that they work on a read-only cache and change
nothing in it; ``clear`` removes every entry, ``prune`` the expired ones. Entries are responses:
what the storage keeps for its own bookkeeping (Vary pointers, URL indexes) is never listed nor
counted, though ``clear`` and ``prune`` remove it too. The cache is opened before the event loop
starts and closed whatever happens; everything on the loop is async. Output goes to stdout, exit
status 0.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from ._common import UsageError, open_disk, unreachable

if TYPE_CHECKING:
    from .. import DiskStorage, Snapshot

Action = Literal["stats", "list", "clear", "prune"]
ACTIONS: tuple[Action, ...] = get_args(Action)
_READS_ONLY: tuple[Action, ...] = ("stats", "list")


def run(action: Action, directory: Path) -> int:
    if not directory.is_dir():
        raise UsageError(f"no cache directory at {directory}")
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
            print(f"removed {await storage.prune()} expired or unreadable entries and stray files")
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
    count = expired = 0
    oldest = newest = None
    async for _, snap in storage.entries():
        count += 1
        expired += snap.expires_at <= now
        oldest = snap.stored_at if oldest is None else min(oldest, snap.stored_at)
        newest = snap.stored_at if newest is None else max(newest, snap.stored_at)
    print(f"directory: {directory}")
    print(f"entries:   {count} ({expired} expired)")
    print(f"bytes:     {await storage.volume()}")
    if oldest is not None and newest is not None:
        print(f"oldest:    {_when(oldest)}")
        print(f"newest:    {_when(newest)}")


async def _list(storage: DiskStorage) -> None:
    """One line per entry, oldest first."""
    now = time.time()
    listed = []  # (stored_at, line): the bodies are not kept
    async for key, snap in storage.entries():
        state = "expired" if snap.expires_at <= now else f"expires {_when(snap.expires_at)}"
        line = f"{key[:16]}  {snap.status}  {len(snap.body):>9}  {state}  {_urls(snap)}"
        listed.append((snap.stored_at, line))
    for _, line in sorted(listed, key=lambda item: item[0]):
        print(line)


async def _clear(storage: DiskStorage) -> None:
    count = 0
    async for _ in storage.entries():
        count += 1
    await storage.clear()
    print(f"removed {count} entries")
