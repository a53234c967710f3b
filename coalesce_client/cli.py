"""The ``coalesce-client`` command: demo, fetch, and disk cache maintenance.

argparse from the standard library: three subcommands with a few options each need nothing more,
and the command stays free of runtime dependencies beyond the library's own. Bad input is one line
on stderr and exit status 2; a fetch that had failures exits 1, and one that met HTTP errors under
``--fail`` exits 22, as curl does. Storage is opened before the event loop starts, and nothing
blocking runs on the loop after that (maintenance is async, bodies are written in a thread).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from yarl import URL

from . import demo
from .options import check_header_name, is_seconds

if TYPE_CHECKING:
    from .snapshot import Snapshot
    from .storage.disk import DiskStorage

__all__ = ["main"]

DEFAULT_CACHE_DIR = ".cache/coalesce-client"


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not is_seconds(value):
        raise argparse.ArgumentTypeError(f"must be a non-negative number of seconds, got {text}")
    return value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    try:
        if not sep:
            raise ValueError("no colon")
        return check_header_name(name.strip(), "--header"), value.strip()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}") from None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coalesce-client",
        description="Stop cache stampedes in aiohttp programs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="show a stampede and its cure against a local origin (no network needed)",
        description=(
            "Start a slow origin on 127.0.0.1, fire a burst of concurrent requests at it through "
            "plain aiohttp, then through CoalescingSession with a disk cache (cold, then warm), "
            "and print what each cost."
        ),
    )
    p.add_argument("-n", "--requests", type=_positive_int, default=500, help="requests per burst")
    p.add_argument("-u", "--urls", type=_positive_int, default=5, help="distinct URLs (5)")
    p.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        default=None,
        help="requests in flight at once (default: all of them)",
    )
    p.add_argument("--delay", type=_seconds, default=0.05, help="origin response time (0.05 s)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the disk cache here (default: a temp dir)",
    )

    p = sub.add_parser(
        "fetch",
        help="fetch URLs concurrently through the coalescer and a persistent disk cache",
        description=(
            "Fetch URLs concurrently through CoalescingSession and a disk cache that survives "
            "runs: repeated URLs share one request, and a second run answers from disk."
        ),
        epilog=(
            "Exit status: 0 when every URL was fetched, whatever its HTTP status (a 404 too, as "
            "with curl); 1 when a URL could not be fetched or its body written; 22 with --fail "
            "when a URL answered with a status of 400 or more (and none failed otherwise); 2 for "
            "bad input."
        ),
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="URLs to fetch")
    p.add_argument(
        "-i", "--input", type=Path, metavar="FILE", help="read more URLs from FILE, one per line"
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(DEFAULT_CACHE_DIR),
        metavar="DIR",
        help="keep the disk cache here, created if missing (default: %(default)s, under the "
        "current directory)",
    )
    p.add_argument("--ttl", type=_seconds, default=3600.0, help="seconds to keep responses (3600)")
    p.add_argument("-c", "--concurrency", type=_positive_int, default=20, help="at once (20)")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="write each body to a file in this folder (a URL given twice is fetched and "
        "written once)",
    )
    p.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="send this header; repeat the option for more headers, or for more values of one",
    )
    p.add_argument("--timeout", type=_seconds, default=30.0, help="seconds per request (30)")
    p.add_argument(
        "--fail",
        action="store_true",
        help="treat an HTTP status of 400 or more as a failure: its body is not written, and "
        "the exit status is 22 (as curl --fail)",
    )

    p = sub.add_parser(
        "cache",
        help="inspect or clean a disk cache",
        description="Inspect or clean a disk cache written by DiskStorage.",
    )
    p.add_argument(
        "action",
        choices=["stats", "list", "clear", "prune"],
        help="stats: size and age; list: one line per entry (these two only read: a read-only "
        "cache will do); clear: remove all; prune: remove what has expired",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(DEFAULT_CACHE_DIR),
        metavar="DIR",
        help="the disk cache (default: %(default)s, under the current directory)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        # Each command opens its storage before its event loop starts (opening may block briefly).
        if args.command == "fetch":
            urls = _read_urls(args)
            _make_output_folder(args.output)
            return asyncio.run(_fetch(args, urls, _open_disk(args.cache_dir)))
        if args.command == "cache":
            if not args.cache_dir.is_dir():
                raise UsageError(f"no cache directory at {args.cache_dir}")
            # Never a new cache where there was none; stats and list only read, so that they
            # work on a read-only cache and change nothing in it.
            reads_only = args.action in ("stats", "list")
            storage = _open_disk(args.cache_dir, create=False, read_only=reads_only)
            return asyncio.run(_cache(args, storage))
    except UsageError as exc:
        print(f"coalesce-client {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    raise AssertionError(args.command)  # argparse rejects unknown commands


# -- demo -----------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.cache_dir is not None:
        rows = asyncio.run(_demo_rows(args, _open_disk(args.cache_dir)))
    else:
        with tempfile.TemporaryDirectory(prefix="coalesce-demo-") as tmp:
            rows = asyncio.run(_demo_rows(args, _open_disk(Path(tmp))))
    print(demo.format_table(rows))
    plain, cold = rows[0], rows[1]
    print(
        f"\n{plain.requests} concurrent requests over {args.urls} URLs: plain aiohttp sent "
        f"{plain.upstream} to the origin, coalesce_client sent {cold.upstream}; "
        f"the warm run answered from the disk cache."
    )
    print(f"done in {time.perf_counter() - started:.2f} s")
    return 0


async def _demo_rows(args: argparse.Namespace, storage: DiskStorage) -> list[demo.Row]:
    return await demo.run(
        requests=args.requests,
        urls=args.urls,
        delay=args.delay,
        concurrency=args.concurrency,
        storage=storage,
    )


def _open_disk(directory: Path, *, create: bool = True, read_only: bool = False) -> DiskStorage:
    from .storage.disk import DiskStorage

    try:
        return DiskStorage(directory, create=create, read_only=read_only)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# -- fetch ----------------------------------------------------------------------------------------


def _read_urls(args: argparse.Namespace) -> list[str]:
    urls = list(args.urls)
    if args.input is not None:
        try:
            text = args.input.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {args.input}: {exc.strerror or exc}") from None
        urls += [line.strip() for line in text.splitlines() if line.strip()]
        urls = [u for u in urls if not u.startswith("#")]
    if not urls:
        raise UsageError("no URLs given (pass them as arguments or with -i FILE)")
    for u in urls:
        try:
            parsed = URL(u)
        except ValueError:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise UsageError(f"invalid URL: {u!r} (expected http:// or https://)")
    return urls


def _output_name(url: str) -> str:
    parsed = URL(url)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parsed.host}{parsed.path}").strip("_")[:80]
    return f"{stem or 'index'}-{hashlib.sha256(url.encode()).hexdigest()[:10]}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class _Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.stream = stream
        self.live = stream.isatty()

    def step(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if self.live:
            width = 30
            filled = int(width * self.done / self.total)
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                f"{f' ({self.failed} failed)' if self.failed else ''}"
            )
            self.stream.flush()

    def finish(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def _make_output_folder(folder: Path | None) -> None:
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot use output folder {folder}: {exc.strerror}") from None


async def _fetch(args: argparse.Namespace, urls: list[str], storage: DiskStorage) -> int:
    import aiohttp

    from .client import CoalescingSession

    repeated = 0
    if args.output is not None:
        # One file per URL: a URL given more than once is fetched and written once.
        distinct = list(dict.fromkeys(urls))
        repeated, urls = len(urls) - len(distinct), distinct
    progress = _Progress(len(urls), sys.stderr)
    limit = asyncio.Semaphore(args.concurrency)
    failures: list[tuple[str, str]] = []  # (url, reason): not fetched, or body not written
    refused: list[tuple[str, str]] = []  # (url, reason): an HTTP error status under --fail
    lines: list[str] = [""] * len(urls)
    written = 0
    timeout = aiohttp.ClientTimeout(total=args.timeout or None)
    # A list of pairs, not a dict: a header given twice is sent twice, as curl sends it.
    async with CoalescingSession(
        ttl=args.ttl, storage=storage, headers=args.header, timeout=timeout
    ) as session:

        async def one(i: int, url: str) -> None:
            nonlocal written
            async with limit:
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                        status, cache_status = resp.status, resp.cache_status
                        reason = f"HTTP {status} {resp.reason or ''}".rstrip()
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    reason = str(exc) or type(exc).__name__
                    failures.append((url, reason))
                    lines[i] = f"ERR  {'-':<9} {'-':>9}  {url}  ({reason})"
                    progress.step(False)
                    return
            lines[i] = f"{status:<4} {cache_status:<9} {len(body):>9}  {url}"
            if args.fail and status >= 400:
                refused.append((url, reason))
                progress.step(False)
                return
            if args.output is not None:
                path = args.output / _output_name(url)
                try:
                    await asyncio.to_thread(path.write_bytes, body)
                except OSError as exc:
                    failures.append((url, f"cannot write {path}: {exc.strerror or exc}"))
                    progress.step(False)
                    return
                written += 1
            progress.step(True)

        await asyncio.gather(*(one(i, u) for i, u in enumerate(urls)))
        progress.finish()
        stats = session.stats
    if args.output is None:
        for line in lines:
            print(line)
    else:
        files = _plural(written, "file")
        once = f" ({_plural(repeated, 'repeated URL')} fetched once)" if repeated else ""
        print(f"wrote {files} to {args.output}{once}")
    print(
        f"{stats.requests} requests: {stats.hits} hits, {stats.coalesced} coalesced, "
        f"{stats.misses} misses; {stats.upstream} sent upstream, {stats.stored} stored, "
        f"{len(failures) + len(refused)} failed"
    )
    for url, reason in failures + refused:
        print(f"failed: {url}: {reason}", file=sys.stderr)
    return 1 if failures else 22 if refused else 0


# -- cache ----------------------------------------------------------------------------------------


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _urls(snap: Snapshot) -> str:
    """The URL that was asked for, then where its redirects led if elsewhere."""
    requested = snap.history[0].url if snap.history else snap.url
    return requested if requested == snap.url else f"{requested} -> {snap.url}"


async def _cache(args: argparse.Namespace, storage: DiskStorage) -> int:
    directory: Path = args.cache_dir
    try:
        if args.action == "stats":
            now = time.time()
            count = expired = 0
            oldest = newest = None
            async for _, snap in storage.entries():
                count += 1
                expired += snap.expires_at <= now
                oldest = snap.stored_at if oldest is None else min(oldest, snap.stored_at)
                newest = snap.stored_at if newest is None else max(newest, snap.stored_at)
            print(f"directory: {directory}")
            print(f"entries:   {count} ({expired} expired)")
            print(f"bytes:     {await storage.volume()}")
            if oldest is not None and newest is not None:
                print(f"oldest:    {_when(oldest)}")
                print(f"newest:    {_when(newest)}")
        elif args.action == "list":
            now = time.time()
            listed = []  # (stored_at, line): the bodies are not kept
            async for key, snap in storage.entries():
                state = "expired" if snap.expires_at <= now else f"expires {_when(snap.expires_at)}"
                line = f"{key[:16]}  {snap.status}  {len(snap.body):>9}  {state}  {_urls(snap)}"
                listed.append((snap.stored_at, line))
            for _, line in sorted(listed, key=lambda item: item[0]):
                print(line)
        elif args.action == "clear":
            count = 0
            async for _ in storage.entries():
                count += 1
            await storage.clear()
            print(f"removed {count} entries")
        elif args.action == "prune":
            removed = await storage.prune()
            print(f"removed {removed} expired entries")
    finally:
        await storage.close()
    return 0
