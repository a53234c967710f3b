"""DiskStorage: what only a directory on disk promises (the contract: test_storage_contract.py).

Persistence and sharing are tested with real separate processes (tests/disk_child.py) against a
real origin on 127.0.0.1; locks are taken by real processes on the real database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import pickle
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar

import diskcache  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from conftest import KEY_A, KEY_B, KEY_C, FakeClock, Origin, snapshot

from coalesce_client import CoalescingSession
from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.storage import DiskStorage, StorageClosedError, codec
from coalesce_client.storage.codec import FORMAT_VERSION, encode
from coalesce_client.storage.disk import rows
from coalesce_client.storage.disk.files import ORPHAN_GRACE
from coalesce_client.storage.disk.loopread import LoopRead
from coalesce_client.storage.disk.threads import DELIVER_BATCH
from coalesce_client.storage.records import UrlIndex, VaryPointer

T = TypeVar("T")
CHILD = Path(__file__).with_name("disk_child.py")
BIG = 8 * 1024 * 1024  # the policy's default max_body_size


@pytest.fixture
async def disk(tmp_path: Path) -> AsyncIterator[DiskStorage]:
    storage = DiskStorage(tmp_path / "cache")
    yield storage
    await storage.close()


def body_of(name: str) -> bytes:
    return name.encode() * 100


@pytest.fixture
async def pages(origin: Origin) -> Origin:
    """The origin with ``/page/{name}`` (name x 100, after 10 ms; a POST answers "updated") and
    ``/big/{n}`` (8 MiB)."""

    async def page(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.Response(body=body_of(request.match_info["name"]))

    async def big(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return web.Response(body=big_body(n), content_type="application/octet-stream")

    async def post(request: web.Request) -> web.Response:
        return web.Response(text="updated")

    origin.route("/page/{name}", page)
    origin.route("/page/{name}", post, method="POST")
    origin.route("/big/{n}", big)
    await origin.start()
    return origin


def big_body(n: int, size: int = BIG) -> bytes:
    return bytes((i * 7 + n) % 256 for i in range(256)) * (size // 256)


# -- helpers --------------------------------------------------------------------------------------


async def child(*args: str, stdin: bool = False) -> asyncio.subprocess.Process:
    """tests/disk_child.py in a new Python process; the test's loop keeps serving the origin.

    Its stderr goes to a file, not a pipe: a pipe nobody reads while waiting on stdout (or on the
    process's exit) fills up and blocks the child for good.
    """
    err = tempfile.TemporaryFile()  # noqa: SIM115  # closed by stderr_of()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=err,
    )
    _stderr[proc.pid] = err
    return proc


_stderr: dict[int, IO[bytes]] = {}


def stderr_of(proc: asyncio.subprocess.Process) -> str:
    err = _stderr.pop(proc.pid, None)
    if err is None:
        return ""
    with err:
        err.seek(0)
        return err.read().decode(errors="replace")


async def child_result(*args: str) -> dict[str, Any]:
    proc = await child(*args)
    out, _ = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    assert proc.returncode == 0, stderr_of(proc)
    stderr_of(proc)
    result: dict[str, Any] = json.loads(out)
    return result


async def read_json_line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), CHILD_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        raise AssertionError(f"child gave no answer in time; stderr:\n{stderr_of(proc)}") from None
    if not line:
        raise AssertionError(stderr_of(proc))
    result: dict[str, Any] = json.loads(line)
    return result


CHILD_TIMEOUT = 40.0  # seconds; a child that says nothing for this long is stuck: fail, with why


async def worst_stall(work: Awaitable[T]) -> tuple[T, float, float]:
    """``work``'s result, the longest the loop went without running a 1 ms ticker, and wall time."""
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)  # the ticker is running before the work starts
    t0 = time.perf_counter()
    try:
        result = await work
    finally:
        elapsed = time.perf_counter() - t0
        stop = True
        await tick
    return result, worst, elapsed


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def value_files(path: Path) -> list[Path]:
    return list(path.rglob("*.val"))


# -- persistence across processes -----------------------------------------------------------------


async def test_a_response_stored_by_one_process_is_a_hit_in_the_next_and_a_miss_after_its_ttl(
    pages: Origin, tmp_path: Path
) -> None:
    directory, url = str(tmp_path / "cache"), pages.url("/page/persist")
    first = await child_result("fetch", directory, "60", "0", url)
    assert first["statuses"] == [["miss", 200, "persist" * 100]]
    assert first["stored"] == 1 and pages.calls["/page/persist"] == 1

    second = await child_result("fetch", directory, "60", "0", url)
    assert second["statuses"] == [["hit", 200, "persist" * 100]]
    assert second["upstream"] == 0 and pages.calls["/page/persist"] == 1

    # A third process whose clock reads 61 s later: the expiry stored with the entry has passed.
    third = await child_result("fetch", directory, "60", "61", url)
    assert third["statuses"] == [["miss", 200, "persist" * 100]]
    assert third["upstream"] == 1 and pages.calls["/page/persist"] == 2


async def test_a_post_in_one_process_invalidates_what_another_stored(
    pages: Origin, tmp_path: Path
) -> None:
    """RFC 9111 §4.4 across processes on one directory: the URL index lives in storage, so a
    POST answered in one process drops the entries another process stored (the query's too is
    another URL, and stays)."""
    directory = str(tmp_path / "cache")
    url, other = pages.url("/page/doc"), pages.url("/page/doc?v=2")
    first = await child_result("fetch", directory, "600", "0", url, other)
    assert [s[0] for s in first["statuses"]] == ["miss", "miss"] and first["stored"] == 2
    kept = await child_result("fetch", directory, "600", "0", url, other)
    assert [s[0] for s in kept["statuses"]] == ["hit", "hit"]  # the control: stored for others
    posted = await child_result("post", directory, url)
    assert posted == {"status": 200, "cache_status": "bypass"}
    after = await child_result("fetch", directory, "600", "0", url, other)
    assert [s[0] for s in after["statuses"]] == ["miss", "hit"]
    assert after["upstream"] == 1


async def test_a_restarted_process_with_tiered_storage_reads_each_key_from_disk_once(
    pages: Origin, tmp_path: Path
) -> None:
    directory = str(tmp_path / "cache")
    urls = [pages.url(f"/page/t{i}") for i in range(3)]
    first = await child_result("fetch", directory, "60", "0", *urls, "--tiered")
    assert [s[0] for s in first["statuses"]] == ["miss"] * 3 and first["stored"] == 3

    # The restarted process asks for each URL four times: one disk read per key, then memory.
    again = await child_result("fetch", directory, "60", "0", *(urls * 4), "--tiered")
    assert [s[0] for s in again["statuses"]] == ["hit"] * 12
    assert again["upstream"] == 0
    assert again["disk_reads"] == 3
    assert pages.total == 3


# -- nothing unreadable escapes, nothing is unpickled ---------------------------------------------


