"""RedisStorage: stored records in Redis (or Valkey), shared by a fleet of processes and hosts.

Rules of this package (the ``[redis]`` extra, redis-py's asyncio client; issue 14): one job per
module, each stating its own rules at its top. ``storage.py`` is the storage (reads, writes, the
lease's commands; the only public class), ``link.py`` its clients and the backoff while Redis is
unreachable, ``events.py`` its one pub/sub connection, ``layout.py`` what it keeps in Redis and
says on it (names, values, outcomes, the Lua scripts). redis-py is imported when a
``RedisStorage`` is built, never when this package is: ``coalesce_client`` imports without the
extra.
"""

from __future__ import annotations

from .link import RedisUnavailableError
from .storage import RedisStorage

__all__ = ["RedisStorage", "RedisUnavailableError"]
