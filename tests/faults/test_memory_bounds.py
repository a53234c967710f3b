"""Fault case: MemoryStorage's memory bounds under floods of keys and heavy entries (issue 11).

What it holds: whatever the shape of the entries (a flood of tiny ones, large bodies, long redirect
histories with big headers, a random mix, tiny ones swept out by one huge one), the memory the
storage keeps, as tracemalloc sees it, is at most 1.5 x ``max_bytes``. Each case prints its
figures: keys set, entries kept, bytes counted, bytes traced (held at the end, and the peak), their
ratio to ``max_bytes``, and the real and counted cost of one entry.

Modes, chosen by the environment variable ``COALESCE_FAULTS``:

* unset, empty or ``quick``: QUICK, run by the normal test suite in a few seconds (50,000 distinct
  keys, a few hundred redirect histories);
* ``full``: FULL, for the figures of a note (1,000,000 distinct keys, 2,000 redirect histories of
  20 hops, a 256 MiB limit filled with 1 MiB bodies; about three minutes and 350 MB of memory)::

      COALESCE_FAULTS=full python -m pytest tests/faults/test_memory_bounds.py -s

Anything else is a mistake and stops the run (a typo must not quietly run the quick mode). Run with
``-s`` to see the figures. Self-contained: this file imports nothing from the suite's conftest.
"""

from __future__ import annotations

import gc
import os
import random
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from coalesce_client import MemoryStorage, Snapshot

_MODE = os.environ.get("COALESCE_FAULTS", "") or "quick"
if _MODE not in ("quick", "full"):
    raise ValueError(f"COALESCE_FAULTS must be 'quick' or 'full', got {_MODE!r}")
FULL = _MODE == "full"

MiB = 1024 * 1024
BOUND = 1.5  # held memory, in max_bytes, never to be passed (README, MemoryStorage)

pytestmark = pytest.mark.timeout(1800 if FULL else 60)


@dataclass(frozen=True, slots=True)
class Case:
    keys: int  # distinct keys set, one entry each
    max_bytes: int


def key(i: int) -> str:
    return f"{i:064x}"  # as long as the SHA-256 hex digests keys.py makes


def fresh(text: str) -> str:
    """A new string object equal to ``text``, as a parsed response has (literals are shared)."""
    return (text + ".")[:-1]


def tiny(i: int) -> Snapshot:
    return Snapshot(
        200,
        fresh("OK"),
        ((fresh("Content-Type"), fresh("application/json")),),
        f"http://api.example.com/items/{i}",
        fresh("GET"),
        b'{"id": %d}' % i,
        1_800_000_000.0 + i,
        1_800_000_060.0 + i,
    )


def redirected(i: int, hops: int, headers: int, value: int) -> Snapshot:
    history = tuple(
        Snapshot(
            301 + h % 8,
            fresh("Moved"),
            tuple((f"X-Hop-{h}-{j}", f"{i:08x}" + "v" * value) for j in range(headers)),
            f"http://example.com/{i}/hop/{h}",
            fresh("GET"),
            b"",
            1_800_000_000.0 + i,
            1_800_000_060.0 + i,
        )
        for h in range(hops)
    )
    return Snapshot(
        200,
        fresh("OK"),
        ((fresh("Content-Type"), fresh("text/html")),),
        f"http://example.com/{i}",
        fresh("GET"),
        b"<html></html>",
        1_800_000_000.0 + i,
        1_800_000_060.0 + i,
        history,
    )


def body_of(i: int, size: int) -> Snapshot:
    return Snapshot(
        200,
        fresh("OK"),
        ((fresh("Content-Type"), fresh("application/octet-stream")),),
        f"http://example.com/blob/{i}",
        fresh("GET"),
        bytes([i % 256]) * size,
        1_800_000_000.0 + i,
        1_800_000_060.0 + i,
    )


def mixed(rng: random.Random) -> Callable[[int], Snapshot]:
    """A random shape per entry: tiny, many headers, non-ASCII, a body, a redirect history."""

    def make(i: int) -> Snapshot:
        kind = rng.randrange(5)
        if kind == 0:
            return tiny(i)
        if kind == 1:
            n = rng.randrange(1, 60)
            headers = tuple((f"X-H{j}-{i}", "v" * rng.randrange(0, 200)) for j in range(n))
            return Snapshot(200, fresh("OK"), headers, f"http://e.com/{i}", fresh("GET"), b"{}")
        if kind == 2:
            text = rng.choice(["日本語", "café", "\U0001f600", "\udcff"]) * rng.randrange(1, 100)
            url = f"http://e.com/ü/{i}"
            return Snapshot(200, fresh("OK"), ((f"X-T{i}", text),), url, fresh("GET"), b"")
        if kind == 3:
            return body_of(i, rng.randrange(0, 64 * 1024))
        return redirected(i, rng.randrange(1, 6), rng.randrange(1, 10), rng.randrange(0, 300))

    return make


