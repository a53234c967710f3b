"""The ``coalesce-client`` command: demo, fetch, and disk cache maintenance.

This module owns the command line: it builds the parser (one small builder per subcommand) and
hands each subcommand plain, checked values; the subcommands (``_demo``, ``_fetch``, ``_cache``)
know nothing of argparse. The command is built on the library's public names, never on the
coalescer's internals; it shares only the option checks of ``options.py``, so that a header name or
a number of seconds is judged as the library judges it, and runs the demo of ``demo.py``.

argparse from the standard library: three subcommands with a few options each need nothing more,
and the command stays free of runtime dependencies beyond the library's own. Bad input is one line
on stderr and exit status 2; a fetch that had failures exits 1, and one that met HTTP errors under
``--fail`` exits 22, as curl does. Storage is opened before the event loop starts, and nothing
blocking runs on the loop after that (maintenance is async, bodies are written in a thread).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .. import __version__
from ..options import check_header_name, is_seconds
from . import _cache, _demo, _fetch
from ._common import UsageError, unreachable

__all__ = ["main"]

DEFAULT_CACHE_DIR = ".cache/coalesce-client"

_Command = Literal["demo", "fetch", "cache"]

if TYPE_CHECKING:  # generic in typeshed only
    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args.command, args)
    except UsageError as exc:
        print(f"coalesce-client {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(command: _Command, args: argparse.Namespace) -> int:
    """Hand the parsed arguments to their subcommand; only this module knows ``args``' names."""
    if command == "demo":
        return _demo.run(
            requests=args.requests,
            urls=args.urls,
            concurrency=args.concurrency,
            delay=args.delay,
            cache_dir=args.cache_dir,
        )
    if command == "fetch":
        options = _fetch.FetchOptions(
            urls=tuple(args.urls),
            input=args.input,
            cache_dir=args.cache_dir,
            ttl=args.ttl,
            concurrency=args.concurrency,
            output=args.output,
            headers=tuple(args.header),
            timeout=args.timeout,
            fail=args.fail,
        )
        return _fetch.run(options)
    if command == "cache":
        return _cache.run(args.action, args.cache_dir)
    unreachable(command)  # argparse rejects unknown commands


# -- argument types: argparse reports their errors as usage errors, exit status 2 ------------------


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
        name = check_header_name(name.strip(), "--header")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}") from None
    if "\r" in value or "\n" in value:
        # A line break would end the header and start another (header injection): aiohttp
        # refuses it when it sends, so a stored URL would answer and another would not.
        raise argparse.ArgumentTypeError(f"the value of {name} holds a line break: {text!r}")
    return name, value.strip()


def _cache_dir(text: str) -> Path:
    if not text:  # Path("") is the current directory: never a cache by accident
        raise argparse.ArgumentTypeError("an empty path; give a directory")
    return Path(text)


# -- the parser -----------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coalesce-client",
        description="Stop cache stampedes in aiohttp programs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
    _add_fetch(sub)
    _add_cache(sub)
    return parser


def _add_demo(sub: _Subparsers) -> None:
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
        type=_cache_dir,
        default=None,
        metavar="DIR",
        help="keep the disk cache here (default: a temp dir)",
    )


def _add_fetch(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "fetch",
        help="fetch URLs concurrently through the coalescer and a persistent disk cache",
        description=(
            "Fetch URLs concurrently through CoalescingSession and a disk cache that survives "
            "runs: repeated URLs share one request, and a second run answers from disk. Bodies "
            f"are streamed: those up to {_fetch.KEPT_BODY // 2**20} MiB are kept in the cache, "
            "larger ones go straight to their file (-o) and are fetched again next time."
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
        type=_cache_dir,
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
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        help="seconds per request (30); 0 for none, as in aiohttp's ClientTimeout",
    )
    p.add_argument(
        "--fail",
        action="store_true",
        help="treat an HTTP status of 400 or more as a failure: its body is not written, and "
        "the exit status is 22 (as curl --fail)",
    )


def _add_cache(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "cache",
        help="inspect or clean a disk cache",
        description="Inspect or clean a disk cache written by DiskStorage.",
    )
    p.add_argument(
        "action",
        choices=_cache.ACTIONS,
        help="stats: size and age; list: one line per entry (these two only read: a read-only "
        "cache will do); clear: remove all; prune: remove what has expired",
    )
    p.add_argument(
        "--cache-dir",
        type=_cache_dir,
        default=Path(DEFAULT_CACHE_DIR),
        metavar="DIR",
        help="the disk cache (default: %(default)s, under the current directory)",
    )
