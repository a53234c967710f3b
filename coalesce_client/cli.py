"""The ``coalesce-client`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from . import demo

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
            "plain aiohttp and then through coalesce_client, and print what each cost."
        ),
    )
    p.add_argument("-n", "--requests", type=_positive_int, default=500, help="requests per burst")
    p.add_argument("-u", "--urls", type=_positive_int, default=5, help="distinct URLs")
    p.add_argument(
        "--delay", type=float, default=0.05, help="origin response time in seconds (0.05)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "demo":
        started = time.perf_counter()
        rows = asyncio.run(demo.run(requests=args.requests, urls=args.urls, delay=args.delay))
        print(demo.format_table(rows))
        print(f"\ndone in {time.perf_counter() - started:.2f} s")
        return 0
    raise AssertionError(args.command)  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
