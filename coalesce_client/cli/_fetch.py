"""The ``fetch`` subcommand: URLs fetched concurrently through CoalescingSession and a disk cache.

Rules:

- Bad input (no URLs, a URL that is not http or https, an unreadable ``-i`` file, an output folder
  or cache directory that cannot be used) is found before the event loop starts, as UsageError.
- Results are reported in the order the URLs were given, whatever order they finished in: one line
  per URL on stdout (or, with ``-o``, one line for the files written), then the session's stats,
  then each failure on stderr. A progress bar is drawn on stderr only when it is a terminal.
- With ``-o``, one file per distinct URL: a URL given more than once is fetched and written once.
- Exit status: 0 when every URL was fetched, whatever its HTTP status (as with curl); 1 when a URL
  could not be fetched or its body written; 22 under ``--fail`` when a URL answered with a status
  of 400 or more (and none failed otherwise).
- Nothing blocking runs on the loop: the cache is opened before it starts, bodies are written in a
  thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import aiohttp
from yarl import URL

from .. import CoalescingSession
from ._common import UsageError, open_disk

if TYPE_CHECKING:
    from .. import DiskStorage, Stats


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
    timeout: float  # seconds per request; 0 for none
    fail: bool  # an HTTP status of 400 or more is a failure, as with curl --fail


def run(options: FetchOptions) -> int:
    urls = _read_urls(options.urls, options.input)
    _make_output_folder(options.output)
    return asyncio.run(_fetch(options, urls, open_disk(options.cache_dir)))


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
        try:
            parsed = URL(u)
        except ValueError:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise UsageError(f"invalid URL: {u!r} (expected http:// or https://)")
    return urls


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


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


async def _fetch(options: FetchOptions, urls: list[str], storage: DiskStorage) -> int:
    repeated = 0
    if options.output is not None:
        # One file per URL: a URL given more than once is fetched and written once.
        distinct = list(dict.fromkeys(urls))
        repeated, urls = len(urls) - len(distinct), distinct
    timeout = aiohttp.ClientTimeout(total=options.timeout or None)
    # A list of pairs, not a dict: a header given twice is sent twice, as curl sends it.
    async with CoalescingSession(
        ttl=options.ttl, storage=storage, headers=list(options.headers), timeout=timeout
    ) as session:
        batch = _Batch(session, options, len(urls))
        await asyncio.gather(*(batch.one(i, u) for i, u in enumerate(urls)))
        batch.progress.finish()
        stats = session.stats
    return batch.report(stats, repeated)


class _Batch:
    """One run's URLs in flight, and what became of each; only ``one`` and its helpers write."""

    def __init__(self, session: CoalescingSession, options: FetchOptions, total: int) -> None:
        self.session = session
        self.options = options
        self.limit = asyncio.Semaphore(options.concurrency)
        self.progress = _Progress(total, sys.stderr)
        self.lines = [""] * total  # one per URL, in the order given
        self.failures: list[tuple[str, str]] = []  # (url, reason): not fetched, or body not written
        self.refused: list[tuple[str, str]] = []  # (url, reason): an HTTP error status under --fail
        self.written = 0  # bodies written to the output folder

    async def one(self, i: int, url: str) -> None:
        """Fetch the i-th URL, then keep or write its body; the progress bar steps once."""
        async with self.limit:
            try:
                async with self.session.get(url) as resp:
                    body = await resp.read()
                    status, cache_status = resp.status, resp.cache_status
                    reason = f"HTTP {status} {resp.reason or ''}".rstrip()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
                self.lines[i] = f"ERR  {'-':<9} {'-':>9}  {url}  ({reason})"
                self._failed(self.failures, url, reason)
                return
        self.lines[i] = f"{status:<4} {cache_status:<9} {len(body):>9}  {url}"
        if self.options.fail and status >= 400:
            self._failed(self.refused, url, reason)
        elif self.options.output is not None:
            await self._write(self.options.output, url, body)
        else:
            self.progress.step(True)

    async def _write(self, folder: Path, url: str, body: bytes) -> None:
        path = folder / _output_name(url)
        try:
            await asyncio.to_thread(path.write_bytes, body)
        except OSError as exc:
            self._failed(self.failures, url, f"cannot write {path}: {exc.strerror or exc}")
            return
        self.written += 1
        self.progress.step(True)

    def _failed(self, into: list[tuple[str, str]], url: str, reason: str) -> None:
        into.append((url, reason))
        self.progress.step(False)

    def report(self, stats: Stats, repeated: int) -> int:
        """Print the outcome and return the exit status."""
        if self.options.output is None:
            for line in self.lines:
                print(line)
        else:
            files = _plural(self.written, "file")
            once = f" ({_plural(repeated, 'repeated URL')} fetched once)" if repeated else ""
            print(f"wrote {files} to {self.options.output}{once}")
        print(
            f"{stats.requests} requests: {stats.hits} hits, {stats.coalesced} coalesced, "
            f"{stats.misses} misses; {stats.upstream} sent upstream, {stats.stored} stored, "
            f"{len(self.failures) + len(self.refused)} failed"
        )
        for url, reason in self.failures + self.refused:
            print(f"failed: {url}: {reason}", file=sys.stderr)
        return 1 if self.failures else 22 if self.refused else 0


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
