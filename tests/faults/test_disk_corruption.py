"""Fault case: a damaged disk cache never serves a wrong body, and a writer killed mid-write leaves
nothing that reopening, ``volume()`` and ``prune()`` do not handle (issue 11).

    pytest tests/faults/test_disk_corruption.py -s                         # QUICK (the suite's)
    COALESCE_FAULTS=full pytest tests/faults/test_disk_corruption.py -s    # FULL (for the note)

QUICK runs 4 seeds of corruption and 2 kills in a few seconds; FULL runs 300 seeds and 65 kills in
about two minutes. Each test prints its figures (``-s`` shows them). Self-contained: its own origin
on 127.0.0.1, its own child processes (this file run as a script), nothing from ``conftest``.

Disk corruption:

1. 120 responses from the origin are stored through a ``CoalescingSession`` on a real
   ``DiskStorage``: 80 of 1-24 KiB (kept inside SQLite) and 40 of 40-160 KiB (in value files).
   What was stored is recorded: each key's URL, body and whole record (as digests), the URL
   indexes stored with the responses included.
2. For each seed, a copy of the directory is damaged: random bytes written over 1 to 12 random
   places of ``cache.db`` (1 to 1,024 bytes each), and random bytes XORed into a random third of
   the value files (1 to 4 places each; one seed in three also truncates one file).
3. A new process opens every copy and reads every key twice with ``DiskStorage.get``, then lists
   the entries, prunes, measures the volume and stores one entry. Documented outcomes only:
   construction raises ``ValueError`` or ``OSError`` (a refused directory); ``get`` returns the
   stored snapshot or None and never raises; maintenance and writes raise ``OSError`` or
   ``TimeoutError`` at worst.

Asserted: 0 wrong bodies (nor any other field differing from what was stored), 0 undocumented
exceptions, every key whose value file was damaged reads as a miss (twice), a miss stays a miss,
at most one WARNING per storage, and enough was damaged and served to mean something.

Kill -9: a child stores 100 KiB responses while this process holds the database's write lock,
so that its write has its file on disk and waits for the lock to commit the row; the child is
killed then (and, in the other rounds, at a random moment of a stream of writes). The directory
is reopened here: no error, every entry readable is right, ``volume()`` counts the orphaned
files, ``prune()`` leaves them while they are younger than its grace and removes them after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from coalesce_client import CoalescingSession
from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.storage import DiskStorage
from coalesce_client.storage.codec import encode
from coalesce_client.storage.disk.files import ORPHAN_GRACE
from coalesce_client.storage.records import Record, UrlIndex

FULL = os.environ.get("COALESCE_FAULTS", "quick") == "full"
SEEDS = 300 if FULL else 4
HELD_KILLS = 5 if FULL else 1
RANDOM_KILLS = 60 if FULL else 1
ENTRIES = 120
CHILD_TIMEOUT = 120.0  # seconds: a child that takes longer is stuck (fail, with its stderr)
TIMEOUT = 600 if FULL else 60  # seconds for each test as a whole


# -- what is stored -------------------------------------------------------------------------------


def body_for(n: int) -> bytes:
    """Response ``n``'s body: 80 small ones (in SQLite), 40 large ones (in value files)."""
    rng = random.Random(n)
    size = rng.randint(40, 160) * 1024 if n % 3 == 2 else rng.randint(1, 24) * 1024
    return rng.randbytes(size)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def store_responses(directory: Path) -> dict[str, dict[str, str]]:
    """Store ``ENTRIES`` responses from a local origin; what was stored, by key."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body_for(int(request.match_info["n"])))

    app = web.Application()
    app.router.add_get("/r/{n}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with CoalescingSession(ttl=3600, storage=DiskStorage(directory)) as s:
            for n in range(ENTRIES):
                async with s.get(f"http://127.0.0.1:{port}/r/{n}") as r:
                    assert r.status == 200 and await r.read() == body_for(n)
        assert s.stats.stored == ENTRIES  # once close() drained the writes in the background
    finally:
        await runner.cleanup()
    storage = DiskStorage(directory)
    try:
        responses = {key async for key, _ in storage.entries()}
        stored: dict[str, Record] = {}
        for key in keys_of(directory):
            record = await storage.get(key)
            assert record is not None
            stored[key] = record
    finally:
        await storage.close()
    # Each response and its URL's index: a damaged index must not be served either.
    assert len(stored) == 2 * ENTRIES and len(responses) == ENTRIES
    assert {k for k, r in stored.items() if not isinstance(r, UrlIndex)} == responses
    return {
        key: {"body": digest(body_of(record)), "record": digest(encode(record)), "url": record.url}
        for key, record in stored.items()
    }


def keys_of(directory: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con:
        return [key for (key,) in con.execute("SELECT key FROM Cache")]


def body_of(record: Record | None) -> bytes:
    return record.body if isinstance(record, Snapshot) else b""


def files_by_key(directory: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con:
        rows = con.execute("SELECT key, filename FROM Cache WHERE filename IS NOT NULL")
        return dict(rows.fetchall())


# -- damage ---------------------------------------------------------------------------------------


def damage(directory: Path, seed: int) -> dict[str, Any]:
    """Random bytes into ``directory``'s database and into a third of its value files."""
    rng = random.Random(seed)
    database = directory / "cache.db"
    data = bytearray(database.read_bytes())
    db_bytes = 0
    for _ in range(rng.randint(1, 12)):
        length = rng.choice((1, 4, 16, 64, 256, 1024))
        at = rng.randrange(len(data))
        patch = rng.randbytes(length)[: len(data) - at]
        data[at : at + len(patch)] = patch
        db_bytes += len(patch)
    files = files_by_key(directory)
    damaged_keys = sorted(rng.sample(sorted(files), len(files) // 3))
    file_bytes = truncated = 0
    for i, key in enumerate(damaged_keys):
        path = directory / files[key]
        content = bytearray(path.read_bytes())
        if i == 0 and seed % 3 == 0:
            path.write_bytes(bytes(content[: len(content) // 2]))
            truncated += 1
            continue
        for _ in range(rng.randint(1, 4)):
            length = rng.choice((1, 8, 64))
            at = rng.randrange(len(content) - length)
            for j in range(at, at + length):
                content[j] ^= rng.randint(1, 255)  # never 0: every byte really changes
            file_bytes += length
        path.write_bytes(bytes(content))
    database.write_bytes(bytes(data))  # after reading the file names from it
    return {
        "dir": str(directory),
        "damaged_file_keys": damaged_keys,
        "db_bytes": db_bytes,
        "file_bytes": file_bytes,
        "truncated": truncated,
    }


# -- the reading child ----------------------------------------------------------------------------

DOCUMENTED_ON_OPEN = (ValueError, OSError)
DOCUMENTED_ON_MAINTENANCE = (OSError, TimeoutError)  # TimeoutError is an OSError too


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


async def read_damaged(plan: dict[str, Any]) -> None:
    """Child: read every damaged copy of the plan; print one JSON line of results per copy."""
    manifest: dict[str, dict[str, str]] = plan["manifest"]
    warnings = Warnings()
    logging.getLogger("coalesce_client").addHandler(warnings)
    for copy in plan["copies"]:
        warnings.count = 0
        out: dict[str, Any] = {"dir": copy["dir"], "served": 0, "misses": 0, "wrong": [],
                               "undocumented": [], "refused": None, "missed_keys": [],
                               "damaged_file_served": []}  # fmt: skip
        try:
            storage = DiskStorage(copy["dir"])
        except DOCUMENTED_ON_OPEN as exc:
            out["refused"] = f"{type(exc).__name__}: {exc}"
            print(json.dumps(out), flush=True)
            continue
        except Exception as exc:
            out["undocumented"].append(f"open: {type(exc).__name__}: {exc}")
            print(json.dumps(out), flush=True)
            continue
        for key, stored in manifest.items():
            outcomes = []
            for _ in range(2):
                try:
                    snap = await storage.get(key)
                except Exception as exc:
                    out["undocumented"].append(f"get: {type(exc).__name__}: {exc}")
                    outcomes.append("error")
                    continue
                outcomes.append(judge(key, snap, stored, out))
            if outcomes[0] == "miss":
                out["missed_keys"].append(key)
                if outcomes[1] != "miss":
                    out["undocumented"].append(f"a miss became {outcomes[1]} for {key}")
            if "served" in outcomes and key in copy["damaged_file_keys"]:
                out["damaged_file_served"].append(key)
        out["warnings"] = warnings.count
        await maintain(storage, manifest, out)
        try:
            await storage.close()
        except Exception as exc:
            out["undocumented"].append(f"close: {type(exc).__name__}: {exc}")
        print(json.dumps(out), flush=True)


def judge(key: str, record: Record | None, stored: dict[str, str], out: dict[str, Any]) -> str:
    if record is None:
        out["misses"] += 1
        return "miss"
    if digest(body_of(record)) != stored["body"] or digest(encode(record)) != stored["record"]:
        out["wrong"].append(key)
        return "wrong"
    out["served"] += 1
    return "served"


async def maintain(
    storage: DiskStorage, manifest: dict[str, dict[str, str]], out: dict[str, Any]
) -> None:
    """entries, prune, volume and a write: each may raise OSError, nothing else."""

    async def listing() -> None:
        async for key, snap in storage.entries():
            stored = manifest.get(key)
            listed_right = isinstance(snap, Snapshot) and stored is not None
            if not listed_right or digest(encode(snap)) != stored["record"]:
                out["wrong"].append(f"listed {key}")

    fresh = Snapshot(200, "OK", (), "http://127.0.0.1/new", "GET", b"new", 0.0, 0.0)
    for name, work in (
        ("entries", listing),
        ("prune", storage.prune),
        ("volume", storage.volume),
        ("set", lambda: storage.set("f" * 64, fresh, 60)),
    ):
        try:
            await work()
        except DOCUMENTED_ON_MAINTENANCE:
            out.setdefault("maintenance_errors", []).append(name)
        except Exception as exc:
            out["undocumented"].append(f"{name}: {type(exc).__name__}: {exc}")


# -- the writing child (killed) -------------------------------------------------------------------


def kill_body(n: int) -> bytes:
    return bytes([n % 251]) * (100 * 1024 if n % 2 == 0 else 3 * 1024)


async def write_until_killed(directory: str) -> None:
    """Child: open the storage, say so, wait for a line, then store entries until killed."""
    storage = DiskStorage(directory, lock_timeout=CHILD_TIMEOUT)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for n in range(10**6):  # the first is kept in a file: the held lock catches it there
        url = f"http://127.0.0.1/k/{n}"
        snap = Snapshot(200, "OK", (), url, "GET", kill_body(n), 0.0, 0.0)
        await storage.set(f"{n:064x}", snap, 600)


# -- the tests ------------------------------------------------------------------------------------


async def child(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.timeout(TIMEOUT)
async def test_a_damaged_disk_cache_never_serves_a_wrong_body(tmp_path: Path) -> None:
    started = time.perf_counter()
    template = tmp_path / "template"
    manifest = await store_responses(template)
    in_files = len(files_by_key(template))
    copies = []
    for seed in range(SEEDS):
        directory = tmp_path / f"seed-{seed}"
        shutil.copytree(template, directory)
        copies.append(damage(directory, seed))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"manifest": manifest, "copies": copies}))

    proc = await child("read", str(plan))
    out, err = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    assert proc.returncode == 0, err.decode(errors="replace")
    results = [json.loads(line) for line in out.decode().splitlines()]
    assert len(results) == SEEDS, err.decode(errors="replace")

    opened = [r for r in results if r["refused"] is None]
    total = Counter(
        served=sum(r["served"] for r in opened),
        misses=sum(r["misses"] for r in opened),
        wrong=sum(len(r["wrong"]) for r in results),
        undocumented=sum(len(r["undocumented"]) for r in results),
        damaged_files=sum(len(c["damaged_file_keys"]) for c in copies),
        db_bytes=sum(c["db_bytes"] for c in copies),
        file_bytes=sum(c["file_bytes"] for c in copies),
        truncated=sum(c["truncated"] for c in copies),
    )
    print(
        f"\ndisk corruption ({'full' if FULL else 'quick'}): {SEEDS} seeds x {ENTRIES} entries "
        f"({ENTRIES - in_files} in SQLite, {in_files} in files); bytes corrupted "
        f"{total['db_bytes'] + total['file_bytes']:,} (database {total['db_bytes']:,}, value "
        f"files {total['file_bytes']:,}) and {total['truncated']} value files truncated, "
        f"{total['damaged_files']} value files damaged in all; storages opened "
        f"{len(opened)}, refused {SEEDS - len(opened)}; reads {4 * len(opened) * ENTRIES:,}: "
        f"served {total['served']:,}, misses {total['misses']:,}; wrong bodies {total['wrong']}; "
        f"undocumented exceptions {total['undocumented']}; maintenance raising OSError in "
        f"{sum(bool(r.get('maintenance_errors')) for r in opened)} storages; "
        f"{time.perf_counter() - started:.1f} s"
    )
    for r in results:
        assert r["wrong"] == [], r["dir"]
        assert r["undocumented"] == [], r["dir"]
    for r, c in zip(results, copies, strict=True):
        if r["refused"] is None:
            assert r["damaged_file_served"] == [], r["dir"]
            assert set(c["damaged_file_keys"]) <= set(r["missed_keys"]), r["dir"]
            assert r["warnings"] <= 1, r["dir"]
    assert opened and total["served"] > 0  # damage that refused or missed everything shows nothing
    assert total["misses"] >= total["damaged_files"] > 0


async def kill_a_writer(directory: Path, held: bool, rng: random.Random) -> None:
    """Start a writing child on ``directory`` and kill -9 it mid-write (see the module header)."""
    proc = await child("write", str(directory))
    assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), CHILD_TIMEOUT)
    assert line == b"ready\n", (line, await proc.stderr.read())
    lock = sqlite3.connect(directory / "cache.db", isolation_level=None)
    try:
        if held:
            lock.execute("BEGIN IMMEDIATE")  # the child's commit waits for this
        before = value_names(directory)
        proc.stdin.write(b"go\n")
        if held:
            deadline = time.monotonic() + CHILD_TIMEOUT
            while value_names(directory) == before:  # its file is on disk, its row is not
                assert time.monotonic() < deadline, "the child wrote no value file"
                await asyncio.sleep(0.005)
        else:
            await asyncio.sleep(rng.uniform(0.02, 0.3))
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), CHILD_TIMEOUT)
    finally:
        lock.close()  # a transaction still open is rolled back
    assert proc.returncode == -signal.SIGKILL


