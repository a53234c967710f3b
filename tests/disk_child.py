"""A separate process for tests/test_storage_disk.py: one CoalescingSession on a DiskStorage.

    python tests/disk_child.py fetch DIR TTL CLOCK_OFFSET URL...   [--tiered]
    python tests/disk_child.py burst DIR REQUESTS URL...
    python tests/disk_child.py failing-write disk-full|read-only DIR SMALL_URL BIG_URL OTHER_BIG_URL
    python tests/disk_child.py post DIR URL

Each mode prints one JSON object per phase on stdout; ``burst`` prints phase 1, waits for a line on
stdin (so that every process has stored its entries), then reads every URL again and prints phase
2. Warnings logged by coalesce_client are reported, not printed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from coalesce_client import CoalescingSession
from coalesce_client.storage import DiskStorage, MemoryStorage, TieredStorage
from coalesce_client.storage.records import Record


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class CountingDisk:
    """A DiskStorage that counts the reads reaching it (composition, nothing patched)."""

    def __init__(self, disk: DiskStorage) -> None:
        self.disk = disk
        self.reads = 0

    async def get(self, key: str) -> Record | None:
        self.reads += 1
        return await self.disk.get(key)

    async def get_with_expiry(self, key: str) -> tuple[Record, float] | None:
        self.reads += 1
        return await self.disk.get_with_expiry(key)

    async def set(self, key: str, value: Record, ttl: float) -> None:
        await self.disk.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self.disk.delete(key)

    async def clear(self) -> None:
        await self.disk.clear()

    async def close(self) -> None:
        await self.disk.close()


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def fetch(args: list[str]) -> None:
    tiered = "--tiered" in args
    directory, ttl, offset, *urls = (a for a in args if a != "--tiered")

    def clock() -> float:
        return time.time() + float(offset)

    disk = CountingDisk(DiskStorage(directory, clock=clock))
    storage: Any = TieredStorage(MemoryStorage(clock=clock), disk, clock=clock) if tiered else disk
    statuses = []
    async with CoalescingSession(ttl=float(ttl), storage=storage, clock=clock) as s:
        for url in urls:
            async with s.get(url) as r:
                statuses.append([r.cache_status, r.status, (await r.read()).decode()])
    stats = s.stats  # once close() drained the writes in the background
    emit(statuses=statuses, upstream=stats.upstream, stored=stats.stored, disk_reads=disk.reads)


async def burst(args: list[str]) -> None:
    directory, requests, *urls = args
    recorder = Recorder()
    logging.getLogger("coalesce_client").addHandler(recorder)
    async with CoalescingSession(ttl=600, storage=DiskStorage(directory)) as s:

        async def one(url: str) -> tuple[str, bytes]:
            async with s.get(url) as r:
                r.raise_for_status()
                return r.cache_status, await r.read()

        n = int(requests)
        results = await asyncio.gather(
            *(one(urls[i % len(urls)]) for i in range(n)), return_exceptions=True
        )
        errors = [repr(r) for r in results if isinstance(r, BaseException)]
        await s._core.drain()  # the writes still in the background count in ``stored`` too
        emit(phase=1, errors=errors, stored=s.stats.stored, warnings=recorder.messages)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        again = [await one(url) for url in urls]
        emit(
            phase=2,
            statuses=dict(Counter(status for status, _ in again)),
            bodies_ok=all(
                body == url.rsplit("/", 1)[1].encode() * 100
                for url, (_, body) in zip(urls, again, strict=True)
            ),
            warnings=recorder.messages,
        )


@contextlib.contextmanager
def file_size_limit() -> Iterator[None]:
    """Files may not grow past 512 KiB: the kernel answers EFBIG, as a full disk answers ENOSPC,
    and unlike chmod it holds for root too. SIGXFSZ would kill the process first: ignore it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@contextlib.contextmanager
def read_only(directory: str) -> Iterator[None]:
    """The cache directory made read-only mid-run (by its owner: we are not root by then)."""
    os.chmod(directory, 0o555)
    try:
        yield
    finally:
        os.chmod(directory, 0o755)


async def failing_write(args: list[str]) -> None:
    how, directory, small_url, big_url, other_big_url = args
    if os.geteuid() == 0 and how == "read-only":  # root writes anywhere: run as nobody
        # Nobody may not read root's Python installation: load now what is imported lazily later
        # (diskcache names value files with the "hex" codec).
        codecs.lookup("hex")
        os.setgid(65534)
        os.setuid(65534)
    recorder = Recorder()
    logging.getLogger("coalesce_client").addHandler(recorder)
    failing = file_size_limit() if how == "disk-full" else read_only(directory)
    out: dict[str, Any] = {}
    async with CoalescingSession(ttl=600, storage=DiskStorage(directory)) as s:
        async with s.get(small_url) as r:  # the database and its WAL exist before the failure
            await r.read()
        with failing:
            async with s.get(big_url) as r:
                out["failed_write"] = [r.status, r.cache_status, len(await r.read())]
            await s._core.drain()  # the write runs in the background, and fails there
            out["stored_after_failure"] = s.stats.stored
        out["warnings"] = list(recorder.messages)
        for name, url in (("retry", big_url), ("other", other_big_url), ("hit", big_url)):
            async with s.get(url) as r:
                out[name] = [r.status, r.cache_status, len(await r.read())]
    out["stored"] = s.stats.stored  # once close() drained the writes
    emit(**out)


async def post(args: list[str]) -> None:
    """One POST through a session on the directory: its answer invalidates the URL (§4.4)."""
    directory, url = args
    async with CoalescingSession(ttl=600, storage=DiskStorage(directory)) as s:
        r = await s.post(url, data=b"new")
        emit(status=r.status, cache_status=r.cache_status)


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    run = {"fetch": fetch, "burst": burst, "failing-write": failing_write, "post": post}[mode]
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
