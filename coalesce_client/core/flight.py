"""Keyed single-flight for asyncio: concurrent calls with one key share one run of the work.

Rules of this module (the contract the rest of the package builds on):

* It imports nothing but the standard library; it knows no HTTP.
* The work runs in a task of its own. A caller only ever waits on a future of its own (its
  *waiter*), so cancelling or timing out one caller never touches the work or the other callers.
* The work is cancelled when its last waiter leaves before it finishes: nobody wants the result.
* Results and exceptions reach the waiters of that flight only; nothing is remembered afterwards.
  Caching is a separate layer (``coalescer.py``).
* A flight removes its map entry when it finishes only if the entry is still its own, so a flight
  that was ``forget()``-ed never removes the newer flight for its key (as Go's x/sync/singleflight).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

__all__ = ["Joined", "Outcome", "SingleFlight", "WaitTimeout"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Python 3.12 can start a task eagerly: work that finishes without suspending (a warm in-process
# cache, say) then costs no trip through the event loop.
_EAGER = sys.version_info >= (3, 12)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[V]):
    """What one caller of :meth:`SingleFlight.run` got.

    ``joined`` is False for the caller that started the flight (the leader) and True for a caller
    that joined a flight already in progress and so shared the leader's result.
    """

    value: V
    joined: bool


class _Call(Generic[V]):
    """One flight. Touched only from the thread of the event loop it runs on."""

    __slots__ = ("loop", "shared", "task", "waiters")

    task: asyncio.Future[None]  # the work; set once, right after the call is registered

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop  # a flight never crosses event loops
        # What its callers of ``wait`` derive from its value, once for all of them: set by the
        # first that needs it, never read here (the pipeline: its followers' share).
        self.shared: Any = None
        # Futures of the callers still waiting. Appended by run(); removed by _leave() when a caller
        # gives up (cancelled, timed out); drained by _work() when the work ends, which resolves
        # them directly so that a waiter wakes one loop iteration after the work returns.
        self.waiters: list[asyncio.Future[V]] = []


Joined = _Call
"""The flight a caller of ``SingleFlight.wait`` joined: what it hands back to ``leave``."""


class SingleFlight(Generic[K, V]):
    """Run an async callable once per key among concurrent callers.

    >>> import asyncio
    >>> flight: SingleFlight[str, int] = SingleFlight()
    >>> calls = 0
    >>> async def fetch() -> int:
    ...     global calls
    ...     calls += 1
    ...     await asyncio.sleep(0.01)
    ...     return 42
    >>> async def main() -> list[int]:
    ...     return await asyncio.gather(*(flight.do("answer", fetch) for _ in range(10)))
    >>> asyncio.run(main()), calls
    ([42, 42, 42, 42, 42, 42, 42, 42, 42, 42], 1)

    Raises:
        WaitTimeout: from ``do`` and ``run``, when this caller's ``timeout`` passes (the work
            goes on for the others).
        Exception: whatever ``fetch`` raises reaches every caller of that flight.
    """

    __slots__ = ("_calls", "_joined", "_started", "completed", "keys")

    def __init__(self) -> None:
        self._calls: dict[K, _Call[V]] = {}
        # The keys of the flights in progress, read-only: ``key in flight.keys`` costs no call.
        self.keys: Mapping[K, object] = MappingProxyType(self._calls)
        # Told, when a flight's work returns, how many callers besides one share its value (the
        # callers still waiting, less its leader): a metrics hook, or None.
        self.completed: Callable[[int], None] | None = None
        self._started = 0  # flights started (each ran the work once)
        self._joined = 0  # calls that joined a flight already in progress

    async def do(
        self, key: K, fetch: Callable[[], Awaitable[V]], *, timeout: float | None = None
    ) -> V:
        """Return ``await fetch()``, run at most once at a time per key among concurrent callers.

        ``timeout`` bounds how long this caller waits; past it, this caller gets
        :class:`asyncio.TimeoutError` and the flight goes on for the others.
        """
        # do() and run() repeat these few lines rather than one calling the other: an extra
        # coroutine frame per call is a measurable share of the whole overhead (BENCHMARKS.md).
        call, waiter, _ = self._enter(key, fetch)
        timer = None if timeout is None else call.loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            self._exit(key, call, waiter, timer)

    async def run(
        self, key: K, fetch: Callable[[], Awaitable[V]], *, timeout: float | None = None
    ) -> Outcome[V]:
        """Like :meth:`do`, but also say whether this caller joined another caller's flight."""
        call, waiter, joined = self._enter(key, fetch)
        timer = None if timeout is None else call.loop.call_later(timeout, _expire, waiter)
        try:
            return Outcome(await waiter, joined)
        finally:
            self._exit(key, call, waiter, timer)

    async def join(self, key: K, *, timeout: float | None = None) -> V:
        """Wait for the flight in progress for ``key``, as a caller of ``do`` that joins it
        would: for a caller that was just told ``joinable(key)`` (nothing awaited since).

        Its own waiter, its own ``timeout`` (:class:`WaitTimeout`), its leaving (cancelled,
        timed out) never touching the others: as ``do``. No work to hand over, no ``Outcome``
        to build: a burst's followers each call this (issue 20).
        """
        joined = self.wait(key)
        if joined is None:
            raise KeyError(key)  # not joinable: nothing to wait for
        call, waiter = joined
        timer = None if timeout is None else call.loop.call_later(timeout, _expire, waiter)
        try:
            value = await waiter
        except BaseException:
            self._exit(key, call, waiter, timer)
            raise
        if timer is not None:  # resolved by the work, which took it off its list of waiters
            timer.cancel()
        return value

    def wait(self, key: K) -> tuple[Joined[V], asyncio.Future[V]] | None:
        """``join`` without a coroutine of its own, for a caller that awaits the waiter in its
        own frame (a burst's followers, issue 20: each frame is paid twice per follower): its
        own waiter on the flight in progress for ``key``, and that flight, to hand to ``leave``
        if it stops waiting before the waiter is resolved. None: no flight to join on the
        running loop (``joinable``)."""
        call = self._calls.get(key)
        if call is None:
            return None
        loop = call.loop
        if loop is not asyncio.get_running_loop():
            self._drop_foreign(key, call)
            return None
        waiter: asyncio.Future[V] = loop.create_future()
        call.waiters.append(waiter)
        self._joined += 1
        return call, waiter

    def leave(self, key: K, call: Joined[V], waiter: asyncio.Future[V]) -> None:
        """A caller of ``wait`` stopped waiting (cancelled, or its waiter failed): as ``join``
        leaves, the last caller out cancelling the work."""
        self._exit(key, call, waiter, None)

    def joinable(self, key: K) -> bool:
        """Whether a flight for ``key`` is in progress on the running event loop, for a caller
        to ``join``. A flight left by a closed loop is dropped (as ``do`` drops it); one on
        another running loop raises ``RuntimeError``."""
        call = self._calls.get(key)
        if call is None:
            return False
        if call.loop is not asyncio.get_running_loop():
            self._drop_foreign(key, call)
            return False
        return True

    def _drop_foreign(self, key: K, call: _Call[V]) -> None:
        """A flight on another event loop than the running one: an error while that loop runs."""
        if not call.loop.is_closed():
            raise RuntimeError(
                f"SingleFlight: key {key!r} is in flight on another event loop; "
                "one SingleFlight serves one running event loop at a time"
            )
        # Left behind by a loop that was closed without finishing its tasks: nobody can ever
        # complete it, so it is dropped rather than waited on forever.
        del self._calls[key]

    def _enter(
        self, key: K, fetch: Callable[[], Awaitable[V]]
    ) -> tuple[_Call[V], asyncio.Future[V], bool]:
        """Join the flight for ``key`` (starting it if there is none); return our waiter."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[V] = loop.create_future()
        call = self._calls.get(key)
        if call is not None and call.loop is not loop:
            self._drop_foreign(key, call)
            call = None
        if call is None:
            call = _Call(loop)
            call.waiters.append(waiter)
            self._calls[key] = call
            self._started += 1
            call.task = _start(loop, self._work(key, call, fetch))
            return call, waiter, False
        call.waiters.append(waiter)
        self._joined += 1
        return call, waiter, True

    def _exit(
        self,
        key: K,
        call: _Call[V],
        waiter: asyncio.Future[V],
        timer: asyncio.TimerHandle | None,
    ) -> None:
        """A caller is done waiting, whichever way."""
        if timer is not None:
            timer.cancel()
        if call.waiters:  # possibly still listed: this caller left early
            self._leave(key, call, waiter)
        elif waiter.done() and not waiter.cancelled():
            # Resolved by the work just as this caller was cancelled: nobody will look at it.
            waiter.exception()

    def forget(self, key: K) -> None:
        """Make the next call for ``key`` start a new flight.

        A flight in progress still completes for the callers already waiting on it.
        """
        self._calls.pop(key, None)

    def __len__(self) -> int:
        """Flights in progress."""
        return len(self._calls)

    def __contains__(self, key: object) -> bool:
        return key in self._calls

    @property
    def started(self) -> int:
        """Flights started: how many times the work actually ran."""
        return self._started

    @property
    def joined(self) -> int:
        """Calls that joined a flight already in progress instead of starting one."""
        return self._joined

    def __repr__(self) -> str:
        return (
            f"<SingleFlight in_flight={len(self._calls)} "
            f"started={self._started} joined={self._joined}>"
        )

    async def _work(self, key: K, call: _Call[V], fetch: Callable[[], Awaitable[V]]) -> None:
        """The body of a flight's task: run ``fetch`` once, resolve every waiter with the outcome.

        Exceptions are handed to the waiters, never left on the task, so a flight that nobody waits
        on any more leaves no "exception was never retrieved" behind.
        """
        try:
            value = await fetch()
        except Exception as exc:
            self._release(key, call)
            for w in _taken(call):
                if not w.done():
                    w.set_exception(exc)
        except BaseException:  # cancelled (every caller left), or the process is going down
            self._release(key, call)
            for w in _taken(call):
                w.cancel()
            raise
        else:
            self._release(key, call)
            waiters = _taken(call)
            if self.completed is not None:
                self.completed(max(len(waiters) - 1, 0))
            for w in waiters:
                if not w.done():
                    w.set_result(value)

    def _release(self, key: K, call: _Call[V]) -> None:
        # Only our own entry: after forget(), the key may already belong to a newer flight.
        if self._calls.get(key) is call:
            del self._calls[key]

    def _leave(self, key: K, call: _Call[V], waiter: asyncio.Future[V]) -> None:
        """A caller stopped waiting before the work ended; the last one out cancels the work."""
        try:
            call.waiters.remove(waiter)
        except ValueError:
            return
        if not call.waiters and not call.task.done():
            if call.loop.is_closed():  # being garbage-collected after its loop was closed
                self._release(key, call)
                return
            # Free the key now, not when the cancelled task gets round to ending: a caller that
            # arrives in between must start a fresh flight, not join one that is being cancelled.
            self._release(key, call)
            call.task.cancel()


def _taken(call: _Call[V]) -> list[asyncio.Future[V]]:
    """The flight's waiters, taken off it as the work ends: a waiter resolved by the work is no
    longer listed, so that its caller has nothing left to undo (``join``)."""
    waiters = call.waiters
    call.waiters = []
    return waiters


def _start(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    if _EAGER:  # 3.12+: run up to the first suspension now, saving a trip through the loop
        return asyncio.Task(work, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(work)


class WaitTimeout(asyncio.TimeoutError):
    """Raised in a caller whose own ``timeout`` passed; the flight goes on for the others.

    A distinct type, so that a caller can tell its own wait running out from a timeout raised by
    the work itself (aiohttp's ``ServerTimeoutError`` is an ``asyncio.TimeoutError`` too).
    """


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(WaitTimeout("timed out waiting for the flight in progress"))