GARBAGE: dict[str, tuple[Any, dict[str, Any]]] = {
    "unknown version": (bytes([FORMAT_VERSION + 1]) + b"\x00" * 40, {}),
    "version 2 (no times)": (bytes([2]) + encode(snapshot())[1:], {}),
    "truncated": (encode(snapshot())[:-3], {}),
    "trailing bytes": (encode(snapshot()) + b"!", {}),
    "empty": (b"", {}),
    "no expiry": (encode(snapshot()), {"tag": None}),
    "a string": ("not bytes", {}),
    "a large string (text mode)": ("x" * 100_000, {}),
    "an integer": (12345, {}),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
async def test_an_unreadable_entry_is_a_miss_deleted_and_logged(
    disk: DiskStorage, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    value, extra = GARBAGE[kind]
    with diskcache.Cache(str(disk.directory)) as plain:  # another program writing our directory
        plain.set(KEY_A, value, **{"tag": time.time() + 60, **extra})
        with caplog.at_level(logging.WARNING, logger="coalesce_client"):
            assert await disk.get(KEY_A) is None
        assert KEY_A not in plain
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert KEY_A in caplog.text and "unreadable" in caplog.text and "deleted" in caplog.text
    await disk.set(KEY_A, snapshot(b"fresh"), 60)  # the key works again
    got = await disk.get(KEY_A)
    assert got is not None and got.body == b"fresh"


async def test_garbage_under_a_real_key_is_a_miss_through_the_session(
    pages: Origin, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = pages.url("/page/garbage")
    disk = DiskStorage(tmp_path / "cache")
    async with CoalescingSession(ttl=60, storage=disk) as s:
        assert (await s.get(url)).cache_status == "miss"
        # The session's own key for this URL (entries() lists responses only, not the URL index).
        [key] = [k async for k, _ in disk.entries()]
        with diskcache.Cache(str(tmp_path / "cache")) as plain:
            plain.set(key, b"\x00garbage", tag=time.time() + 60)
        with caplog.at_level(logging.WARNING, logger="coalesce_client"):
            r = await s.get(url)
        assert r.cache_status == "miss" and await r.read() == body_of("garbage")
        assert pages.calls["/page/garbage"] == 2
        assert "unreadable" in caplog.text and key in caplog.text
        assert (await s.get(url)).cache_status == "hit"  # stored again by the refetch


class Payload:
    """Unpickling this runs ``code``; padding makes the pickle as large as we like."""

    def __init__(self, code: str, padding: int) -> None:
        self.code = code + "  # " + "x" * padding

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.code,))


@pytest.mark.parametrize("padding", [0, 100_000], ids=["in the database", "in a file"])
async def test_an_entry_in_pickle_mode_is_never_unpickled(
    disk: DiskStorage, tmp_path: Path, caplog: pytest.LogCaptureFixture, padding: int
) -> None:
    control, marker = tmp_path / "control", tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(f"import os; os.mkdir({str(control)!r})", padding)))
    assert control.is_dir()  # the payload does run when unpickled

    with diskcache.Cache(str(disk.directory)) as plain:
        payload = Payload(f"import os; os.mkdir({str(marker)!r})", padding)
        plain.set(KEY_A, payload, tag=time.time() + 60)  # a pickle, as diskcache writes objects
        with caplog.at_level(logging.WARNING, logger="coalesce_client"):
            assert await disk.get(KEY_A) is None
        assert KEY_A not in plain
    assert not marker.exists()
    assert "pickle" in caplog.text and KEY_A in caplog.text
    assert value_files(disk.directory) == []  # the large pickle's file went with its row


# -- damage is a miss, never a wrong body (issue 11) ----------------------------------------------


def raw_rows(directory: Path) -> sqlite3.Connection:
    """The storage's database opened as any other program would (it may be open meanwhile)."""
    return sqlite3.connect(directory / "cache.db", isolation_level=None)


def file_of(directory: Path, key: str) -> Path | None:
    with contextlib.closing(raw_rows(directory)) as con:
        ((name,),) = con.execute("SELECT filename FROM Cache WHERE key = ?", (key,)).fetchall()
    return None if name is None else directory / name


def flip_a_byte_of_the_body(directory: Path, key: str, body: bytes) -> None:
    """One byte of ``body`` changed where the row keeps it: in SQLite or in its value file."""
    path = file_of(directory, key)
    if path is not None:
        data = bytearray(path.read_bytes())
    else:
        with contextlib.closing(raw_rows(directory)) as con:
            ((value,),) = con.execute("SELECT value FROM Cache WHERE key = ?", (key,)).fetchall()
        data = bytearray(value)
    at = data.index(body) + len(body) // 2
    data[at] ^= 0x20
    if path is not None:
        path.write_bytes(bytes(data))
    else:
        with contextlib.closing(raw_rows(directory)) as con:
            con.execute("UPDATE Cache SET value = ? WHERE key = ?", (bytes(data), key))


SIZES = {"in the database": 2_000, "in a file": 100_000}


