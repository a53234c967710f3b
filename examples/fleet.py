"""A fleet of processes on one Redis: 4 processes x 50 concurrent callers, 1 upstream call.

    python examples/fleet.py                      # starts a local redis-server from PATH
    python examples/fleet.py --redis-server /path/to/redis-server
    REDIS_URL=redis://127.0.0.1:6379/0 python examples/fleet.py   # a Redis you already run

Starts a slow origin on 127.0.0.1 (300 ms an answer), then 4 worker processes, each a
CoalescingSession on a RedisStorage sending 50 concurrent GETs of the same URL. Callers coalesce in
their process, and the processes' leaders share one lease in Redis: the origin is asked once.
It needs redis-py (the extra: pip install 'coalesce_client[redis]', or pip install '.[redis]' in a
checkout) and a Redis; without either it says what is missing and exits with status 1, before any
worker starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections import Counter

from aiohttp import web

from coalesce_client import CoalescingSession, RedisStorage

PROCESSES = 4
CALLERS = 50


async def worker(url: str, redis_url: str, namespace: str) -> None:
    """One process of the fleet: 50 concurrent callers of one URL."""
    storage = RedisStorage(redis_url, namespace=namespace)
    async with CoalescingSession(ttl=60, storage=storage) as s:

        async def one() -> str:
            async with s.get(url) as resp:
                await resp.text()
                return resp.cache_status

        statuses = Counter(await asyncio.gather(*(one() for _ in range(CALLERS))))
    print(json.dumps(statuses))


async def fleet(redis_url: str) -> None:
    calls = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)  # a slow upstream
        return web.json_response({"price": 42})

    app = web.Application()
    app.router.add_get("/price", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/price"
    namespace = f"fleet-example-{uuid.uuid4().hex[:8]}"  # a fresh key space for this run
    args = (__file__, "--worker", url, redis_url, namespace)
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE)
        for _ in range(PROCESSES)
    ]
    statuses: Counter[str] = Counter()
    failed = 0
    for proc in procs:
        out, _ = await proc.communicate()
        if proc.returncode == 0:
            statuses.update(json.loads(out))
        else:
            failed += 1  # its traceback is on stderr already
    await runner.cleanup()
    if failed:
        raise SystemExit(f"{failed} of {PROCESSES} worker processes failed")
    print(f"{PROCESSES} processes x {CALLERS} concurrent callers: {calls} upstream call(s)")
    print(f"exactly one caller fleet-wide made the request: {statuses['miss'] == 1}")
    print(f"the others: {statuses['coalesced'] + statuses['hit']} coalesced or hit")


def local_redis(binary: str, directory: str) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server on a free port of 127.0.0.1, nothing saved to disk."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory, "--save", ""],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert server.stdout is not None
    for line in server.stdout:  # its log says when it accepts connections
        if b"Ready to accept connections" in line:
            return server, f"redis://127.0.0.1:{port}/0"
    raise SystemExit("redis-server did not start")


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(worker(*sys.argv[2:5]))
        return
    try:
        import redis.asyncio  # noqa: F401 - RedisStorage needs it; checked before any worker starts
    except ImportError:
        raise SystemExit(
            "fleet.py needs redis-py, the redis extra: pip install 'coalesce_client[redis]' "
            "(in a checkout: pip install '.[redis]')"
        ) from None
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        asyncio.run(fleet(redis_url))
        return
    binary = sys.argv[2] if sys.argv[1:2] == ["--redis-server"] else shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            "No redis-server on PATH. Install one (apt-get install redis-server, brew install "
            "redis) or give its path with --redis-server PATH, or run one with `docker run -p "
            "6379:6379 redis` and set REDIS_URL=redis://127.0.0.1:6379/0."
        )
    with tempfile.TemporaryDirectory() as directory:
        server, redis_url = local_redis(binary, directory)
        try:
            print(f"redis-server started on {redis_url}")
            asyncio.run(fleet(redis_url))
        finally:
            server.terminate()
            server.communicate()


if __name__ == "__main__":
    main()
