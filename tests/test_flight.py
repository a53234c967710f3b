"""SingleFlight: one run of the work per key among concurrent callers (issue 2)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest
from conftest import LoopClock, finished, signalled, until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coalesce_client import Outcome, SingleFlight, WaitTimeout


class Gate:
    """A fetch whose completion the test controls, counting how often it actually ran."""

    def __init__(self, value: Any = "v") -> None:
        self.value = value
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = 0
        self.error: BaseException | None = None

    async def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture
def loop_errors() -> list[dict[str, Any]]:
    """Everything the running loop's exception handler receives ('never retrieved', ...)."""
    return []


def catch_loop_errors(errors: list[dict[str, Any]]) -> None:
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))


async def test_concurrent_calls_with_one_key_run_fetch_once() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate("value")
    tasks = [asyncio.create_task(flight.do("k", gate)) for _ in range(100)]
    await signalled(gate.started, "the work started")
    assert "k" in flight and len(flight) == 1
    gate.release.set()
    assert await asyncio.gather(*tasks) == ["value"] * 100
    assert gate.calls == 1
    assert (flight.started, flight.joined) == (1, 99)


async def test_run_tells_the_leader_from_the_callers_that_joined() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = Gate(7)
    tasks = [asyncio.create_task(flight.run("k", gate)) for _ in range(5)]
    await signalled(gate.started, "the work started")
    gate.release.set()
    outcomes = await asyncio.gather(*tasks)
    assert outcomes[0] == Outcome(7, joined=False)
    assert outcomes[1:] == [Outcome(7, joined=True)] * 4


async def test_different_keys_run_independently_and_concurrently() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gates = {k: Gate(k) for k in "abc"}
    tasks = {k: asyncio.create_task(flight.do(k, g)) for k, g in gates.items()}
    # All three are in flight at the same time: none waits for another to finish.
    for g in gates.values():
        await signalled(g.started, "the work started")
    assert len(flight) == 3
    gates["b"].release.set()
    assert await tasks["b"] == "b"
    assert not tasks["a"].done() and not tasks["c"].done()
    gates["a"].release.set()
    gates["c"].release.set()
    assert [await tasks["a"], await tasks["c"]] == ["a", "c"]
    assert [g.calls for g in gates.values()] == [1, 1, 1]


async def test_entry_lives_only_while_in_flight() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return calls

    assert await flight.do("k", fetch) == 1
    assert "k" not in flight and len(flight) == 0
    assert await flight.do("k", fetch) == 2
    assert calls == 2


async def test_exception_reaches_every_caller_and_is_not_remembered(
    loop_errors: list[dict[str, Any]],
) -> None:
    catch_loop_errors(loop_errors)
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    gate.error = ValueError("boom")
    tasks = [asyncio.create_task(flight.do("k", gate)) for _ in range(10)]
    await signalled(gate.started, "the work started")
    gate.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ValueError) and str(r) == "boom" for r in results)
    assert "k" not in flight

    gate2 = Gate("fine")
    gate2.release.set()
    assert await flight.do("k", gate2) == "fine"  # the failure was not remembered
    del tasks, results
    gc.collect()  # a future never retrieved reports it when collected, at once
    assert loop_errors == []


