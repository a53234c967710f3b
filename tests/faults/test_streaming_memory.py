"""Fault case: a large download through a pass-through costs what it costs through plain aiohttp.

Modes (every case under tests/faults/ has both):
    python -m pytest tests/faults/test_streaming_memory.py -s                 # QUICK: 16 MiB
    COALESCE_FAULTS=full python -m pytest tests/faults/test_streaming_memory.py -s   # FULL: 200 MiB

A local origin streams a body of that size in 64 KiB chunks; the client reads it with
``iter_chunked(64 KiB)`` and throws each chunk away. The peak of traced Python memory
(tracemalloc) is compared, in the same run, for plain aiohttp, ``cache=False``, and a cacheable GET
whose body is over ``max_body_size`` (so the flight streams it instead of sharing it). Figures are
printed (run with ``-s``) for the notes and BENCHMARKS.md; the assertion is that each of ours peaks
within 4 MiB of plain aiohttp's peak, whatever the size.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from conftest import Origin

from coalesce_client import CachePolicy, CoalescingSession

FULL = os.environ.get("COALESCE_FAULTS") == "full"
SIZE = (200 if FULL else 16) * 1024 * 1024
CHUNK = 64 * 1024
MARGIN = 4 * 1024 * 1024


def big_route(origin: Origin) -> None:
    block = b"x" * CHUNK

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = SIZE
        await resp.prepare(request)
        for _ in range(SIZE // CHUNK):
            await resp.write(block)
        await resp.write_eof()
        return resp

    origin.route("/big", handler)


async def peak_of(download: Callable[[], Awaitable[int]]) -> tuple[int, int]:
    """(bytes received, peak traced bytes above the start) of one download."""
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        received = await download()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return received, peak - start


async def drain(resp: aiohttp.ClientResponse | object) -> int:
    received = 0
    async for chunk in resp.content.iter_chunked(CHUNK):  # type: ignore[attr-defined]
        received += len(chunk)
    return received


async def test_a_large_pass_through_peaks_like_plain_aiohttp(origin: Origin) -> None:
    big_route(origin)
    await origin.start()
    url = origin.url("/big")

    async def plain() -> int:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return await drain(r)

    async def cache_false() -> int:
        async with CoalescingSession(ttl=60) as s, s.get(url, cache=False) as r:
            return await drain(r)

    async def too_large() -> int:
        policy = CachePolicy(max_body_size=1024 * 1024)
        async with CoalescingSession(ttl=60, policy=policy) as s, s.get(url) as r:
            assert r.cache_status == "miss"
            return await drain(r)

    figures = {}
    for name, download in (
        ("plain", plain),
        ("cache=False", cache_false),
        ("too large", too_large),
    ):
        figures[name] = await peak_of(download)
    print(f"\nstreamed {SIZE / 2**20:.0f} MiB; peak traced memory above the start:")
    for name, (received, peak) in figures.items():
        print(f"  {name:12} {peak / 2**20:8.2f} MiB  (received {received / 2**20:.0f} MiB)")
    assert all(received == SIZE for received, _ in figures.values())
    base = figures["plain"][1]
    assert figures["cache=False"][1] <= base + MARGIN, figures
    assert figures["too large"][1] <= base + MARGIN, figures
    assert origin.calls["/big"] == 3
