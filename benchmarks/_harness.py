"""What the benchmark scripts share: the local origin, its body and timings, and small helpers.

Not a benchmark itself. The scripts import it as ``_harness``: ``python benchmarks/bench_X.py``
puts ``benchmarks/`` first on ``sys.path``, so no install is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import platform
import pstats
import sys
import time
from asyncio.subprocess import PIPE
from collections import Counter
from collections.abc import Callable, Coroutine
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

BODY = bytes(range(256)) * 8  # 2 KiB
DELAY = 0.05  # the slow route's answer time, seconds
TTL = 600
T = TypeVar("T")


# -- the event loop: the default asyncio loop, or uvloop (the ``[speed]`` extra) when asked --------


def add_loop_option(parser: argparse.ArgumentParser) -> None:
    """``--uvloop``: every script takes it, and passes it on to the processes it starts."""
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run on uvloop (pip install 'coalesce_client[speed]') instead of asyncio's loop",
    )


def run(main: Coroutine[Any, Any, T], use_uvloop: bool) -> T:
    """``asyncio.run(main)``, or the same on uvloop: the one place where a script picks a loop."""
    if not use_uvloop:
        return asyncio.run(main)
    import uvloop  # the [speed] extra; imported only when asked, so the default needs nothing

    return uvloop.run(main)


def loop_name(use_uvloop: bool) -> str:
    """The loop a script runs on, for its first line."""
    return f"uvloop {version('uvloop')}" if use_uvloop else "default asyncio loop"


class Origin:
    """A local aiohttp.web origin: ``/fast/{name}`` answers now, ``/slow/{name}`` after 50 ms,
    ``/sized/{name}/{size}`` answers ``size`` bytes now, cacheable for an hour."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def _fast(self, request: web.Request) -> web.Response:
        self.calls[request.path] += 1
        return web.Response(body=BODY, content_type="application/octet-stream")

    async def _slow(self, request: web.Request) -> web.Response:
        self.calls[request.path] += 1
        await asyncio.sleep(DELAY)
        return web.Response(body=BODY, content_type="application/octet-stream")

    async def _sized(self, request: web.Request) -> web.Response:
        self.calls[request.path] += 1
        body = sized_body(int(request.match_info["size"]))
        return web.Response(body=body, headers={"Cache-Control": "max-age=3600"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/fast/{name}", self._fast)
        app.router.add_get("/slow/{name}", self._slow)
        app.router.add_get("/sized/{name}/{size}", self._sized)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return self.base + path


HERE = str(Path(__file__).resolve().parent)  # benchmarks/: where an origin process imports from


class OriginProcess:
    """The same origin in a process of its own, as an origin is: its 50 ms start when a request
    reaches it, while the callers' loop goes on (the in-loop ``Origin`` starts them only after
    every task ready before its socket's turn has run). Counts stay in the child."""

    _CODE = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); from _harness import Origin\n"
        "async def main():\n"
        "    origin = Origin(); await origin.start(); print(origin.base, flush=True)\n"
        "    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)\n"
        "asyncio.run(main())\n"
    )

    def __init__(self) -> None:
        self.base = ""
        self._child: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", self._CODE, HERE, stdin=PIPE, stdout=PIPE
        )
        assert self._child.stdout is not None
        self.base = (await self._child.stdout.readline()).decode().strip()
        check(self.base.startswith("http://"), "the origin process did not start")

    async def stop(self) -> None:
        if self._child is not None and self._child.stdin is not None:
            self._child.stdin.close()  # its stdin ends: it exits
            await self._child.wait()

    def url(self, path: str) -> str:
        return self.base + path


@functools.lru_cache(maxsize=4)
def sized_body(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


async def floor_burst(n: int) -> float:
    """Wall seconds of a burst's floor: n tasks awaiting one shared future that resolves after
    DELAY (what n callers of one 50 ms origin cost with nothing in between)."""
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    fut: asyncio.Future[bytes] = loop.create_future()
    loop.call_later(DELAY, fut.set_result, BODY)

    async def one() -> bytes:
        return await fut

    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0


def check(ok: bool, detail: object = "") -> None:
    """A check that survives ``python -O``: the figures mean nothing if it fails."""
    if not ok:
        raise RuntimeError(f"benchmark check failed: {detail}")


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def python_platform() -> str:
    """The start of each script's first line: Python version and implementation, OS, machine."""
    return (
        f"Python {sys.version.split()[0]} ({platform.python_implementation()}) on {sys.platform}, "
        f"{platform.machine()}"
    )


async def sequential(get: Callable[[str], Any], url: str, n: int) -> float:
    """Per-call time in µs of n sequential ``async with get(url) as r: await r.read()``."""
    t0 = time.perf_counter()
    for _ in range(n):
        async with get(url) as r:
            await r.read()
    return (time.perf_counter() - t0) / n * 1e6


async def profile_sequential(get: Callable[[str], Any], url: str, n: int, top: int) -> str:
    """cProfile of ``sequential(get, url, n)``, the ``top`` functions by own time, as text."""
    prof = cProfile.Profile()
    prof.enable()
    await sequential(get, url, n)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()