async def test_exception_of_a_flight_nobody_waits_for_leaves_no_warning(
    loop_errors: list[dict[str, Any]],
) -> None:
    catch_loop_errors(loop_errors)
    flight: SingleFlight[str, str] = SingleFlight()
    started = asyncio.Event()

    async def fail_while_cancelled() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("failed during cancellation")

    task = asyncio.create_task(flight.do("k", fail_while_cancelled))
    await signalled(started, "the work started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    work = asyncio.all_tasks() - {asyncio.current_task()}
    await asyncio.gather(*work, return_exceptions=True)
    gc.collect()
    assert loop_errors == []
    assert len(flight) == 0


async def test_cancelling_the_first_caller_cancels_neither_fetch_nor_the_others() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate("shared")
    first = asyncio.create_task(flight.do("k", gate))
    await signalled(gate.started, "the work started")
    others = [asyncio.create_task(flight.do("k", gate)) for _ in range(3)]
    await until(lambda: flight.joined == 3, "the others joined before the leader leaves")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert gate.cancelled == 0
    gate.release.set()
    assert await asyncio.gather(*others) == ["shared"] * 3
    assert gate.calls == 1


async def test_when_every_caller_is_cancelled_fetch_is_cancelled_and_the_key_freed() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    tasks = [asyncio.create_task(flight.do("k", gate)) for _ in range(3)]
    await signalled(gate.started, "the work started")
    for t in tasks[:2]:
        t.cancel()
    await asyncio.gather(*tasks[:2], return_exceptions=True)
    assert gate.cancelled == 0 and "k" in flight  # one caller still wants it
    tasks[2].cancel()
    await asyncio.gather(tasks[2], return_exceptions=True)
    assert "k" not in flight  # freed at once, before the cancelled work has even ended
    fresh = Gate("new")
    fresh.release.set()
    assert await flight.do("k", fresh) == "new"
    assert gate.cancelled == 1


async def test_a_caller_arriving_while_the_work_is_cancelled_starts_a_fresh_flight() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    started, stopping, slow_to_stop = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopping.set()
            await slow_to_stop.wait()  # takes its time to clean up
            raise
        return "never"

    first = asyncio.create_task(flight.do("k", stubborn))
    await signalled(started, "the work started")
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await signalled(stopping, "the work cleaning up after its cancellation")
    gate = Gate("fresh")
    gate.release.set()
    assert await flight.do("k", gate) == "fresh"
    assert gate.calls == 1 and not slow_to_stop.is_set()  # a flight of its own, not the old one
    slow_to_stop.set()


async def test_wait_timeout_raises_in_that_caller_only(loop_clock: LoopClock) -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate("late")
    patient = asyncio.create_task(flight.do("k", gate))
    await signalled(gate.started, "the work started")
    impatient = asyncio.create_task(flight.do("k", gate, timeout=10))
    await loop_clock.scheduled(10, "the impatient caller's timer")
    loop_clock.advance(10)
    with pytest.raises(WaitTimeout):
        await finished(impatient, "the impatient caller gave up")
    assert "k" in flight and gate.cancelled == 0
    gate.release.set()
    assert await patient == "late"
    assert gate.calls == 1


async def test_timeout_of_the_only_caller_cancels_the_work(loop_clock: LoopClock) -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    caller = asyncio.create_task(flight.do("k", gate, timeout=10))
    await signalled(gate.started, "the work started")
    loop_clock.advance(10)
    with pytest.raises(WaitTimeout):
        await finished(caller, "the caller gave up")
    assert "k" not in flight  # freed at once
    await until(lambda: gate.cancelled == 1, "the work was cancelled")


async def test_forget_starts_a_new_flight_and_the_old_one_never_removes_it() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    old, new = Gate("old"), Gate("new")
    old_caller = asyncio.create_task(flight.do("k", old))
    await signalled(old.started, "the work started")
    flight.forget("k")
    assert "k" not in flight
    new_caller = asyncio.create_task(flight.do("k", new))
    await signalled(new.started, "the work started")
    old.release.set()
    assert await old_caller == "old"
    assert "k" in flight  # the old flight's completion left the new entry alone
    joiner = asyncio.create_task(flight.do("k", Gate("unused")))
    await until(lambda: flight.joined == 1, "a caller joined the new flight")
    new.release.set()
    assert await asyncio.gather(new_caller, joiner) == ["new", "new"]
    assert (old.calls, new.calls) == (1, 1)
    assert len(flight) == 0


async def test_counters_and_repr_show_live_state() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    tasks = [asyncio.create_task(flight.do("k", gate)) for _ in range(4)]
    await until(lambda: flight.joined == 3, "three callers joined")
    assert repr(flight) == "<SingleFlight in_flight=1 started=1 joined=3>"
    gate.release.set()
    await asyncio.gather(*tasks)
    assert repr(flight) == "<SingleFlight in_flight=0 started=1 joined=3>"


async def test_work_that_never_suspends_still_counts_as_a_flight() -> None:
    flight: SingleFlight[str, int] = SingleFlight()

    async def instant() -> int:
        return 5

    assert await flight.run("k", instant) == Outcome(5, joined=False)
    assert flight.started == 1 and len(flight) == 0


def test_one_singleflight_serves_two_event_loops_in_turn() -> None:
    flight: SingleFlight[str, str] = SingleFlight()

    async def use() -> list[str]:
        gate = Gate("ok")
        tasks = [asyncio.create_task(flight.do("k", gate)) for _ in range(3)]
        await signalled(gate.started, "the work started")
        gate.release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(use()) == ["ok"] * 3
    assert asyncio.run(use()) == ["ok"] * 3
    assert flight.started == 2


def test_a_flight_left_on_a_closed_loop_is_dropped_not_waited_on() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    loop = asyncio.new_event_loop()
    gate = Gate()
    task = loop.create_task(flight.do("k", gate))
    loop.run_until_complete(gate.started.wait())
    assert "k" in flight
    loop.close()  # closed with the flight still pending, never finished
    del task

    async def again() -> str:
        gate = Gate("fresh")
        gate.release.set()
        return await flight.do("k", gate)

    assert asyncio.run(again()) == "fresh"


def test_a_flight_in_progress_on_another_running_loop_is_a_clear_error() -> None:
    import threading

    flight: SingleFlight[str, str] = SingleFlight()
    in_flight = threading.Event()
    done = threading.Event()

    async def hold() -> str:
        in_flight.set()
        await asyncio.to_thread(done.wait)  # a threading.Event, set by the main thread
        return "held"

    thread = threading.Thread(target=lambda: asyncio.run(flight.do("k", hold)))
    thread.start()
    try:
        assert in_flight.wait(5)

        async def other_loop() -> str:
            return await flight.do("k", hold)

        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(other_loop())
    finally:
        done.set()
        thread.join(5)


# --- property test: no stuck keys, whatever the interleaving ------------------------------------
#
# Random schedules of calls (with no timeout, one of 0 s, or one that expires a few loop turns
# later), cancellations, fetches finishing with a value or an error, forgets and loop turns. Each
# example runs on one event loop kept for the whole test, whose clock is the test's: it moves a
# tick per loop turn of a "step", so a timeout expires at the same point of the schedule on every
# run. The old objects are frozen out of the collector (gc.freeze), so that the collection each
# example needs (a future never retrieved reports it only when collected) scans that example's
# objects alone.

KEYS = ("a", "b", "c")
TICK = 0.0002  # seconds the loop's clock moves per loop turn of a "step"

op = st.one_of(
    st.tuples(st.just("call"), st.sampled_from(KEYS), st.sampled_from([None, 0.0, 0.0005])),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("finish"), st.sampled_from(KEYS), st.sampled_from(["value", "error"])),
    st.tuples(st.just("forget"), st.sampled_from(KEYS)),
    st.tuples(st.just("step"), st.integers(1, 3)),
)


