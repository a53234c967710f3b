"""coalesce-client fetch as a new user meets it (issue 19): bodies streamed to their files, bad
input refused before any request, a summary that adds up, and an interrupt that says where it was.

Each test runs the command in a subprocess against a local origin, as a user runs it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from aiohttp import web
from conftest import Origin
from test_cli import arun, run

import coalesce_client
from coalesce_client.cli._fetch import _output_name

MiB = 1024 * 1024

# A child that runs the command, then reports its peak resident memory (Linux: VmHWM, which an
# exec starts afresh, unlike getrusage's ru_maxrss) on stderr's last line, in KiB.
PEAK = "[l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]"
CHILD_FETCH = f"""
import sys
from coalesce_client import cli
code = cli.main(sys.argv[1:])
print("peak", {PEAK}, file=sys.stderr)
sys.exit(code)
"""
CHILD_PLAIN = f"""
import asyncio, sys, aiohttp
async def main(url, path):
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        with open(path, "wb") as f:
            async for chunk in r.content.iter_chunked(64 * 1024):
                f.write(chunk)
asyncio.run(main(sys.argv[1], sys.argv[2]))
print("peak", {PEAK}, file=sys.stderr)
"""


async def peak_kib(code: str, *args: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return int(err.decode().splitlines()[-1].split()[1])


class Holding(NamedTuple):
    """A route's handler that sent part of its body: ``sent`` is set when it has, and it holds
    the connection open until ``release`` is set."""

    sent: asyncio.Event
    release: asyncio.Event


def serve_large(
    origin: Origin, path: str, size: int, *, sent: int | None = None, chunked: bool = False
) -> Holding:
    """A route answering ``size`` bytes with their Content-Length (unless ``chunked``), one MiB
    at a time from one buffer (the test process does not hold the body). With ``sent``: only
    that many bytes, then the handler holds the connection open until released."""
    chunk = bytes(range(256)) * (MiB // 256)
    holding = Holding(asyncio.Event(), asyncio.Event())

    async def large(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={} if chunked else {"Content-Length": str(size)})
        await resp.prepare(request)
        for start in range(0, sent if sent is not None else size, MiB):
            await resp.write(chunk[: min(MiB, size - start)])
        if sent is not None:
            holding.sent.set()
            await holding.release.wait()  # the client is interrupted meanwhile
        return resp

    origin.route(path, large)
    return holding


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
@pytest.mark.parametrize(
    ("size", "chunked"),
    [
        (64 * MiB, False),  # its size known from the start: streamed from the first byte
        (8 * MiB, True),  # read up to the session's max_body_size, then streamed
    ],
)
async def test_fetch_to_a_file_streams_its_body_in_bounded_memory(
    origin: Origin, tmp_path: Path, size: int, chunked: bool
) -> None:
    # Issue 19: the whole body was held in memory about twice over (240 MiB for 100 MiB).
    serve_large(origin, "/large", size, chunked=chunked)
    await origin.start()
    url = origin.url("/large")
    plain = await peak_kib(CHILD_PLAIN, url, str(tmp_path / "plain"))
    out_dir = tmp_path / "out"
    args = ("fetch", url, "-o", str(out_dir), "--cache-dir", str(tmp_path / "c"))
    ours = await peak_kib(CHILD_FETCH, *args)
    [written] = out_dir.iterdir()
    assert written.read_bytes() == bytes(range(256)) * (size // 256)  # what serve_large sent
    assert ours <= plain + 16 * 1024, f"fetch -o peaked at {ours} KiB, plain aiohttp at {plain}"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
async def test_a_large_url_given_many_times_is_fetched_once_in_bounded_memory(
    origin: Origin, tmp_path: Path
) -> None:
    # Issue 24: a body over the session's max_body_size is shared as it streams (it was fetched
    # once per caller); it is never held whole.
    size = 48 * MiB
    serve_large(origin, "/large", size)
    await origin.start()
    url = origin.url("/large")
    plain = await peak_kib(CHILD_PLAIN, url, str(tmp_path / "plain"))
    cache = str(tmp_path / "c")
    ours = await peak_kib(CHILD_FETCH, "fetch", url, url, url, url, "--cache-dir", cache)
    assert origin.calls["/large"] == 2  # one download for the four, and plain's own
    assert ours <= plain + 16 * 1024, f"fetch peaked at {ours} KiB, plain aiohttp at {plain}"


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="Python 3.10's asyncio.run does not turn SIGINT into a cancellation: the "
    "KeyboardInterrupt lands anywhere, and the command exited 1 once in CI (a known gap)",
)
async def test_an_interrupted_fetch_says_how_far_it_got_and_leaves_no_partial_file(
    origin: Origin, tmp_path: Path
) -> None:
    holding = serve_large(origin, "/large", 32 * MiB, sent=12 * MiB)  # over max_body_size
    await origin.start()
    out_dir, first, large = tmp_path / "out", origin.url("/text"), origin.url("/large")
    out_dir.mkdir()
    existing = out_dir / _output_name(large)
    existing.write_bytes(b"from an earlier run")  # an interrupted download never replaces it
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coalesce_client", "fetch", first, large, "-c", "1",
        "-o", str(out_dir), "--cache-dir", str(tmp_path / "c"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.wait_for(holding.sent.wait(), 30)  # the first URL is done (-c 1)
        for _ in range(1000):  # up to 10 s for the command to start writing what it received
            if list(out_dir.glob(".*")):
                break
            await asyncio.sleep(0.01)
        [partial] = out_dir.glob(".*")  # the second body, being written under a temporary name
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        holding.release.set()
    assert proc.returncode == 130
    assert "interrupted: 1 of 2 URLs done" in err.decode(), err.decode()
    assert "Traceback" not in err.decode()
    assert not partial.exists()
    assert existing.read_bytes() == b"from an earlier run"
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([existing.name, _output_name(first)])


async def test_a_failed_download_leaves_no_partial_file(origin: Origin, tmp_path: Path) -> None:
    async def truncated(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(20 * MiB)})
        await resp.prepare(request)
        await resp.write(b"x" * (10 * MiB))
        assert request.transport is not None
        request.transport.close()  # the connection drops mid-body
        return resp

    origin.route("/truncated", truncated)
    await origin.start()
    url, out_dir = origin.url("/truncated"), tmp_path / "out"
    out_dir.mkdir()
    (out_dir / _output_name(url)).write_bytes(b"kept")
    out = await arun("fetch", url, "-o", str(out_dir), "--cache-dir", str(tmp_path / "c"))
    assert out.returncode == 1
    assert f"failed: {url}: " in out.stderr and "Traceback" not in out.stderr
    assert [p.read_bytes() for p in out_dir.iterdir()] == [b"kept"]


@pytest.mark.parametrize("value", ["b\nc", "b\r\nX-Injected: 1"])
async def test_a_header_value_with_a_line_break_is_refused_before_any_request(
    started: Origin, tmp_path: Path, value: str
) -> None:
    cache = str(tmp_path / "c")
    cached, other = started.url("/text?cached"), started.url("/text?other")
    assert (await arun("fetch", cached, "--cache-dir", cache)).returncode == 0
    calls = started.total
    for url in (cached, other):  # a stored URL (a hit) and one that is not
        out = await arun("fetch", url, "--header", f"X-A: {value}", "--cache-dir", cache)
        assert out.returncode == 2, out.stdout
        assert "X-A" in out.stderr and "line break" in out.stderr
        assert "Traceback" not in out.stderr and out.stdout == ""
    assert started.total == calls


async def test_a_redirect_nowhere_is_a_one_line_failure(origin: Origin, tmp_path: Path) -> None:
    async def nowhere(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://[::1/x"})

    async def to_ftp(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "ftp://example.com/x"})

    origin.route("/nowhere", nowhere)
    origin.route("/ftp", to_ftp)
    await origin.start()
    urls = (origin.url("/nowhere"), origin.url("/ftp"))
    out = await arun("fetch", *urls, "--cache-dir", str(tmp_path / "c"))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert sorted(line.split(": ")[1] for line in out.stderr.splitlines()) == sorted(urls)


async def test_the_summary_adds_up_and_the_columns_align(origin: Origin, tmp_path: Path) -> None:
    async def validated(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(text="validated", headers={"ETag": '"v1"', "Cache-Control": "no-cache"})

    origin.route("/validated", validated)
    await origin.start()
    cache = str(tmp_path / "c")
    hit, checked = origin.url("/text?hit"), origin.url("/validated")
    assert (await arun("fetch", hit, checked, "--cache-dir", cache)).returncode == 0
    out = await arun("fetch", hit, checked, hit, origin.url("/text?new"), "--cache-dir", cache)
    assert out.returncode == 0, out.stderr
    *lines, summary = out.stdout.splitlines()
    assert summary.startswith("4 requests: 2 hits, 0 coalesced, 1 miss, 1 revalidated; ")
    assert [line.split()[1] for line in lines] == ["hit", "revalidated", "hit", "miss"]
    assert len({line.index("  http://") for line in lines}) == 1  # the URLs start in one column


async def test_one_of_each_is_singular(started: Origin, tmp_path: Path) -> None:
    out = await arun("fetch", started.url("/text"), "--cache-dir", str(tmp_path / "c"))
    assert "1 requests" not in out.stdout and "1 misses" not in out.stdout
    assert out.stdout.splitlines()[-1].startswith("1 request: 0 hits, 0 coalesced, 1 miss; ")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:99999/x", "invalid URL: 'http://127.0.0.1:99999/x' (invalid port"),
        ("http://127.0.0.1:port/x", "invalid URL: 'http://127.0.0.1:port/x' (invalid port"),
        (
            "ftp://example.com/x",
            "invalid URL: 'ftp://example.com/x' (expected http:// or https://)",
        ),
    ],
)
def test_an_invalid_url_is_refused_for_what_is_wrong_with_it(url: str, message: str) -> None:
    out = run("fetch", url)
    assert out.returncode == 2
    assert message in out.stderr, out.stderr


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"coalesce-client {coalesce_client.__version__}"


def test_a_timeout_of_0_is_documented_as_none() -> None:
    shown = " ".join(run("fetch", "--help").stdout.split())
    assert "--timeout TIMEOUT seconds per request (30); 0 for none, as in aiohttp" in shown


@pytest.mark.parametrize("cache_dir", ["", "."])
def test_fetch_refuses_a_cache_dir_that_is_empty_or_holds_other_files(
    tmp_path: Path, cache_dir: str
) -> None:
    (tmp_path / "notes.txt").write_text("the user's own file")
    out = run("fetch", "http://127.0.0.1:9/x", "--cache-dir", cache_dir, cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "--cache-dir" in out.stderr if cache_dir == "" else "'.'" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing created


def test_fetch_refuses_a_directory_of_other_files_and_names_it(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    out = run("fetch", "http://127.0.0.1:9/x", "--cache-dir", str(mine))
    assert out.returncode == 2
    [line] = out.stderr.splitlines()
    assert line.startswith("coalesce-client fetch: error: ")
    assert str(mine) in line and "holds no cache" in line
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


async def test_fetch_still_makes_a_new_or_empty_directory_a_cache(
    started: Origin, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for directory in (tmp_path / "new" / "deeper", empty):
        out = await arun("fetch", started.url("/text"), "--cache-dir", str(directory))
        assert out.returncode == 0, out.stderr
        assert (directory / "cache.db").exists()
    again = await arun("fetch", started.url("/text"), "--cache-dir", str(empty))  # now a cache
    assert again.returncode == 0 and "1 hit" in again.stdout