def named_files(directory: Path) -> set[str]:
    """The value files that rows name."""
    return set(files_by_key(directory).values())


def value_names(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*.val")}


@pytest.mark.timeout(TIMEOUT)
async def test_a_writer_killed_mid_write_leaves_orphans_that_volume_counts_and_prune_removes(
    tmp_path: Path,
) -> None:
    started = time.perf_counter()
    rng = random.Random(7)
    figures = Counter[str]()
    for round_ in range(HELD_KILLS + RANDOM_KILLS):
        held = round_ < HELD_KILLS
        directory = tmp_path / f"kill-{round_}"
        first = DiskStorage(directory)  # a few entries already there
        for n in range(3):
            await first.set(f"{10**5 + n:064x}", Snapshot(200, "OK", (), "u", "GET", b"e"), 600)
        await first.close()

        await kill_a_writer(directory, held, rng)

        storage = DiskStorage(directory)  # reopened: no error
        try:
            named = named_files(directory)
            orphans = value_names(directory) - named
            orphan_bytes = sum((directory / name).stat().st_size for name in orphans)
            volume = await storage.volume()
            assert volume >= orphan_bytes + sum((directory / n).stat().st_size for n in named)
            async for key, snap in storage.entries():  # everything readable is right
                n = int(key, 16)
                assert snap.body == (b"e" if n >= 10**5 else kill_body(n)), key
                figures["entries"] += 1
            assert await storage.prune() == 0  # young orphans may be writes in progress
            assert value_names(directory) - named == orphans
            old = time.time() - ORPHAN_GRACE - 1
            for name in orphans:
                os.utime(directory / name, (old, old))
            assert await storage.prune() == len(orphans)
            assert value_names(directory) == named  # every orphan went, nothing else did
            assert await storage.volume() == volume - orphan_bytes
        finally:
            await storage.close()
        if held:
            assert orphans, "the child was killed between its file and its row"
        figures["orphans"] += len(orphans)
        figures["orphan_bytes"] += orphan_bytes
        figures["rounds with orphans"] += bool(orphans)
    print(
        f"\nkill -9 ({'full' if FULL else 'quick'}): {HELD_KILLS} kills at a held lock + "
        f"{RANDOM_KILLS} at random moments; reopen errors 0; entries read back "
        f"{figures['entries']} (wrong 0); orphaned files {figures['orphans']} "
        f"({figures['orphan_bytes']:,} bytes, in {figures['rounds with orphans']} rounds), all "
        f"counted by volume() and removed by prune() after the grace; "
        f"{time.perf_counter() - started:.1f} s"
    )


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "read":
        asyncio.run(read_damaged(json.loads(Path(args[0]).read_text())))
    elif mode == "write":
        asyncio.run(write_until_killed(*args))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
