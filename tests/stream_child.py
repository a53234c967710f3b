"""A separate process for tests/test_storage_streams.py: one DiskStorage and a streamed entry.

    python tests/stream_child.py write DIR KEY SIZE SEED   # store a streamed body; print its hash
    python tests/stream_child.py read DIR KEY              # read it back; print hash and length
    python tests/stream_child.py hang DIR KEY SIZE         # write SIZE bytes of a body, say so,
                                                           # then wait for more forever (killed)

Each mode prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from streams import Feed, pattern, read_all, sha, streamed

from coalesce_client.storage import DiskStorage


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def main(mode: str, directory: str, key: str, *rest: str) -> None:
    storage = DiskStorage(directory)
    try:
        if mode == "write":
            body = pattern(int(rest[0]), int(rest[1]))
            await storage.set(key, streamed(Feed.whole(body)), 600)
            emit(sha=sha(body), length=len(body))
        elif mode == "read":
            snap = await storage.get(key)
            assert snap is not None and snap.stream is not None, snap
            body = await read_all(snap)
            emit(sha=sha(body), length=len(body), bytes_read=storage.body_bytes_read)
        elif mode == "hang":
            feed = Feed()
            feed.give(pattern(int(rest[0])))
            writing = asyncio.ensure_future(storage.set(key, streamed(feed), 600))
            await feed.waiting.wait()  # every byte given is in the file: it waits for more
            emit(writing=not writing.done())
            await writing  # never ends: the test kills this process
    finally:
        await storage.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
