"""The fleet's flight: one upstream call per key among every process sharing one storage.

Rules of this module (framework-free core; issue 14):

* It runs inside a process's local flight: only the local leader of a key comes here, so a burst
  of a hundred callers in one process costs a handful of commands to the shared store, not a
  hundred. It speaks to the store only through ``SharesFlights`` (storage/base.py), found on the
  storage itself or on the storage it ``Fronts``: never by knowing a concrete storage.
* The local leader takes the key's lease (a random token). Holding it, it reads storage once more
  (another process may have stored the response between our lookup and the lease), then runs
  ``lead`` (the real request, stored by the coalescer) and answers its own callers; in the
  background it waits for the storage writes it started, then releases the lease publishing
  "stored" (the store publishes "released" instead if the entry is not there: a store lost to a
  failover is taken over by one waiter, not sent by every process). Its lease is
  renewed every ``lease_ttl / 3`` while the request runs; a renewal that finds the token gone
  stops renewing, and the release then touches no one else's lease (one script).
* A local leader that finds the lease taken registers its watch first, then reads storage and
  the lease again (a publication sent before the watch was registered is then seen in storage,
  or as the lease gone: no lost wake-up), then waits for the publication, re-checking at least
  every ``lease_ttl / 2`` (a lost publication, a pub/sub connection down). "stored": the entry is
  read (if it is not there after all, take the lease again); "not stored": this process sends its
  own request, without the lease (a 503 storm costs at most one call per process); "released"
  (a holder gone without an outcome) or a re-check that finds no lease: take the lease again, so
  a dead holder's key is taken over by one waiter once its lease expires.
* ``wait_timeout`` bounds the wait on other processes from the moment this leader starts it; past
  it the process sends its own request, which is not stored.
* The shared store is an optimisation: any failure of it (unreachable, slow, an error) ends the
  fleet's part for this flight and the leader sends its own request as if alone. A storage that
  rests after a failure (``RedisStorage``) answers the next flights at once, locally. Except for
  a leader that has seen the lease held (issue 23: a failover takes a second or two): it keeps
  waiting for that holder, trying the store again every ``lease_ttl / 2``, until ``lease_ttl``
  has passed since it last saw the lease held (or ``wait_timeout``), and only then goes alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Generic, Literal, TypeVar

from ..metrics.base import Recorder
from ..storage.base import Fronts, SharesFlights, Storage

__all__ = ["Fleet", "Source", "leases_of"]

log = logging.getLogger("coalesce_client")

R = TypeVar("R")
T = TypeVar("T")

Source = Literal["led", "remote", "alone"]
"""How a leader got its result: it held the lease and sent; another process's flight stored it;
it sent without the lease (another's outcome was not stored, a timeout, the store unreachable)."""

STORED = b"stored"
NOT_STORED = b"not stored"
RELEASED = b"released"


def leases_of(storage: Storage) -> SharesFlights | None:
    """The storage that shares flights behind ``storage``: itself, or the one it fronts (a
    ``TieredStorage``'s back), found once, when a coalescer is built."""
    if isinstance(storage, SharesFlights):
        return storage
    if isinstance(storage, Fronts):
        return leases_of(storage.back)
    return None


class _Unreachable(Exception):
    """The shared store failed during the fleet's part of a flight."""


class _Seen:
    """When a waiting leader last saw another's lease held (module rules)."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: float | None = None

    def patience(self, now: float, lease_ttl: float, deadline: float | None) -> float | None:
        """Seconds to wait before trying the store again, or None: go alone now."""
        if self.at is None:
            return None
        left = self.at + lease_ttl - now
        if deadline is not None:
            left = min(left, deadline - now)
        return min(lease_ttl / 2, left) if left > 0 else None


class Fleet(Generic[R]):
    """The flight across processes, for one coalescer (see the module rules)."""

    __slots__ = ("_releases", "leases", "recorder", "taken_over", "wait_timeout", "waiting")

    def __init__(self, leases: SharesFlights, wait_timeout: float | None) -> None:
        self.leases = leases
        self.wait_timeout = wait_timeout  # seconds a leader waits on other processes, or None
        self.waiting = 0  # leaders waiting on another process's flight now
        self.taken_over = 0  # leases taken after a wait (a holder gone, an entry not there)
        self.recorder: Recorder | None = None  # the face's metrics, or None
        self._releases: set[asyncio.Future[None]] = set()  # releases still being sent

    def __repr__(self) -> str:
        return f"<Fleet waiting={self.waiting} taken_over={self.taken_over} leases={self.leases!r}>"

    async def run(
        self,
        key: str,
        lead: Callable[[bool], Awaitable[tuple[R, bool]]],
        read: Callable[[], Awaitable[R | None]],
        settle: Callable[[], Awaitable[None]],
    ) -> tuple[R, Source]:
        """The result of the flight of ``key`` and where it came from.

        ``lead(store)`` sends the real request (and stores what the policy allows when ``store``)
        and says whether it stored a fresh entry;
        ``read()`` is what storage holds for the key now, or None; ``settle()`` waits for the
        storage writes this process has started.
        """
        loop = asyncio.get_running_loop()
        deadline = None if self.wait_timeout is None else loop.time() + self.wait_timeout
        token = secrets.token_hex(16)
        seen = _Seen()
        while True:
            try:
                decided = await self._decide(key, token, read, deadline, seen)
                break
            except _Unreachable:
                pause = seen.patience(loop.time(), self.leases.lease_ttl, deadline)
                if pause is None:
                    return (await lead(True))[0], "alone"
                await asyncio.sleep(pause)  # the store again, while its holder may still answer
        if decided == "hold":
            return await self._hold(key, token, lead, settle), "led"
        if isinstance(decided, str):  # "not stored" elsewhere, or waited past wait_timeout
            return (await lead(decided == "own"))[0], "alone"
        return decided[0], "remote"

    async def _decide(
        self,
        key: str,
        token: str,
        read: Callable[[], Awaitable[R | None]],
        deadline: float | None,
        seen: _Seen,
    ) -> Literal["hold", "own", "timeout"] | tuple[R]:
        """Take the lease ("hold"), or wait for another process's outcome: its stored result,
        "own" (send without the lease, store allowed) or "timeout" (send, store nothing)."""
        leases = self.leases
        loop = asyncio.get_running_loop()
        waited = False
        while True:
            if await _store_op(leases.acquire(key, token)):
                found = await read()  # stored meanwhile by a flight that just ended?
                if found is None:
                    if waited:
                        self.taken_over += 1
                        if self.recorder is not None:
                            self.recorder.takeover()
                    return "hold"
                with contextlib.suppress(_Unreachable):  # else the lease expires by itself
                    await _store_op(leases.release(key, token, STORED))
                return (found,)
            waiter = await _store_op(leases.watch(key))
            self.waiting += 1
            if self.recorder is not None:
                self.recorder.lease_wait()
            try:
                found = await read()
                if found is not None:
                    return (found,)
                if not await _store_op(leases.leased(key)):
                    continue  # released before our watch: take it
                seen.at = loop.time()
                timeout = leases.lease_ttl / 2
                if deadline is not None:
                    timeout = min(timeout, deadline - loop.time())
                    if timeout <= 0:
                        return "timeout"
                waited = True
                done, _ = await asyncio.wait((waiter,), timeout=timeout)
                outcome = waiter.result() if done else None
            finally:
                self.waiting -= 1
                leases.unwatch(key, waiter)
                if not waiter.done():
                    waiter.cancel()
            if outcome == NOT_STORED:
                return "own"
            if outcome != RELEASED:  # "stored", or a re-check: is it there?
                found = await read()
                if found is not None:
                    return (found,)
            if deadline is not None and loop.time() >= deadline:
                return "timeout"
            # No entry: the holder died (its lease expires), or released without one. Try again.

    async def _hold(
        self,
        key: str,
        token: str,
        lead: Callable[[bool], Awaitable[tuple[R, bool]]],
        settle: Callable[[], Awaitable[None]],
    ) -> R:
        renewing = asyncio.ensure_future(self._renew(key, token))
        outcome = RELEASED  # cancelled: another process takes the lease at once
        try:
            result, stored = await lead(True)
            # "stored": once our writes end, if it is there (the store checks); not for a stale
            # or uncacheable answer, which the others would find useless.
            outcome = STORED if stored else NOT_STORED
            return result
        except Exception:
            outcome = NOT_STORED  # an error reaches our callers; the others send their own
            raise
        finally:
            renewing.cancel()
            # In the background: our callers need not wait for it.
            release = asyncio.ensure_future(
                self._release(key, token, outcome, settle if outcome == STORED else None)
            )
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)

    async def _renew(self, key: str, token: str) -> None:
        leases = self.leases
        while True:
            await asyncio.sleep(leases.lease_ttl / 3)
            try:
                mine = await leases.renew(key, token)
            except Exception as exc:
                log.debug("renewing the lease of %s failed: %r", key, exc)
                continue
            if not mine:
                log.warning(
                    "the lease of %s expired while its request ran (longer than lease_ttl=%s "
                    "without a renewal); another process may send the same request",
                    key,
                    leases.lease_ttl,
                )
                return

    async def _release(
        self,
        key: str,
        token: str,
        outcome: bytes,
        settle: Callable[[], Awaitable[None]] | None,
    ) -> None:
        if settle is not None:
            await settle()
        try:
            await self.leases.release(key, token, outcome)
        except Exception as exc:  # the lease expires by itself; waiters re-check
            log.debug("releasing the lease of %s failed: %r", key, exc)

    async def drain(self) -> None:
        """Wait for the releases still being sent (before closing the storage)."""
        while self._releases:
            running = tuple(self._releases)
            await asyncio.gather(*running, return_exceptions=True)
            # Python 3.12+: gather() of futures all done returns without yielding to the loop, so
            # the done callbacks that discard them have not run yet: drop them here, or spin.
            self._releases.difference_update(running)


async def _store_op(work: Awaitable[T]) -> T:
    """One call to the shared store: any failure of it becomes ``_Unreachable``."""
    try:
        return await work
    except Exception as exc:
        log.debug("the shared store failed (%r); this flight goes on locally", exc)
        raise _Unreachable from exc