@pytest.mark.parametrize("where", sorted(SIZES))
async def test_a_damaged_body_is_a_miss_deleted_and_logged_once(
    disk: DiskStorage, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    bodies = {key: bytes([n]) * SIZES[where] for n, key in enumerate((KEY_A, KEY_B, KEY_C))}
    for key, body in bodies.items():
        await disk.set(key, snapshot(body), 60)
    for key in (KEY_A, KEY_B):
        flip_a_byte_of_the_body(disk.directory, key, bodies[key])
    with caplog.at_level(logging.DEBUG, logger="coalesce_client"):
        assert await disk.get(KEY_A) is None
        assert await disk.get(KEY_B) is None
    assert [r.levelname for r in caplog.records] == ["WARNING", "DEBUG"]
    assert "checksum" in caplog.records[0].getMessage()
    with contextlib.closing(raw_rows(disk.directory)) as con:
        assert [k for (k,) in con.execute("SELECT key FROM Cache")] == [KEY_C]  # both deleted
    assert len(value_files(disk.directory)) == (where == "in a file")  # their files too
    got = await disk.get(KEY_C)
    assert got is not None and got.body == bodies[KEY_C]


@pytest.mark.parametrize("where", sorted(SIZES))
async def test_a_row_reached_under_another_key_is_a_miss(disk: DiskStorage, where: str) -> None:
    # What a damaged index does: the lookup of one key lands on another key's intact row.
    await disk.set(KEY_A, snapshot(b"a" * SIZES[where]), 60)
    await disk.set(KEY_B, snapshot(b"b" * SIZES[where]), 60)
    with contextlib.closing(raw_rows(disk.directory)) as con:
        con.execute("DELETE FROM Cache WHERE key = ?", (KEY_A,))
        con.execute("UPDATE Cache SET key = ? WHERE key = ?", (KEY_A, KEY_B))
    assert await disk.get(KEY_A) is None  # B's body is never served for A
    assert await disk.get(KEY_B) is None


@pytest.mark.parametrize("tag", ["later", "text"])
async def test_a_row_whose_expiry_changed_is_a_miss(tmp_path: Path, tag: str) -> None:
    clock = FakeClock()
    storage = DiskStorage(tmp_path / "cache", clock=clock)
    try:
        await storage.set(KEY_A, snapshot(), 60)
        damaged = {"later": clock.now + 10**6, "text": "soon"}[tag]
        with contextlib.closing(raw_rows(storage.directory)) as con:
            con.execute("UPDATE Cache SET tag = ? WHERE key = ?", (damaged, KEY_A))
        clock.advance(61)  # past the stored expiry: a damaged tag must not make it fresh again
        assert await storage.get(KEY_A) is None
    finally:
        await storage.close()


async def test_a_row_naming_a_file_outside_the_cache_neither_reads_nor_removes_it(
    disk: DiskStorage, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone else's file")
    await disk.set(KEY_A, snapshot(b"x" * 100_000), 60)
    with contextlib.closing(raw_rows(disk.directory)) as con:
        outside = str(Path("..") / victim.name)  # the storage's directory is tmp_path / cache
        con.execute("UPDATE Cache SET filename = ? WHERE key = ?", (outside, KEY_A))
    assert await disk.get(KEY_A) is None  # the damaged row is deleted ...
    assert victim.read_bytes() == b"someone else's file"  # ... and the file it names is not
    # The value file the row named before is an orphan now, too young for prune to remove.
    assert await disk.prune() == 0
    assert victim.exists() and len(value_files(disk.directory)) == 1


async def test_a_file_name_that_is_not_utf_8_is_a_miss(disk: DiskStorage) -> None:
    await disk.set(KEY_A, snapshot(b"x" * 100_000), 60)
    with contextlib.closing(raw_rows(disk.directory)) as con:
        con.execute("UPDATE Cache SET filename = CAST(X'FFFE2F' AS TEXT) WHERE key = ?", (KEY_A,))
    assert await disk.get(KEY_A) is None


def overwrite_pages(database: Path, first: int, count: int) -> None:
    """Pages ``first`` to ``first + count`` of ``database`` overwritten with a fixed pattern."""
    data = bytearray(database.read_bytes())
    data[first * 4096 : (first + count) * 4096] = b"\xa5" * (count * 4096)
    database.write_bytes(bytes(data))


async def test_reads_of_damaged_pages_are_misses_and_maintenance_raises_os_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "cache"
    storage = DiskStorage(directory)
    bodies = {f"{i:064x}": bytes([i]) * 3000 for i in range(200)}
    for key, body in bodies.items():
        await storage.set(key, snapshot(body), 600)
    await storage.close()
    overwrite_pages(directory / "cache.db", 8, 4)  # rows of the Cache table
    storage = DiskStorage(directory)
    try:
        with caplog.at_level(logging.WARNING, logger="coalesce_client"):
            got = {key: await storage.get(key) for key in bodies}
        served = {key: snap.body for key, snap in got.items() if snap is not None}
        assert all(body == bodies[key] for key, body in served.items())
        assert 0 < len(served) < len(bodies)  # some were damaged, the others are still served
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        for maintenance in (storage.prune(), storage.clear()):
            with pytest.raises(OSError, match="database disk image is malformed") as info:
                await maintenance
            assert str(directory) in str(info.value)
    finally:
        await storage.close()


def damage_settings(statement: str) -> Callable[[Path], None]:
    def damage(database: Path) -> None:
        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as con:
            con.execute(statement)

    return damage


def random_bytes(database: Path) -> None:
    database.write_bytes(random.Random(11).randbytes(database.stat().st_size))


def truncated(database: Path) -> None:
    with database.open("r+b") as f:
        f.truncate(database.stat().st_size // 2)


DAMAGED_DATABASES: dict[str, Callable[[Path], None]] = {
    "random bytes": random_bytes,
    "truncated": truncated,
    "a setting named like a method": damage_settings("INSERT INTO Settings VALUES ('volume', 1)"),
    "a setting run as a PRAGMA": damage_settings(
        "INSERT INTO Settings VALUES ('sqlite_writable_schema', 1)"
    ),
    "a setting passed to the Disk": damage_settings("INSERT INTO Settings VALUES ('disk_x', 1)"),
    "a size that is text": damage_settings("UPDATE Settings SET value = 'x' WHERE key = 'size'"),
    "a negative size": damage_settings("UPDATE Settings SET value = -5 WHERE key = 'size'"),
    "a count that is not UTF-8": damage_settings(
        "UPDATE Settings SET value = CAST(X'FFFE' AS TEXT) WHERE key = 'count'"
    ),
    "no Settings table": damage_settings("DROP TABLE Settings"),
    "a Cache table without its columns": damage_settings(
        "ALTER TABLE Cache DROP COLUMN access_count"
    ),
}


@pytest.mark.parametrize("options", [{}, {"read_only": True}], ids=["writer", "read-only"])
@pytest.mark.parametrize("kind", sorted(DAMAGED_DATABASES))
async def test_a_damaged_database_is_refused_at_construction_naming_the_path(
    tmp_path: Path, kind: str, options: dict[str, bool]
) -> None:
    directory = tmp_path / "cache"
    storage = DiskStorage(directory)
    await storage.set(KEY_A, snapshot(b"x" * 3000), 60)
    await storage.close()
    DAMAGED_DATABASES[kind](directory / "cache.db")
    with pytest.raises(ValueError, match=r"damaged|cannot hold a cache") as info:
        DiskStorage(directory, **options)
    assert str(directory) in str(info.value)


DAMAGE_SEEDS = 200


async def test_random_bytes_in_a_database_are_refused_naming_it_or_read_as_misses(
    tmp_path: Path,
) -> None:
    """Issue 19: random bytes in ``cache.db``'s header (its first 100 bytes), its first page (the
    schema) or anywhere else gave ``UnicodeDecodeError`` for some seeds. Each seed damages a copy
    of one real directory and opens it as a writer, read-only or with ``create=False``: either a
    ``ValueError`` (that very type) naming the directory, or a storage whose reads give the stored
    response or a miss, never an exception, and whose listing raises an ``OSError`` naming the
    directory at worst."""
    source = tmp_path / "source"
    storage = DiskStorage(source)
    stored = {f"{i:064x}": snapshot(bytes([i]) * (i * 6000)) for i in range(12)}  # files from 6
    for key, snap in stored.items():
        await storage.set(key, snap, 600)
    await storage.close()
    size = (source / "cache.db").stat().st_size
    errors: list[tuple[int, Exception]] = []
    opened = 0
    for seed in range(DAMAGE_SEEDS):
        rng = random.Random(seed)
        directory = tmp_path / f"seed-{seed}"
        shutil.copytree(source, directory)
        data = bytearray((directory / "cache.db").read_bytes())
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(rng.choice((100, 4096, size)))  # the header, first page, anywhere
            length = min(rng.randint(1, 64), size - at)
            data[at : at + length] = rng.randbytes(length)
        (directory / "cache.db").write_bytes(data)
        options = ({}, {"read_only": True}, {"create": False})[seed % 3]
        try:
            damaged = DiskStorage(directory, **options)
        except ValueError as exc:
            errors.append((seed, exc))
            continue
        try:
            for key, snap in stored.items():
                assert await damaged.get(key) in (snap, None), seed
            try:  # maintenance meets the damage too: an OSError naming the directory at worst
                listed = {key: snap async for key, snap in damaged.entries()}
                assert all(stored[key] == snap for key, snap in listed.items()), seed
            except OSError as exc:
                errors.append((seed, exc))
        finally:
            await damaged.close()
        opened += 1
    unclear = [
        (seed, repr(exc))
        for seed, exc in errors
        if type(exc) not in (ValueError, OSError) or f"seed-{seed}'" not in str(exc)
    ]
    assert unclear == []  # each a ValueError (construction) or OSError (later) naming it
    print(f"\n{DAMAGE_SEEDS} damaged databases: {len(errors)} errors, {opened} opened")
    assert len(errors) > DAMAGE_SEEDS // 4 and opened > 0, (len(errors), opened)


# -- the event loop never waits long on disk ------------------------------------------------------


@pytest.fixture
def calls_by_thread() -> Iterator[list[tuple[str, str]]]:
    """(thread name, function) for each call of diskcache's write paths, in every thread.

    A profile hook observes the calls; nothing is patched. It is installed before the storage under
    test makes its worker thread, which inherits it (``threading.setprofile``).
    """
    watched = {
        diskcache.Cache.set.__code__: "Cache.set",
        diskcache.Cache.__delitem__.__code__: "Cache.delete",
        diskcache.Cache.clear.__code__: "Cache.clear",
        diskcache.Cache._transact.__wrapped__.__code__: "Cache._transact",
        diskcache.Cache.get.__code__: "Cache.get",
        LoopRead.entry.__code__: "LoopRead.entry",  # the loop's own read (issue 20)
    }
    seen: list[tuple[str, str]] = []

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in watched:
            seen.append((threading.current_thread().name, watched[frame.f_code]))

    threading.setprofile(hook)
    sys.setprofile(hook)
    try:
        yield seen
    finally:
        sys.setprofile(None)
        threading.setprofile(None)


async def test_writes_never_run_on_the_event_loop_thread(
    tmp_path: Path, calls_by_thread: list[tuple[str, str]]
) -> None:
    clock = FakeClock()
    storage = DiskStorage(tmp_path / "cache", clock=clock)
    try:
        await storage.set(KEY_A, snapshot(), 60)
        await storage.set(KEY_B, snapshot(b"x" * 200_000), 60)  # kept in a file
        await storage.set(KEY_C, snapshot(), 0)  # a ttl of 0 deletes
        assert await storage.get(KEY_B) is not None  # a value in a file is read in the thread
        clock.advance(61)
        assert await storage.get(KEY_A) is None  # expired: deleted
        await storage.delete(KEY_B)
        await storage.clear()
    finally:
        await storage.close()
    loop_thread = threading.current_thread().name
    writes = [(t, f) for t, f in calls_by_thread if f not in ("Cache.get", "LoopRead.entry")]
    assert {f for _, f in writes} == {"Cache.set", "Cache.delete", "Cache.clear", "Cache._transact"}
    assert all(t.startswith("coalesce_client-disk") for t, _ in writes), writes
    # Small reads are the ones allowed on the loop; they take no write transaction.
    assert (loop_thread, "LoopRead.entry") in calls_by_thread


HOLD_WRITE_LOCK = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
con.execute("UPDATE Settings SET value = value WHERE key = 'count'")
print("locked", flush=True)
sys.stdin.readline()
con.execute("ROLLBACK")
"""

# What a process recovering the WAL after a crash holds: the write and recover locks of the
# WAL-index (the -shm file, locks at byte 120 + n; sqlite.org/walformat.html), with the header
# not yet valid. A reader then gets SQLITE_BUSY and waits through its busy timeout.
HOLD_RECOVERY_LOCKS = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 120)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 122)
os.pwrite(fd, bytes(96), 0)
print("locked", flush=True)
sys.stdin.readline()
"""


async def hold(code: str, path: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"locked\n"
    return proc


async def release(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"\n")
    await proc.stdin.drain()
    await proc.wait()


async def test_another_process_holding_the_write_lock_stalls_neither_reads_nor_the_loop(
    disk: DiskStorage,
) -> None:
    snap = snapshot(b"x" * 2048)
    await disk.set(KEY_A, snap, 60)
    holder = await hold(HOLD_WRITE_LOCK, disk.directory / "cache.db")
    try:
        results, stall, elapsed = await worst_stall(
            asyncio.gather(*(disk.get(KEY_A) for _ in range(50)))
        )
        assert results == [snap] * 50  # WAL readers do not wait for a writer
        assert stall < 0.05 and elapsed < 0.5, (stall, elapsed)

        # A write waits for the lock in the worker thread; the loop keeps running meanwhile.
        writing = asyncio.create_task(disk.set(KEY_B, snap, 60))
        _, stall, _ = await worst_stall(asyncio.sleep(0.2))
        assert not writing.done() and stall < 0.05, stall
    finally:
        await release(holder)
    await writing
    assert await disk.get(KEY_B) == snap


async def test_a_read_of_a_busy_database_stalls_the_loop_no_longer_than_the_busy_timeout(
    disk: DiskStorage,
) -> None:
    snap = snapshot(b"x" * 2048)
    await disk.set(KEY_A, snap, 60)
    assert await disk.get(KEY_A) == snap
    holder = await hold(HOLD_RECOVERY_LOCKS, disk.directory / "cache.db-shm")

    async def release_later() -> None:
        await asyncio.sleep(0.3)
        await release(holder)

    releasing = asyncio.create_task(release_later())
    try:
        results, stall, elapsed = await worst_stall(
            asyncio.gather(*(disk.get(KEY_A) for _ in range(20)))
        )
    finally:
        await releasing
    # The first read waited 5 ms on the loop, then it and the 19 others waited in the thread
    # until the other process let go; every read then completed.
    assert results == [snap] * 20
    assert elapsed > 0.25, elapsed  # the reads really were blocked
    assert stall < 0.05, stall


async def test_a_large_hit_is_decoded_in_the_worker_thread_and_its_body_never_copied(
    tmp_path: Path,
) -> None:
    """Issue 19: one 50 MiB disk hit stalled the loop 38 ms. The worker read the whole value file
    and then copied the body out of it, holding the GIL for the copy, so the loop waited for it.
    Now the body is read from the file into its own bytes (only the kernel copies it, without
    the GIL), checked and decoded in the worker thread; the loop gets the finished record. Seen
    here as the memory the read allocates (one body, not two) and the threads that decode."""
    size = 16 * 1024 * 1024
    snap = snapshot(big_body(3, size))
    writer = DiskStorage(tmp_path / "cache")
    await writer.set(KEY_A, snap, 60)
    await writer.close()
    storage = DiskStorage(tmp_path / "cache")
    decoders = {codec.decode.__code__, codec.decode_split.__code__}
    threads: list[str] = []

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in decoders:
            threads.append(threading.current_thread().name)

    threading.setprofile(hook)
    sys.setprofile(hook)
    tracemalloc.start()
    try:
        got = await storage.get(KEY_A)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sys.setprofile(None)
        threading.setprofile(None)
        await storage.close()
    assert got == snap
    assert peak < size * 1.25, peak / size  # the body once: read straight into its bytes
    assert threads and all(t.startswith("coalesce_client-disk") for t in threads), threads


async def test_reads_from_another_thread_use_the_worker_thread(disk: DiskStorage) -> None:
    await disk.set(KEY_A, snapshot(b"across"), 60)

    async def elsewhere() -> Snapshot | None:
        return await disk.get(KEY_A)

    got = await asyncio.to_thread(asyncio.run, elsewhere())
    assert got is not None and got.body == b"across"


LARGE = [f"{i:064x}" for i in range(40)]  # keys of values kept in files


@pytest.fixture
async def large(tmp_path: Path) -> AsyncIterator[DiskStorage]:
    """A storage reopened over 40 stored values of 40 KiB (each in a file), nothing read yet."""
    writer = DiskStorage(tmp_path / "cache")
    for i, key in enumerate(LARGE):
        await writer.set(key, snapshot(bytes([i]) * 40_000), 60)
    await writer.close()
    storage = DiskStorage(tmp_path / "cache")
    yield storage
    await storage.close()


async def test_reads_begun_in_one_turn_of_the_loop_go_to_the_worker_together(
    large: DiskStorage, calls_by_thread: list[tuple[str, str]]
) -> None:
    """Issue 19: 500 concurrent 1 MiB hits stalled the loop 134 ms, most of it in the turn that
    began them: each read queried SQLite on the loop first (to find its value in a file), and the
    worker, woken by the first, competed for the GIL with the loop for the rest of the turn. Now
    once a read is queued for the worker in a turn, the turn's later reads join it without
    querying on the loop, and the worker gets them together when the turn ends."""
    got = await asyncio.gather(*(large.get(key) for key in LARGE))
    assert [snap.body[0] if snap else None for snap in got] == list(range(40))
    loop_thread = threading.current_thread().name
    on_the_loop = [f for t, f in calls_by_thread if t == loop_thread and f == "LoopRead.entry"]
    assert len(on_the_loop) == 1, len(on_the_loop)  # the first read only, which found a file


async def test_many_reads_ending_at_once_resume_a_few_callers_per_turn_of_the_loop(
    large: DiskStorage,
) -> None:
    """Issue 19: the second part of the stall of many concurrent disk hits was the turn in which
    their reads, all ended meanwhile, resumed every caller at once. Here the loop is kept busy
    while the worker reads 40 values, then each caller notes the turn of the loop it resumed in:
    no turn resumes more than ``DELIVER_BATCH``."""
    turn = 0
    resumed_in: list[int] = []
    stop = False

    async def count_turns() -> None:
        nonlocal turn
        while not stop:
            turn += 1
            await asyncio.sleep(0)

    async def read(key: str) -> None:
        assert await large.get(key) is not None
        resumed_in.append(turn)

    counting = asyncio.create_task(count_turns())
    reads = [asyncio.create_task(read(key)) for key in LARGE]
    await asyncio.sleep(0)  # the reads are queued, and handed over at the end of this turn
    await asyncio.sleep(0)
    read_all = threading.Event()
    large._io._executor.submit(read_all.set)  # after the reads: the worker's queue is FIFO
    assert read_all.wait(CHILD_TIMEOUT)  # the loop is kept busy until every read has ended
    await asyncio.gather(*reads)
    stop = True
    await counting
    per_turn = Counter(resumed_in)
    assert max(per_turn.values()) <= DELIVER_BATCH < len(LARGE), per_turn


# -- several processes, one directory -------------------------------------------------------------


async def test_four_processes_share_one_directory_without_errors(
    pages: Origin, tmp_path: Path
) -> None:
    directory = str(tmp_path / "cache")
    urls = [pages.url(f"/page/u{i}") for i in range(50)]
    procs = [await child("burst", directory, "200", *urls, stdin=True) for _ in range(4)]
    try:
        first = [await read_json_line(p) for p in procs]
        for result in first:
            assert result["errors"] == [] and result["warnings"] == [], result
        assert sum(r["stored"] for r in first) >= 50
        for p in procs:  # every process has stored its entries: now each reads them all
            assert p.stdin is not None
            p.stdin.write(b"go\n")
        second = [await read_json_line(p) for p in procs]
    finally:
        for p in procs:
            await asyncio.wait_for(p.wait(), CHILD_TIMEOUT)
            stderr_of(p)
    for result in second:
        assert result["statuses"] == {"hit": 50} and result["bodies_ok"], result
        assert result["warnings"] == []
    assert all(1 <= pages.calls[f"/page/u{i}"] <= 4 for i in range(50)), pages.calls
    assert [p.returncode for p in procs] == [0, 0, 0, 0]


# -- bounds and sizes -----------------------------------------------------------------------------


async def test_max_bytes_evicts_the_oldest_and_keeps_the_directory_near_the_bound(
    tmp_path: Path,
) -> None:
    bound = 2 * 1024 * 1024
    for name, size, count in (("files", 128 * 1024, 48), ("rows", 8 * 1024, 600)):
        directory = tmp_path / name
        storage = DiskStorage(directory, max_bytes=bound)
        try:
            largest = 0
            for i in range(count):
                await storage.set(f"{i:064x}", snapshot(bytes([i % 256]) * size), 600)
                largest = max(largest, directory_size(directory))
            assert largest < bound * 1.3, (name, largest)
            assert await storage.get(f"{0:064x}") is None  # the oldest went first
            newest = await storage.get(f"{count - 1:064x}")
            assert newest is not None and newest.body == bytes([(count - 1) % 256]) * size
        finally:
            await storage.close()


async def test_large_entries_evict_the_oldest_and_never_the_one_just_written(
    tmp_path: Path,
) -> None:
    # Each entry is about a tenth of the bound: diskcache's cull of ten rows used to remove all.
    storage = DiskStorage(tmp_path / "cache", max_bytes=1024 * 1024)
    keys = [f"{i:064x}" for i in range(30)]
    try:
        for i, key in enumerate(keys):
            await storage.set(key, snapshot(bytes([i]) * 100 * 1024), 600)
            got = await storage.get(key)
            assert got is not None and got.body == bytes([i]) * 100 * 1024, i
            assert directory_size(storage.directory) < 1.3 * 1024 * 1024
        kept = [key for key in keys if await storage.get(key) is not None]
    finally:
        await storage.close()
    assert len(kept) >= 6, len(kept)
    assert kept == keys[-len(kept) :]  # the newest ones, oldest evicted first


async def test_an_entry_nearly_as_large_as_max_bytes_is_kept_alone(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path / "cache", max_bytes=256 * 1024)
    try:
        for key in (KEY_A, KEY_B):
            await storage.set(key, snapshot(b"x" * 40 * 1024), 600)
        await storage.set(KEY_C, snapshot(b"y" * 240 * 1024), 600)  # with the database: too much
        got = await storage.get(KEY_C)
        assert got is not None and got.body == b"y" * 240 * 1024
        assert await storage.get(KEY_A) is None and await storage.get(KEY_B) is None
    finally:
        await storage.close()


async def test_eviction_goes_by_when_an_entry_was_last_stored(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path / "cache", max_bytes=1024 * 1024)
    keys = [f"{i:064x}" for i in range(12)]
    try:
        for key in keys[:8]:
            await storage.set(key, snapshot(b"x" * 100 * 1024), 600)
        await storage.set(keys[0], snapshot(b"y" * 100 * 1024), 600)  # stored again: newest
        for key in keys[8:]:
            await storage.set(key, snapshot(b"x" * 100 * 1024), 600)
        assert await storage.get(keys[1]) is None  # the least recently stored went first
        again = await storage.get(keys[0])
        assert again is not None and again.body == b"y" * 100 * 1024
        assert all([await storage.get(key) is not None for key in keys[8:]])
    finally:
        await storage.close()


async def test_the_newest_responses_survive_a_tight_bound_through_the_session(
    origin: Origin, tmp_path: Path
) -> None:
    async def large(request: web.Request) -> web.Response:
        return web.Response(body=request.match_info["n"].encode() * 50 * 1024)

    origin.route("/large/{n}", large)
    await origin.start()
    urls = [origin.url(f"/large/{n}") for n in range(10, 40)]  # 30 responses of 100 KiB
    directory = tmp_path / "cache"
    async with CoalescingSession(ttl=600, storage=DiskStorage(directory, max_bytes=2**20)) as s:
        for url in urls:
            assert (await s.get(url)).cache_status == "miss"
    assert s.stats.stored == 30
    # Closed: every write has finished. The next process finds the newest responses, newest first.
    async with CoalescingSession(ttl=600, storage=DiskStorage(directory, max_bytes=2**20)) as s:
        statuses = []
        for url in reversed(urls):
            async with s.get(url) as r:
                assert await r.read() == url.rsplit("/", 1)[1].encode() * 50 * 1024
                statuses.append(r.cache_status)
    hits = statuses.count("hit")
    assert hits >= 6 and statuses[:hits] == ["hit"] * hits, statuses


async def test_an_entry_larger_than_max_bytes_is_not_kept(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path / "cache", max_bytes=64 * 1024)
    try:
        await storage.set(KEY_A, snapshot(b"small"), 60)
        await storage.set(KEY_A, snapshot(b"x" * 100_000), 60)
        assert await storage.get(KEY_A) is None  # neither the large one nor the one it replaced
    finally:
        await storage.close()


async def test_bodies_up_to_max_body_size_round_trip_byte_for_byte(
    pages: Origin, tmp_path: Path
) -> None:
    async with CoalescingSession(ttl=60, storage=DiskStorage(tmp_path / "cache")) as s:
        first = await s.get(pages.url("/big/3"))
        assert first.cache_status == "miss"
        again = await s.get(pages.url("/big/3"))  # a hit even while the write finishes
        assert s.stats.stored <= 1
        assert again.cache_status == "hit"
        assert await again.read() == big_body(3)
    assert s.stats.stored == 1  # close() waited for the write
    assert len(value_files(tmp_path / "cache")) == 1  # kept in a file of its own


@pytest.mark.parametrize(
    ("how", "error"),
    [("disk-full", "File too large"), ("read-only", "Permission denied")],
)
async def test_a_failed_write_is_logged_the_request_succeeds_and_later_writes_are_retried(
    pages: Origin, how: str, error: str
) -> None:
    # Real failures in a child process, both effective as root: "disk-full" may not write files
    # past 512 KiB (RLIMIT_FSIZE: EFBIG), so storing an 8 MiB body fails half-way; "read-only"
    # runs as nobody and makes its cache directory read-only mid-run (chmod does not stop root).
    base = Path(tempfile.mkdtemp(prefix="coalesce-fail-"))  # under /tmp: reachable by nobody
    try:
        if os.geteuid() == 0:
            os.chown(base, 65534, 65534)
        directory = base / "cache"
        small, big, other = (pages.url(p) for p in ("/page/small", "/big/1", "/big/2"))
        result = await child_result("failing-write", how, str(directory), small, big, other)
        assert result["failed_write"] == [200, "miss", BIG]
        assert result["stored_after_failure"] == 1  # only the small page
        [warning] = result["warnings"]
        assert "storage set failed" in warning and error in warning, warning
        # Once the disk takes writes again, the same response is stored on its next request.
        assert result["retry"] == [200, "miss", BIG]
        assert result["other"] == [200, "miss", BIG]
        assert result["hit"] == [200, "hit", BIG]
        assert result["stored"] == 3
        assert len(value_files(directory)) == 2  # nothing half-written was left behind
    finally:
        shutil.rmtree(base)


# -- maintenance (coalesce-client cache) ---------------------------------------------------------


async def test_entries_volume_and_prune_for_maintenance(tmp_path: Path) -> None:
    clock = FakeClock()
    storage = DiskStorage(tmp_path / "cache", clock=clock)
    try:
        await storage.set(KEY_A, snapshot(b"short"), 10)
        await storage.set(KEY_B, snapshot(b"x" * 100_000), 60)  # in a file
        with diskcache.Cache(str(storage.directory)) as plain:
            plain.set(KEY_C, b"garbage", tag=clock.now + 60)
            plain.set(("a", "pickled", "key"), b"not ours")
        clock.advance(30)
        listed = {key: snap async for key, snap in storage.entries()}
        assert sorted(listed) == [KEY_A, KEY_B]  # the expired one too; garbage skipped
        assert listed[KEY_B].body == b"x" * 100_000
        assert await storage.volume() > 100_000
        assert await storage.prune() == 2  # KEY_A expired, KEY_C unreadable
        assert [key async for key, _ in storage.entries()] == [KEY_B]
    finally:
        await storage.close()
    with pytest.raises(StorageClosedError):
        await storage.volume()
    with pytest.raises(StorageClosedError):
        storage.entries()
    with pytest.raises(StorageClosedError):
        await storage.prune()


async def test_entries_lists_one_response_after_one_request_through_the_session(
    origin: Origin, tmp_path: Path
) -> None:
    # Issue 18: the Vary pointer and the URL index stored with a response were listed as if they
    # were responses (three entries for one request here).
    async def varying(request: web.Request) -> web.Response:
        return web.Response(text="hello", headers={"Vary": "Accept"})

    origin.route("/varying", varying)
    await origin.start()
    disk = DiskStorage(tmp_path / "cache")
    try:
        async with CoalescingSession(ttl=60, storage=disk, storage_owner=False) as s:
            assert (await s.get(origin.url("/varying"))).cache_status == "miss"
        listed = [item async for item in disk.entries()]
        assert len(listed) == 1
        [(_, snap)] = listed
        assert isinstance(snap, Snapshot) and snap.method == "GET"
    finally:
        await disk.close()


def sealed(key: str, expiry: float, encoded: bytes) -> bytes:
    """A row's value as DiskStorage seals it (storage/disk/rows.py): key, expiry, the record."""
    name = key.encode()
    return len(name).to_bytes(4, "big") + name + struct.pack(">d", expiry) + encoded


def as_format_3(encoded: bytes) -> bytes:
    """A response's format-4 encoding as format 3 wrote it: no record kind (test_snapshot.py)."""
    data = bytes([3]) + encoded[2:-4]
    return data + zlib.crc32(data).to_bytes(4, "big")


async def test_a_format_3_entry_on_disk_is_a_miss_and_is_deleted(
    disk: DiskStorage, caplog: pytest.LogCaptureFixture
) -> None:
    expiry = time.time() + 60
    snap = snapshot(b"before issue 18")
    assert b"".join(rows.seal(KEY_B, expiry, snap)) == sealed(KEY_B, expiry, encode(snap))
    with diskcache.Cache(str(disk.directory)) as plain:  # rows as an older version left them
        plain.set(KEY_A, sealed(KEY_A, expiry, as_format_3(encode(snap))), tag=expiry)
        plain.set(KEY_B, sealed(KEY_B, expiry, encode(snap)), tag=expiry)
        with caplog.at_level(logging.WARNING, logger="coalesce_client"):
            assert await disk.get(KEY_A) is None
        assert KEY_A not in plain and KEY_B in plain
    assert "unknown snapshot format version 3" in caplog.text
    assert await disk.get(KEY_B) == snap  # the same response, sealed as this version seals it


async def test_prune_counts_the_responses_it_removes_not_the_bookkeeping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    storage = DiskStorage(tmp_path / "cache", clock=clock)
    try:
        pointer = VaryPointer(("accept",), (KEY_B,), "http://x/", clock.now, clock.now + 10)
        index = UrlIndex((KEY_A, KEY_B), "http://x/", clock.now, clock.now + 10)
        for key, record in ((KEY_A, pointer), (KEY_B, snapshot()), (KEY_C, index)):
            await storage.set(key, record, 10)
        clock.advance(11)  # expired on the storage's clock
        assert await storage.prune() == 1
        assert await storage.get(KEY_A) is None and await storage.volume() > 0
        # Rows past diskcache's own expiry as well (its expire() removes them unread).
        monkeypatch.setattr(rows, "KEEP_EXPIRED", -3600.0)
        for key, record in ((KEY_A, pointer), (KEY_B, snapshot()), (KEY_C, index)):
            await storage.set(key, record, 60)
        assert await storage.get(KEY_B) is None  # diskcache's expiry passed already
        assert await storage.prune() == 1
    finally:
        await storage.close()


def make_orphan(directory: Path, like: Path, name: str, age: float) -> Path:
    """A value file no row names, as a writer killed before committing leaves it, ``age`` old."""
    orphan = directory / name[:2] / name[2:4] / f"{name[4:]}.val"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(like, orphan)
    when = time.time() - age
    os.utime(orphan, (when, when))
    return orphan


async def test_orphaned_value_files_count_in_volume_and_prune_removes_the_old_ones(
    disk: DiskStorage,
) -> None:
    await disk.set(KEY_A, snapshot(b"x" * 100_000), 60)
    [own] = value_files(disk.directory)
    before = await disk.volume()
    old = make_orphan(disk.directory, own, "ab" * 16, ORPHAN_GRACE + 5)
    young = make_orphan(disk.directory, own, "cd" * 16, 1)  # maybe a write in progress
    other = disk.directory / "ab" / "notes.txt"  # not a value file: never ours to remove
    other.write_text("mine")
    assert await disk.volume() == before + 2 * own.stat().st_size
    assert await disk.prune() == 1
    assert not old.exists() and young.exists() and other.exists() and own.exists()
    assert await disk.volume() == before + own.stat().st_size
    got = await disk.get(KEY_A)
    assert got is not None and got.body == b"x" * 100_000


async def test_maintenance_reads_the_disk_in_the_worker_thread(
    tmp_path: Path, calls_by_thread: list[tuple[str, str]]
) -> None:
    storage = DiskStorage(tmp_path / "cache")
    try:
        for i in range(250):
            await storage.set(f"{i:064x}", snapshot(b"x"), 60)
        calls_by_thread.clear()
        assert len([key async for key, _ in storage.entries()]) == 250
        assert await storage.volume() > 0
        assert await storage.prune() == 0
    finally:
        await storage.close()
    reads = [t for t, f in calls_by_thread if f == "Cache.get"]
    assert len(reads) == 2 * 250  # entries(), then prune()
    assert all(t.startswith("coalesce_client-disk") for t in reads), set(reads)


def files_under(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


async def test_a_read_only_storage_reads_what_a_writer_stored_and_changes_nothing(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "cache"
    writer = DiskStorage(directory)
    await writer.set(KEY_A, snapshot(b"small"), 60)
    await writer.set(KEY_B, snapshot(b"x" * 100_000), 60)  # in a file
    reader = DiskStorage(directory, read_only=True)  # the writer is still open: its log is read
    try:
        await writer.set(KEY_C, snapshot(b"later"), 60)
        before = {k: v for k, v in files_under(directory).items() if k != "cache.db-shm"}
        got = await reader.get(KEY_B)
        assert got is not None and got.body == b"x" * 100_000
        listed = {key: snap.body async for key, snap in reader.entries()}
        assert listed == {KEY_A: b"small", KEY_B: b"x" * 100_000, KEY_C: b"later"}
        assert await reader.volume() == await writer.volume()
        for write in (
            reader.set(KEY_A, snapshot(), 60),
            reader.delete(KEY_A),
            reader.clear(),
            reader.prune(),
        ):
            with pytest.raises(PermissionError, match="read-only"):
                await write
        assert {k: v for k, v in files_under(directory).items() if k != "cache.db-shm"} == before
        assert "read-only" in repr(reader)
    finally:
        await reader.close()
        await writer.close()


async def test_a_session_on_a_read_only_storage_stores_nothing_and_says_nothing(
    pages: Origin, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 19: a read-only storage the user asked for is not a failure. Its hits are served; a
    miss and an invalidation store and delete nothing, and nothing is logged about it."""
    directory = tmp_path / "cache"
    async with CoalescingSession(ttl=60, storage=DiskStorage(directory)) as writer:
        assert (await writer.get(pages.url("/page/kept"))).cache_status == "miss"
    # A reader makes the WAL's files if they are missing (opening.py); nothing else changes.
    before = {k: v for k, v in files_under(directory).items() if not k.startswith("cache.db-")}
    storage = DiskStorage(directory, read_only=True)
    with caplog.at_level(logging.DEBUG, logger="coalesce_client"):
        async with CoalescingSession(ttl=60, storage=storage) as s:
            for path, status in [("kept", "hit"), ("new", "miss"), ("new", "miss")]:
                async with s.get(pages.url(f"/page/{path}")) as r:
                    assert (r.cache_status, await r.read()) == (status, body_of(path))
            async with s.post(pages.url("/page/kept")) as r:  # invalidates: nothing to delete
                assert r.status == 200
            async with s.get(pages.url("/page/kept")) as r:
                assert r.cache_status == "hit"  # still there: the storage keeps what it has
            assert s.stats.stored == 0
    assert pages.calls["/page/new"] == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not any("read-only" in r.getMessage() for r in caplog.records)  # not even at DEBUG
    assert {k: v for k, v in files_under(directory).items() if not k.startswith("cache.db-")} == (
        before
    )


@pytest.mark.parametrize("options", [{"create": False}, {"read_only": True}])
@pytest.mark.parametrize("kind", ["empty", "other files", "another database"])
def test_without_create_a_directory_that_holds_no_cache_is_refused_untouched(
    tmp_path: Path, options: dict[str, bool], kind: str
) -> None:
    directory = tmp_path / "notes"
    directory.mkdir()
    if kind == "other files":
        (directory / "notes.txt").write_text("mine")
    elif kind == "another database":
        # sqlite3's own context manager commits but does not close (3.13 warns at collection).
        with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con, con:
            con.execute("CREATE TABLE notes (body TEXT)")
    before = files_under(directory)
    with pytest.raises(ValueError, match="holds no cache") as info:
        DiskStorage(directory, **options)
    assert str(directory) in str(info.value)
    assert files_under(directory) == before
    with pytest.raises(ValueError, match="does not exist"):
        DiskStorage(tmp_path / "missing", **options)
    assert not (tmp_path / "missing").exists()


# -- lifecycle and construction -------------------------------------------------------------------


def open_files_under(directory: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    found = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
async def test_close_releases_the_files_and_later_use_raises(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    storage = DiskStorage(directory)
    await storage.set(KEY_A, snapshot(b"x" * 100_000), 60)
    assert await storage.get(KEY_A) is not None
    assert open_files_under(directory)  # the database is open
    await storage.close()
    assert open_files_under(directory) == []
    for use in (
        storage.get(KEY_A),
        storage.set(KEY_A, snapshot(), 60),
        storage.delete(KEY_A),
        storage.clear(),
    ):
        with pytest.raises(StorageClosedError, match="DiskStorage is closed"):
            await use
    await storage.close()
    assert "closed" in repr(storage)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
async def test_closed_from_another_thread_every_connection_is_closed(tmp_path: Path) -> None:
    """Issue 26: the loop's connection belongs to the thread that built the storage; closed from
    another thread it was left to the garbage collector (a ResourceWarning on Python 3.13)."""
    directory = tmp_path / "cache"
    storage = DiskStorage(directory)
    await storage.set(KEY_A, snapshot(), 60)
    assert await storage.get(KEY_A) is not None  # read on this thread, through its connection
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await asyncio.to_thread(asyncio.run, storage.close())
        gc.collect()
    assert open_files_under(directory) == []
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_construction_that_fails_in_diskcache_leaves_no_connection_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26: diskcache raising after it connected (a damaged database, a full disk) left its
    connection to the garbage collector (a ResourceWarning on Python 3.13)."""
    from coalesce_client.storage.disk.rows import BytesDisk

    def failing(self: BytesDisk, *args: Any, **kwargs: Any) -> None:
        raise OSError("injected: the disk failed")

    monkeypatch.setattr(BytesDisk, "__init__", failing)  # diskcache builds it once connected
    directory = tmp_path / "cache"
    with pytest.raises(ValueError, match="injected") as info:
        DiskStorage(directory)
    assert str(directory) in str(info.value)
    assert open_files_under(directory) == []  # not waiting for the collector


def make_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a directory, not a database")
    return path


def make_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


BAD_DIRECTORIES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a file": (lambda tmp: make_file(tmp / "file"), "not a directory"),
    "under a file": (lambda tmp: make_file(tmp / "file") / "cache", "cannot be created"),
    "a corrupt database": (
        lambda tmp: make_file(tmp / "cache" / "cache.db").parent,
        "file is not a database",
    ),
    "a database that is a directory": (
        lambda tmp: make_dir(tmp / "cache" / "cache.db").parent,
        "unable to open database file",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_DIRECTORIES))
def test_an_unusable_directory_fails_at_construction_naming_path_and_cause(
    tmp_path: Path, kind: str
) -> None:
    make, cause = BAD_DIRECTORIES[kind]
    path = make(tmp_path)
    with pytest.raises(ValueError, match=cause) as info:
        DiskStorage(path)
    assert str(path) in str(info.value)


NO_PERMISSION = """
import os, sys
from coalesce_client.storage import DiskStorage
if os.geteuid() == 0:  # root writes anywhere: drop to nobody, as a service account would run
    os.setgid(65534)
    os.setuid(65534)
for path in sys.argv[1:]:
    try:
        DiskStorage(path)
    except ValueError as exc:
        print(exc)
    else:
        print("opened")
"""


def test_a_directory_without_permission_fails_at_construction_naming_path_and_cause() -> None:
    base = Path(tempfile.mkdtemp(prefix="coalesce-perm-"))  # under /tmp: traversable by all
    try:
        existing, parent = base / "existing", base / "parent"
        existing.mkdir()
        parent.mkdir()
        for path in (base, existing, parent):
            path.chmod(0o555)  # readable and searchable, not writable
        out = subprocess.run(
            [sys.executable, "-c", NO_PERMISSION, str(existing), str(parent / "cache")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        first, second = out.stdout.splitlines()
        assert str(existing) in first and "not readable and writable" in first
        assert str(parent / "cache") in second and "Permission denied" in second
    finally:
        for path in (base, base / "existing", base / "parent"):
            path.chmod(0o755)
        shutil.rmtree(base)


async def test_a_directory_is_created_if_missing(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "cache"
    storage = DiskStorage(path)
    assert (path / "cache.db").is_file()
    await storage.close()  # a storage left open leaves its connections to the collector


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": -1}, "max_bytes"),
        ({"max_bytes": 1.5}, "max_bytes"),
        ({"max_bytes": True}, "max_bytes"),
        ({"max_bytes": 2**63}, "max_bytes"),  # beyond SQLite's integers
        ({"lock_timeout": -1}, "lock_timeout"),
        ({"lock_timeout": 10**400}, "lock_timeout"),  # beyond a float
        ({"loop_timeout": float("nan")}, "loop_timeout"),
        ({"loop_timeout": "0.1"}, "loop_timeout"),
        ({"clock": 3}, "clock"),
        ({"create": 0}, "create"),
        ({"read_only": "yes"}, "read_only"),
    ],
)
def test_bad_options_raise_value_error_naming_them(
    tmp_path: Path, kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        DiskStorage(tmp_path / "cache", **kwargs)
    assert not (tmp_path / "cache").exists()  # checked before touching the disk


def test_importing_the_package_does_not_import_diskcache() -> None:
    code = (
        "import sys, coalesce_client, coalesce_client.storage\n"
        "assert 'diskcache' not in sys.modules\n"
        "from coalesce_client.storage import DiskStorage\n"
        "assert 'diskcache' in sys.modules and DiskStorage.__name__ == 'DiskStorage'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
