"""The coalesce-client command, run as a user runs it: in a subprocess, against a local origin."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from aiohttp import web
from conftest import Origin

from coalesce_client import CoalescingSession, DiskStorage, Snapshot


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coalesce_client", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


async def arun(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command while this test's event loop keeps serving the origin."""
    return await asyncio.to_thread(run, *args)


def table(stdout: str) -> dict[str, list[str]]:
    return {line[:17].strip(): line[17:].split() for line in stdout.splitlines()[2:5]}


def test_demo_shows_the_stampede_and_the_cure() -> None:
    out = run("demo", "--requests", "60", "--urls", "3", "--delay", "0.01")
    assert out.returncode == 0, out.stderr
    rows = table(out.stdout)
    # requests, upstream, hits, coalesced
    assert rows["plain aiohttp"][:4] == ["60", "60", "0", "0"]
    assert rows["coalesce (cold)"][:4] == ["60", "3", "0", "57"]
    assert rows["coalesce (warm)"][:4] == ["60", "0", "60", "0"]
    assert "plain aiohttp sent 60 to the origin, coalesce_client sent 3" in out.stdout


def test_demo_keeps_its_cache_dir_and_a_second_run_starts_warm(tmp_path: Path) -> None:
    args = ("demo", "-n", "20", "-u", "2", "--delay", "0.01", "--cache-dir", str(tmp_path / "c"))
    assert run(*args).returncode == 0
    second = run(*args)
    assert second.returncode == 0, second.stderr
    assert table(second.stdout)["coalesce (cold)"][:3] == ["20", "0", "20"]  # all from disk


def test_demo_with_bounded_concurrency() -> None:
    out = run("demo", "-n", "30", "-u", "3", "-c", "5", "--delay", "0.005")
    assert out.returncode == 0, out.stderr
    assert table(out.stdout)["plain aiohttp"][:2] == ["30", "30"]


async def test_fetch_coalesces_writes_bodies_and_a_rerun_hits_from_disk(
    started: Origin, tmp_path: Path
) -> None:
    cache, out_dir = tmp_path / "cache", tmp_path / "out"
    urls = [started.url(f"/text?page={i % 3}") for i in range(12)]
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls[6:]) + "\n# a comment\n\n")
    first = await arun("fetch", *urls[:6], "-i", str(listing), "--cache-dir", str(cache))
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len([line for line in lines if line.startswith("200 ")]) == 12
    assert lines[-1].startswith("12 requests: 0 hits, 9 coalesced, 3 misses; 3 sent upstream")
    assert started.total == 3
    assert first.stderr == ""  # not a terminal: no progress bar

    second = await arun("fetch", *urls, "--cache-dir", str(cache), "-o", str(out_dir))
    assert second.returncode == 0, second.stderr
    assert "3 requests: 3 hits" in second.stdout  # each distinct URL once
    assert started.total == 3  # nothing upstream: all from disk
    bodies = sorted(p.read_text() for p in out_dir.iterdir())
    assert len(bodies) == 3  # one file per distinct URL
    assert all(b.startswith("hello /text #") for b in bodies)