class Ticks:
    """A loop clock that moves only when told: ``loop.time`` for the property test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _scenario(ops: list[tuple[Any, ...]], ticks: Ticks) -> None:
    loop_errors: list[dict[str, Any]] = []
    catch_loop_errors(loop_errors)
    flight: SingleFlight[str, str] = SingleFlight()
    running: dict[str, list[asyncio.Future[str]]] = {k: [] for k in KEYS}  # fetches in progress
    produced: set[str] = set()
    fetch_calls = 0
    callers: list[asyncio.Task[str]] = []

    def make_fetch(key: str) -> Callable[[], Any]:
        async def fetch() -> str:
            nonlocal fetch_calls
            fetch_calls += 1
            control: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            running[key].append(control)
            try:
                return await control
            finally:
                running[key].remove(control)

        return fetch

    serial = 0
    for o in ops:
        if o[0] == "call":
            callers.append(asyncio.create_task(flight.do(o[1], make_fetch(o[1]), timeout=o[2])))
        elif o[0] == "cancel" and callers:
            callers[o[1] % len(callers)].cancel()
        elif o[0] == "finish" and any(not c.done() for c in running[o[1]]):
            control = next(c for c in running[o[1]] if not c.done())
            serial += 1
            if o[2] == "value":
                produced.add(f"v{serial}")
                control.set_result(f"v{serial}")
            else:
                control.set_exception(LookupError(f"e{serial}"))
        elif o[0] == "forget":
            flight.forget(o[1])
        elif o[0] == "step":
            for _ in range(o[1]):
                ticks.now += TICK
                await asyncio.sleep(0)

    # Wind down: let every flight still running finish, then wait for every caller. Each turn
    # either finishes something or lets a task reach its next step; a key still stuck after many
    # turns is the bug this test looks for.
    for _ in range(1000):
        if not any(running.values()) and all(c.done() for c in callers):
            break
        for controls in running.values():
            for c in controls:
                if not c.done():
                    c.set_result("final")
        await asyncio.sleep(0)
    else:
        raise AssertionError(f"callers still waiting: {flight!r}, {running!r}")
    results = await asyncio.gather(*callers, return_exceptions=True)

    assert len(flight) == 0, flight
    assert fetch_calls == flight.started
    # A caller cancelled before it first ran never reached the flight, so it is in neither count.
    assert flight.started + flight.joined <= len(callers)
    for r in results:
        assert isinstance(r, (str, LookupError, asyncio.CancelledError, asyncio.TimeoutError)), r
        if isinstance(r, str):
            assert r in produced or r == "final"
    await until(tasks_done, "the flights' own tasks finished")
    gc.collect()
    assert loop_errors == []


def tasks_done() -> bool:
    return all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task())


def cancel_what_is_left(loop: asyncio.AbstractEventLoop) -> None:
    """After a failed example: cancel its tasks (as asyncio.run does), so the next starts clean."""
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))


def test_no_stuck_keys_after_any_interleaving() -> None:
    loop = asyncio.new_event_loop()
    ticks = Ticks()
    loop.time = ticks  # type: ignore[method-assign]
    gc.freeze()
    try:

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(op, max_size=40))
        def any_schedule(ops: list[tuple[Any, ...]]) -> None:
            try:
                loop.run_until_complete(_scenario(ops, ticks))
            finally:
                cancel_what_is_left(loop)

        any_schedule()
    finally:
        gc.unfreeze()
        loop.close()
