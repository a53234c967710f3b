"""DiskStorage with a large streamed entry (issue 24): 100 concurrent hits of a 200 MiB body read
from its file, and a Range-like read of its last KiB.

    python benchmarks/bench_disk_large.py            # 200 MiB, 100 readers (about half a minute)
    python benchmarks/bench_disk_large.py --quick    # 40 MiB, 100 readers, a few seconds

No network. The cache lives in a temporary directory on the local disk, removed at the end. Prints
figures only; nothing here is a pass/fail test (the goals of issue 24 are shown as met or missed).

What is measured, each in a child process of its own (this file run as a script), so that its peak
RSS (``ru_maxrss``) is its own:

1. Store: the body streams into ``DiskStorage.set`` (``Snapshot.stream``, generated 256 KiB at a
   time, never held whole); wall time, throughput, and the child's peak RSS over its baseline
   (its peak once the storage is open, before the body arrives).
2. 100 concurrent hits: 100 tasks each ``get`` the entry and read its stream to the end, 64 KiB at
   a time, hashing what they read; wall time, the bytes read from the file
   (``DiskStorage.body_bytes_read``), every hash checked against the body's, and the peak RSS over
   the baseline (the child's peak after a first hit of 1 KiB). Goal: within + 64 MiB.
3. Range: a fresh ``get`` and a reader of the last 1 KiB (``stream.reader(length - 1024)``); the
   bytes read from the file. Goal: at most a few blocks (a block is 256 KiB).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.storage import DiskStorage

KEY = "ab" * 32
CHUNK = 256 * 1024
READ = 64 * 1024
MIB = 1024 * 1024


def chunk_of(n: int) -> bytes:
    """The ``n``-th 256 KiB of the body: each one differs (a block read twice or out of order
    would change the hash)."""
    return n.to_bytes(8, "big") * (CHUNK // 8)


def body_hash(size: int) -> str:
    digest = hashlib.sha256()
    for n in range(size // CHUNK):
        digest.update(chunk_of(n))
    return digest.hexdigest()


class Generated:
    """A streamed body made 256 KiB at a time as the storage reads it (never held whole)."""

    def __init__(self, size: int) -> None:
        self.size = size

    @property
    def length(self) -> int | None:
        return None  # as a chunked response: the storage learns it at the end

    def reader(self, start: int = 0, end: int | None = None) -> Any:
        return _GeneratedReader(self.size)

    async def complete(self) -> int:
        return self.size


class _GeneratedReader:
    def __init__(self, size: int) -> None:
        self.size, self.n = size, 0

    async def read(self, n: int = -1) -> bytes:
        if self.n * CHUNK >= self.size:
            return b""
        self.n += 1
        return chunk_of(self.n - 1)

    def close(self) -> None:
        pass


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def store(directory: str, size: int) -> dict[str, Any]:
    storage = DiskStorage(directory)
    try:
        baseline = peak_mib()
        started = time.perf_counter()
        snap = Snapshot(200, "OK", (), "http://127.0.0.1/big", "GET", b"", stream=Generated(size))
        await storage.set(KEY, snap, 3600)
        elapsed = time.perf_counter() - started
    finally:
        await storage.close()
    return {"seconds": elapsed, "baseline": baseline, "peak": peak_mib()}


async def hit(storage: DiskStorage) -> str:
    snap = await storage.get(KEY)
    assert snap is not None and snap.stream is not None
    digest = hashlib.sha256()
    reader = snap.stream.reader()
    try:
        while chunk := await reader.read(READ):
            digest.update(chunk)
    finally:
        reader.close()
    return digest.hexdigest()


async def hits(directory: str, readers: int) -> dict[str, Any]:
    storage = DiskStorage(directory)
    try:
        first = await storage.get(KEY)  # warm: the storage, its threads, one block read
        assert first is not None and first.stream is not None
        reader = first.stream.reader(0, 1024)
        await reader.read()
        reader.close()
        del first, reader
        baseline, before = peak_mib(), storage.body_bytes_read
        started = time.perf_counter()
        hashes = await asyncio.gather(*(hit(storage) for _ in range(readers)))
        elapsed = time.perf_counter() - started
        read = storage.body_bytes_read - before
        peak = peak_mib()
        snap = await storage.get(KEY)  # a Range-like read of the last KiB
        assert snap is not None and snap.stream is not None
        before = storage.body_bytes_read
        tail = snap.stream.reader(snap.stream.length - 1024)  # type: ignore[operator]
        got = await tail.read()
        tail.close()
        ranged = storage.body_bytes_read - before
    finally:
        await storage.close()
    return {
        "seconds": elapsed,
        "baseline": baseline,
        "peak": peak,
        "read": read,
        "hashes": sorted(set(hashes)),
        "range_bytes": len(got),
        "range_read": ranged,
    }


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 MiB instead of 200 MiB")
    args = parser.parse_args()
    size = (40 if args.quick else 200) * MIB
    readers = 100
    directory = tempfile.mkdtemp(prefix="bench-disk-large-")
    try:
        print(f"Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}")
        wrote = child("store", directory, str(size))
        mib = size / MIB
        print(
            f"store {mib:.0f} MiB as it streams: {wrote['seconds']:.2f} s "
            f"({mib / wrote['seconds']:.0f} MiB/s), peak RSS {wrote['peak']:.0f} MiB, "
            f"+{wrote['peak'] - wrote['baseline']:.1f} MiB over its baseline"
        )
        got = child("hits", directory, str(readers))
        right = got["hashes"] == [body_hash(size)]
        grown = got["peak"] - got["baseline"]
        goal = "met" if grown <= 64 else "MISSED"
        print(
            f"{readers} concurrent hits of {mib:.0f} MiB: {got['seconds']:.2f} s "
            f"({readers * mib / got['seconds']:.0f} MiB/s served), "
            f"{got['read'] / MIB:.0f} MiB read from the file, every body "
            f"{'identical to the origin' if right else 'WRONG'}"
        )
        print(
            f"  peak RSS {got['peak']:.0f} MiB, +{grown:.1f} MiB over its baseline "
            f"{got['baseline']:.0f} MiB (goal: within + 64 MiB: {goal})"
        )
        print(
            f"Range of the last 1 KiB: {got['range_bytes']} bytes answered, "
            f"{got['range_read']} bytes read from the file ({got['range_read'] / CHUNK:.2f} blocks "
            f"of 256 KiB; goal: a few: {'met' if got['range_read'] <= 4 * CHUNK else 'MISSED'})"
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("store", "hits"):
        mode, directory, number = sys.argv[1:4]
        work = store(directory, int(number)) if mode == "store" else hits(directory, int(number))
        print(json.dumps(asyncio.run(work)))
    else:
        main()