async def flood(
    name: str,
    case: Case,
    make: Callable[[int], Snapshot],
    *,
    then: Callable[[], Snapshot] | None = None,
) -> None:
    """Set ``case.keys`` entries made by ``make``, then one made by ``then`` if given; check the
    memory held against the bound and print the figures."""
    storage = MemoryStorage(max_entries=10 * case.keys, max_bytes=case.max_bytes)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        for i in range(case.keys):
            await storage.set(key(i), make(i), 3600)
        elapsed = time.perf_counter() - started
        held, peak = (m - base for m in tracemalloc.get_traced_memory())
        # Evicted tuples and floats wait in CPython's free lists (a few MiB at most, whatever
        # max_bytes is); a full collection gives them back. Held counts them: the process has them.
        gc.collect()
        spare = held - (tracemalloc.get_traced_memory()[0] - base)
        kept, counted = len(storage), storage.bytes
        report(name, case, kept, counted, held, peak, spare, elapsed)
        assert held <= BOUND * case.max_bytes, f"{name}: {held / case.max_bytes:.2f} x max_bytes"
        assert counted <= case.max_bytes
        assert kept < case.keys, "the case must overflow the storage"
        if then is not None:
            last = then()
            await storage.set(key(case.keys), last, 3600)
            swept = tracemalloc.get_traced_memory()[0] - base
            print(
                f"  then one entry of {len(last.body) / MiB:.1f} MiB: {len(storage)} kept,"
                f" {swept / MiB:.1f} MiB traced ({swept / case.max_bytes:.2f} x max_bytes)"
            )
            assert storage.get_nowait(key(case.keys)) is last
            assert swept <= BOUND * case.max_bytes, f"{name}: {swept / case.max_bytes:.2f} x"
    finally:
        tracemalloc.stop()
        await storage.close()


def report(
    name: str,
    case: Case,
    kept: int,
    counted: int,
    held: int,
    peak: int,
    spare: int,
    elapsed: float,
) -> None:
    print(
        f"\n[{_MODE}] {name}: {case.keys:,} keys set into max_bytes={case.max_bytes / MiB:.0f} MiB"
        f"\n  entries kept {kept:,}; bytes counted {counted / MiB:.1f} MiB;"
        f" traced {held / MiB:.1f} MiB held (of which {spare / MiB:.1f} MiB in CPython's free"
        f" lists), {peak / MiB:.1f} MiB peak"
        f"\n  held / max_bytes = {held / case.max_bytes:.2f}; peak / max_bytes ="
        f" {peak / case.max_bytes:.2f}; held / counted = {held / max(counted, 1):.2f}"
        f"\n  per entry: {(held - spare) / max(kept, 1):,.0f} bytes real (free lists aside),"
        f" {counted / max(kept, 1):,.0f} counted;"
        f" {elapsed / case.keys * 1e6:.1f} us per set (make included, under tracemalloc)"
    )


async def test_a_flood_of_distinct_keys_stays_within_the_bound() -> None:
    case = Case(1_000_000, 32 * MiB) if FULL else Case(50_000, 4 * MiB)
    # Then one entry of most of max_bytes sweeps nearly all out: the LRU's table, sized for the
    # thousands of entries it held, is not given back until it grows again, and must fit in the
    # bound's margin.
    big = case.max_bytes - 64 * 1024
    await flood("distinct keys, tiny entries", case, tiny, then=lambda: body_of(-1, big))


async def test_long_redirect_histories_with_big_headers_stay_within_the_bound() -> None:
    if FULL:
        case, hops, headers, value = Case(2_000, 64 * MiB), 20, 32, 1024
    else:
        case, hops, headers, value = Case(300, 16 * MiB), 10, 16, 512
    await flood(
        f"redirect histories ({hops} hops x {headers} headers of {value} B)",
        case,
        lambda i: redirected(i, hops, headers, value),
    )


async def test_large_bodies_stay_within_the_bound() -> None:
    case = Case(1_000, 256 * MiB) if FULL else Case(64, 16 * MiB)
    await flood("1 MiB bodies", case, lambda i: body_of(i, MiB))


async def test_a_random_mix_of_shapes_stays_within_the_bound() -> None:
    seed = 11
    case = Case(300_000, 64 * MiB) if FULL else Case(20_000, 8 * MiB)
    await flood(f"random mix (seed {seed})", case, mixed(random.Random(seed)))
