"""The ``fetch`` subcommand: URLs fetched concurrently through CoalescingSession and a disk cache.

Rules:

- Bad input (no URLs, a URL that is not http or https or whose port is not one, an unreadable
  ``-i`` file, an output folder or cache directory that cannot be used) is found before the event
  loop starts, as UsageError; so is a header whose value holds a line break (the parser's).
- Results are reported in the order the URLs were given, whatever order they finished in: one line
  per URL on stdout (or, with ``-o``, one line for the files written), then the session's stats,
  whose outcomes add up to its requests, then each failure on stderr. A progress bar is drawn on
  stderr only when it is a terminal. Interrupted (Ctrl-C), it says on stderr how many URLs were
  done, and ``main()`` exits 130.
- Bodies are streamed: with ``-o``, each into a temporary file in the output folder, renamed to
  its own name only once complete, so that a failed or interrupted download never leaves a partial
  file nor replaces an existing one; without, counted as they pass. A body the session shares and
  stores is held whole, and for a moment twice (aiohttp joins what it read): the session's
  ``max_body_size`` is ``KEPT_BODY``, so a download's peak memory stays within about 12 MiB of
  plain aiohttp's, whatever its size. A larger body is shared as it streams (issue 24: the
  flight's spool holds ``KEPT_BODY`` in memory, the rest in an unlinked temporary file), so a
  URL given many times is downloaded once even without ``-o``; it is stored only by a storage
  that takes streamed bodies, within its limit and ``max_stored_size``.
- With ``-o``, one file per distinct URL: a URL given more than once is fetched and written once.
- Exit status: 0 when every URL was fetched, whatever its HTTP status (as with curl); 1 when a URL
  could not be fetched or its body written; 22 under ``--fail`` when a URL answered with a status
  of 400 or more (and none failed otherwise).
- Nothing blocking runs on the loop: the cache is opened before it starts, files are opened,
  written and renamed in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO, TypeVar, get_args
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from .. import CachePolicy, CacheStatus, CoalescingSession
from ._common import UsageError, open_disk, plural

if TYPE_CHECKING:
    from .. import DiskStorage, Stats

_T = TypeVar("_T")
_CHUNK = 256 * 1024  # bytes of a body read, then written, at a time
KEPT_BODY = 2 * 1024 * 1024  # the largest body shared and stored (module rules)
_STATUS_WIDTH = max(map(len, get_args(CacheStatus)))  # "revalidated": the column fits them all


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """The command line of one fetch, parsed and checked by the parser."""

    urls: tuple[str, ...]  # given as arguments, not yet checked
    input: Path | None  # -i: a file of more URLs, one per line
    cache_dir: Path
    ttl: float
    concurrency: int
    output: Path | None  # -o: a folder for the bodies; None prints one line per URL instead
    headers: tuple[tuple[str, str], ...]  # pairs: a header given twice is sent twice, as by curl
    timeout: float  # seconds per request; 0 for none, as aiohttp's ClientTimeout takes it
    fail: bool  # an HTTP status of 400 or more is a failure, as with curl --fail


class _Plan(NamedTuple):
    """The URLs to fetch, in the order given, and how many repeats ``-o`` dropped."""

    urls: list[str]
    repeated: int


def run(options: FetchOptions) -> int:
    urls = _read_urls(options.urls, options.input)
    _make_output_folder(options.output)
    plan = _Plan(urls, 0)
    if options.output is not None:
        # One file per URL: a URL given more than once is fetched and written once.
        distinct = list(dict.fromkeys(urls))
        plan = _Plan(distinct, len(urls) - len(distinct))
    storage = open_disk(options.cache_dir)
    progress = _Progress(len(plan.urls), sys.stderr)
    try:
        return asyncio.run(_fetch(options, plan, storage, progress))
    except KeyboardInterrupt:
        progress.finish()
        done = f"{progress.done} of {plural(progress.total, 'URL')} done"
        print(f"interrupted: {done}", file=sys.stderr)
        raise


def _read_urls(given: tuple[str, ...], listing: Path | None) -> list[str]:
    urls = list(given)
    if listing is not None:
        try:
            text = listing.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {listing}: {exc.strerror or exc}") from None
        urls += [line.strip() for line in text.splitlines() if line.strip()]
        urls = [u for u in urls if not u.startswith("#")]
    if not urls:
        raise UsageError("no URLs given (pass them as arguments or with -i FILE)")
    for u in urls:
        problem = _url_problem(u)
        if problem is not None:
            raise UsageError(f"invalid URL: {u!r} ({problem})")
    return urls


def _url_problem(text: str) -> str | None:
    """What makes ``text`` no URL to fetch, or None."""
    if not _port_is_a_port(text):  # checked first: yarl's reason varies with its version
        return "invalid port: not a number from 0 to 65535"
    try:
        parsed = URL(text)
    except ValueError as exc:  # an IPv6 address left open, a host IDNA refuses...
        return str(exc) or "not a URL"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "expected http:// or https://"
    return None


def _port_is_a_port(text: str) -> bool:
    try:
        split = urlsplit(text)
    except ValueError:
        return True  # not the port's fault: yarl says what is wrong
    try:
        split.port  # noqa: B018 - reading it checks it
    except ValueError:
        return False
    return True


def _make_output_folder(folder: Path | None) -> None:
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot use output folder {folder}: {exc.strerror}") from None


def _output_name(url: str) -> str:
    parsed = URL(url)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parsed.host}{parsed.path}").strip("_")[:80]
    return f"{stem or 'index'}-{hashlib.sha256(url.encode()).hexdigest()[:10]}"


async def _fetch(
    options: FetchOptions, plan: _Plan, storage: DiskStorage, progress: _Progress
) -> int:
    timeout = aiohttp.ClientTimeout(total=options.timeout or None)
    # A list of pairs, not a dict: a header given twice is sent twice, as curl sends it.
    async with CoalescingSession(
        ttl=options.ttl,
        storage=storage,
        policy=CachePolicy(max_body_size=KEPT_BODY),
        headers=list(options.headers),
        timeout=timeout,
    ) as session:
        batch = _Batch(session, options, progress)
        await asyncio.gather(*(batch.one(i, u) for i, u in enumerate(plan.urls)))
        progress.finish()
    # Read once the session is closed: closing waits for the background writes that ``stored``
    # counts when they complete.
    return batch.report(session.stats, plan.repeated)


class _CannotWrite(Exception):
    """A body was fetched but its file could not be written: the message says which and why."""


async def _on_disk(path: Path, func: Callable[..., _T], *args: Any) -> _T:
    """``func(*args)`` in a thread; an OSError becomes ``_CannotWrite`` naming ``path``."""
    try:
        return await asyncio.to_thread(func, *args)
    except OSError as exc:
        raise _CannotWrite(f"cannot write {path}: {exc.strerror or exc}") from None


async def _save(body: AsyncIterator[bytes], path: Path) -> int:
    """Stream ``body`` into ``path``, by way of a temporary file in its folder renamed once the
    body is complete (module rules); its size."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    file = await _on_disk(path, open, temp, "xb")  # "x": never another writer's file
    size = 0
    try:
        async for chunk in body:
            await _on_disk(path, file.write, chunk)
            size += len(chunk)
        await _on_disk(path, file.close)
        await _on_disk(path, os.replace, temp, path)
    except BaseException:  # failed, cancelled or interrupted: no partial file is left
        with contextlib.suppress(OSError):
            file.close()
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return size