async def test_fetch_to_a_folder_writes_a_repeated_url_once_and_counts_the_files(
    started: Origin, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    a, b = started.url("/text?a"), started.url("/text?b")
    out = await arun("fetch", a, b, a, a, "--cache-dir", str(tmp_path / "c"), "-o", str(out_dir))
    assert out.returncode == 0, out.stderr
    assert len(list(out_dir.iterdir())) == 2
    assert f"wrote 2 files to {out_dir} (2 repeated URLs fetched once)" in out.stdout
    assert "2 requests:" in out.stdout and started.total == 2


async def test_fetch_to_a_folder_counts_only_the_files_it_wrote(
    started: Origin, tmp_path: Path
) -> None:
    from coalesce_client.cli._fetch import _output_name

    out_dir = tmp_path / "out"
    a, b = started.url("/text?a"), started.url("/text?b")
    (out_dir / _output_name(b)).mkdir(parents=True)  # where b's body would go: not writable
    out = await arun("fetch", a, b, "--cache-dir", str(tmp_path / "c"), "-o", str(out_dir))
    assert out.returncode == 1
    assert f"wrote 1 file to {out_dir}" in out.stdout
    assert f"failed: {b}: cannot write {out_dir / _output_name(b)}" in out.stderr
    assert "Traceback" not in out.stderr


async def test_fetch_sends_headers_and_reports_failures_per_url(
    origin: Origin, tmp_path: Path, unused_tcp_port: int
) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("X-Token", "none"))

    origin.route("/echo", echo)
    await origin.start()
    dead = f"http://127.0.0.1:{unused_tcp_port}/nobody"
    out = await arun(
        "fetch",
        origin.url("/echo"),
        dead,
        "--header",
        "X-Token: abc",
        "--cache-dir",
        str(tmp_path / "c"),
        "-o",
        str(tmp_path / "o"),
    )
    assert out.returncode == 1
    assert f"failed: {dead}" in out.stderr
    assert "1 failed" in out.stdout
    assert [p.read_text() for p in (tmp_path / "o").iterdir()] == ["abc"]


