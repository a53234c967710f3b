"""The ``demo`` subcommand: run ``coalesce_client.cli.demo`` and print its table and a summary.

Rules: the disk cache lives in a temporary directory, removed afterwards, unless a directory is
given (then a second run starts warm). The cache is opened before the event loop starts. The demo
needs no network: its origin is local. Exit status 0; bad input is refused by the parser.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from . import demo
from ._common import open_disk


def run(
    *, requests: int, urls: int, concurrency: int | None, delay: float, cache_dir: Path | None
) -> int:
    started = time.perf_counter()

    def bursts(directory: Path) -> list[demo.Row]:
        storage = open_disk(directory)
        return asyncio.run(
            demo.run(
                requests=requests,
                urls=urls,
                delay=delay,
                concurrency=concurrency,
                storage=storage,
            )
        )

    if cache_dir is not None:
        rows = bursts(cache_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="coalesce-demo-") as tmp:
            rows = bursts(Path(tmp))
    print(demo.format_table(rows))
    plain, cold = rows[0], rows[1]
    print(
        f"\n{plain.requests} concurrent requests over {urls} URLs: plain aiohttp sent "
        f"{plain.upstream} to the origin, coalesce_client sent {cold.upstream}; "
        f"the warm run answered from the disk cache."
    )
    print(f"done in {time.perf_counter() - started:.2f} s")
    return 0