async def _count(body: AsyncIterator[bytes]) -> int:
    size = 0
    async for chunk in body:
        size += len(chunk)
    return size


class _Got(NamedTuple):
    """What became of one URL that was fetched."""

    status: int
    cache_status: str
    reason: str  # "HTTP 404 Not Found"
    size: int  # bytes in its body
    written: bool  # its body is in its file


class _Batch:
    """One run's URLs in flight, and what became of each; only ``one`` and its helpers write."""

    def __init__(
        self, session: CoalescingSession, options: FetchOptions, progress: _Progress
    ) -> None:
        self.session = session
        self.options = options
        self.limit = asyncio.Semaphore(options.concurrency)
        self.progress = progress
        self.lines = [""] * progress.total  # one per URL, in the order given
        self.failures: list[tuple[str, str]] = []  # (url, reason): not fetched, or body not written
        self.refused: list[tuple[str, str]] = []  # (url, reason): an HTTP error status under --fail
        self.written = 0  # bodies written to the output folder

    async def one(self, i: int, url: str) -> None:
        """Fetch the i-th URL and stream its body; the progress bar steps once."""
        async with self.limit:
            try:
                got = await self._get(url)
            except _CannotWrite as exc:
                self._failed(self.failures, url, str(exc))
                return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
                self.lines[i] = f"ERR  {'-':<{_STATUS_WIDTH}} {'-':>9}  {url}  ({reason})"
                self._failed(self.failures, url, reason)
                return
        self.lines[i] = f"{got.status:<4} {got.cache_status:<{_STATUS_WIDTH}} {got.size:>9}  {url}"
        if got.written:
            self.written += 1
        if self.options.fail and got.status >= 400:
            self._failed(self.refused, url, got.reason)
        else:
            self.progress.step(True)

    async def _get(self, url: str) -> _Got:
        folder = self.options.output
        async with self.session.get(url) as resp:
            refused = self.options.fail and resp.status >= 400  # its body is not written
            body = resp.content.iter_chunked(_CHUNK)
            write = folder is not None and not refused
            if folder is not None and not refused:
                size = await _save(body, folder / _output_name(url))
            else:
                size = await _count(body)
            reason = f"HTTP {resp.status} {resp.reason or ''}".rstrip()
            return _Got(resp.status, resp.cache_status, reason, size, write)

    def _failed(self, into: list[tuple[str, str]], url: str, reason: str) -> None:
        into.append((url, reason))
        self.progress.step(False)

    def report(self, stats: Stats, repeated: int) -> int:
        """Print the outcome and return the exit status."""
        if self.options.output is None:
            for line in self.lines:
                print(line)
        else:
            files = plural(self.written, "file")
            once = f" ({plural(repeated, 'repeated URL')} fetched once)" if repeated else ""
            print(f"wrote {files} to {self.options.output}{once}")
        print(f"{_outcomes(stats)}, {len(self.failures) + len(self.refused)} failed")
        for url, reason in self.failures + self.refused:
            print(f"failed: {url}: {reason}", file=sys.stderr)
        return 1 if self.failures else 22 if self.refused else 0


def _outcomes(stats: Stats) -> str:
    """The requests and where their answers came from (every outcome that happened: they add up
    to the requests), then what went upstream and what was stored."""
    hits, misses = plural(stats.hits, "hit"), plural(stats.misses, "miss", "misses")
    outcomes = [hits, f"{stats.coalesced} coalesced", misses]
    rarer = {"revalidated": stats.revalidated, "stale": stats.stale, "bypassed": stats.bypassed}
    outcomes += [f"{n} {name}" for name, n in rarer.items() if n]
    return (
        f"{plural(stats.requests, 'request')}: {', '.join(outcomes)}; "
        f"{stats.upstream} sent upstream, {stats.stored} stored"
    )


class _Progress:
    """A one-line progress bar on a terminal; silent otherwise. ``done`` counts every URL that
    ended, fetched or failed."""

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