async def test_a_header_given_twice_is_sent_twice(origin: Origin, tmp_path: Path) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text="seen")

    origin.route("/echo", echo)
    await origin.start()
    args = ("--header", "X-A: 1", "--header", "X-A:2", "--header", "X-B: 3")
    out = await arun("fetch", origin.url("/echo"), *args, "--cache-dir", str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    assert origin.requests[0].headers.getall("X-A") == ["1", "2"]
    assert origin.requests[0].headers.getall("X-B") == ["3"]


async def test_an_http_error_exits_0_unless_fail_is_given(
    origin: Origin, tmp_path: Path, unused_tcp_port: int
) -> None:
    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such page")

    origin.route("/missing", missing)
    await origin.start()
    url, ok, cache = origin.url("/missing"), origin.url("/text"), str(tmp_path / "c")

    plain = await arun("fetch", url, "--cache-dir", cache)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("404 ")

    out_dir = tmp_path / "o"
    failed = await arun("fetch", url, ok, "--fail", "--cache-dir", cache, "-o", str(out_dir))
    assert failed.returncode == 22
    assert f"failed: {url}: HTTP 404 Not Found" in failed.stderr
    assert "1 failed" in failed.stdout
    [written] = [p.read_text() for p in out_dir.iterdir()]  # the 200's body, not the 404's
    assert written.startswith("hello /text")

    # A URL that could not be fetched at all is the worse failure: exit status 1.
    dead = f"http://127.0.0.1:{unused_tcp_port}/nobody"
    both = await arun("fetch", url, dead, "--fail", "--cache-dir", cache)
    assert both.returncode == 1
    assert "2 failed" in both.stdout

    shown = " ".join(run("fetch", "--help").stdout.split())
    assert "--fail treat an HTTP status of 400 or more as a failure" in shown
    assert "22 with --fail when a URL answered with a status of 400 or more" in shown


async def test_cache_stats_list_prune_and_clear(started: Origin, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    urls = [started.url(f"/text?n={i}") for i in range(3)]
    assert (await arun("fetch", *urls, "--cache-dir", cache, "--ttl", "600")).returncode == 0
    # One more entry, written by a process whose clock says it expired long ago.
    long_ago = time.time() - 1000
    old = DiskStorage(cache, clock=lambda: long_ago)
    stale = Snapshot(200, "OK", (), "http://old.example/", "GET", b"old", long_ago, long_ago + 1)
    await old.set("0" * 64, stale, ttl=1)
    await old.close()

    stats = run("cache", "stats", "--cache-dir", cache)
    assert stats.returncode == 0, stats.stderr
    assert "entries:   4 (3 fresh, 0 stale kept for revalidation, 1 expired" in stats.stdout
    assert "oldest:" in stats.stdout
    listing = run("cache", "list", "--cache-dir", cache).stdout.splitlines()
    assert len(listing) == 4
    assert "expired" in listing[0]
    assert "http://old.example/" in listing[0]  # oldest first
    assert sum(any(u in line for line in listing) for u in urls) == 3
    pruned = run("cache", "prune", "--cache-dir", cache)
    assert pruned.stdout.strip() == "removed 1 expired or unreadable entry or stray file"
    cleared = run("cache", "clear", "--cache-dir", cache)
    assert cleared.stdout.strip() == "removed 3 entries"
    assert "entries:   0" in run("cache", "stats", "--cache-dir", cache).stdout


async def test_cache_commands_count_responses_only(origin: Origin, tmp_path: Path) -> None:
    # Issue 18: each response's Vary pointer and URL index were counted as entries too
    # ("removed 6" when 2 responses went).
    async def varying(request: web.Request) -> web.Response:
        return web.Response(text="hello", headers={"Vary": "Accept"})

    origin.route("/varying", varying)
    await origin.start()
    cache = tmp_path / "cache"
    long_ago = time.time() - 1000  # stored by a process whose clock says they expired long ago

    def clock() -> float:
        return long_ago

    storage = DiskStorage(cache, clock=clock)
    async with CoalescingSession(ttl=1, storage=storage, clock=clock) as s:
        for page in ("a", "b"):
            assert (await s.get(origin.url(f"/varying?{page}"))).cache_status == "miss"
    stats = await arun("cache", "stats", "--cache-dir", str(cache))
    assert "entries:   2 (0 fresh, 0 stale kept for revalidation, 2 expired" in stats.stdout
    listing = await arun("cache", "list", "--cache-dir", str(cache))
    assert len(listing.stdout.splitlines()) == 2
    pruned = await arun("cache", "prune", "--cache-dir", str(cache))
    assert pruned.stdout.strip() == "removed 2 expired or unreadable entries and stray files"
    assert "entries:   0" in (await arun("cache", "stats", "--cache-dir", str(cache))).stdout


async def test_cache_list_shows_the_requested_url_and_where_it_was_redirected(
    origin: Origin, tmp_path: Path
) -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/text?to")

    origin.route("/old", moved)
    await origin.start()
    started = origin
    cache = str(tmp_path / "cache")
    old, plain = started.url("/old"), started.url("/text?plain")
    assert (await arun("fetch", old, plain, "--cache-dir", cache)).returncode == 0
    listing = run("cache", "list", "--cache-dir", cache)
    assert listing.returncode == 0, listing.stderr
    lines = sorted(line.split("  ")[-1] for line in listing.stdout.splitlines())
    assert lines == sorted([f"{old} -> {started.url('/text?to')}", plain])


def files_under(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory`` with its content and modification time."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize("action", ["stats", "list", "clear", "prune"])
def test_cache_commands_refuse_a_directory_that_is_not_a_cache(tmp_path: Path, action: str) -> None:
    (tmp_path / "notes.txt").write_text("not a cache")
    before = files_under(tmp_path)
    out = run("cache", action, "--cache-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stdout == ""
    [line] = out.stderr.splitlines()
    assert line.startswith("coalesce-client cache: error: ")
    assert str(tmp_path) in line and "holds no cache (it has no cache.db)" in line
    assert files_under(tmp_path) == before  # no cache.db, nothing else either


# Runs the command as nobody when the tests run as root, for whom permission bits stop nothing.
# What nobody may not read (root's Python installation) is imported before dropping privileges.
AS_NOBODY = """
import os, sys
from coalesce_client import cli
from coalesce_client.storage.disk import storage as disk
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
sys.exit(cli.main(sys.argv[1:]))
"""


async def fill(directory: Path) -> None:
    storage = DiskStorage(directory)
    now = time.time()
    for i, body in enumerate((b"small", b"x" * 100_000)):  # in the database, and in a file
        url = f"http://example.com/{i}"
        await storage.set(f"{i:064x}", Snapshot(200, "OK", (), url, "GET", body, now, now + 60), 60)
    await storage.close()


def test_cache_stats_and_list_read_a_read_only_cache_and_change_nothing(tmp_path: Path) -> None:
    asyncio.run(fill(tmp_path / "cache"))
    base = Path(tempfile.mkdtemp(prefix="coalesce-ro-"))  # under /tmp: reachable by nobody
    cache = base / "cache"
    try:
        shutil.copytree(tmp_path / "cache", cache)
        for path in [cache, *cache.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        base.chmod(0o555)
        before = files_under(cache)
        stats, listing = (
            subprocess.run(
                [sys.executable, "-c", AS_NOBODY, "cache", action, "--cache-dir", str(cache)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            for action in ("stats", "list")
        )
        assert stats.returncode == 0, stats.stderr
        assert "entries:   2 (2 fresh, 0 stale kept for revalidation, 0 expired" in stats.stdout
        assert listing.returncode == 0, listing.stderr
        assert len(listing.stdout.splitlines()) == 2
        assert "http://example.com/1" in listing.stdout
        assert files_under(cache) == before  # same files, same bytes, same times: none new
    finally:
        for path in [base, cache, *cache.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(base)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("demo", "--requests", "0"), "must be at least 1"),
        (("demo", "--bogus"), "unrecognized arguments: --bogus"),
        (("fetch", "http://x/", "--header", "no-colon"), "expected NAME:VALUE"),
        (("fetch", "not a url"), "invalid URL: 'not a url'"),
        (("fetch", "ftp://example.com/x"), "invalid URL"),
        (("fetch",), "no URLs given"),
        (("cache", "stats", "--cache-dir", "/nonexistent/place"), "no cache directory"),
        (("cache", "explode"), "invalid choice"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_status_2(args: tuple[str, ...], message: str) -> None:
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stdout == ""
    assert "Traceback" not in out.stderr


def test_an_unusable_cache_dir_is_a_clear_error(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    out = run("fetch", "http://127.0.0.1:9/x", "--cache-dir", str(a_file))
    assert out.returncode == 2
    assert str(a_file) in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [(), ("demo",), ("fetch",), ("cache",)])
def test_help_on_every_subcommand(command: tuple[str, ...]) -> None:
    out = run(*command, "--help")
    assert out.returncode == 0
    assert out.stdout.startswith("usage: coalesce-client")


@pytest.mark.parametrize("command", ["fetch", "cache"])
def test_help_names_the_default_cache_directory(command: str) -> None:
    out = run(command, "--help")
    shown = " ".join(out.stdout.split())  # argparse wraps lines where it likes
    assert "(default: .cache/coalesce-client, under the current directory)" in shown


def test_the_installed_command_runs() -> None:
    exe = Path(sys.executable).parent / "coalesce-client"
    if not exe.exists():
        pytest.skip("the package is not installed with its console script in this environment")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert out.returncode == 0
    assert "demo" in out.stdout


async def test_fetch_shows_a_progress_bar_on_a_terminal(started: Origin, tmp_path: Path) -> None:
    import os
    import pty

    master, slave = pty.openpty()  # stderr is a terminal, as for a person at a shell
    try:
        argv = [sys.executable, "-m", "coalesce_client", "fetch", "--cache-dir", str(tmp_path)]
        argv += [started.url(f"/text?i={i}") for i in range(3)]
        out = await asyncio.to_thread(
            subprocess.run, argv, stderr=slave, stdout=subprocess.PIPE, text=True, timeout=60
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    shown = b"".join(chunks).decode()
    assert out.returncode == 0
    assert "\r[##########....................] 1/3" in shown
    assert "] 3/3" in shown
    assert "3 requests:" in out.stdout
