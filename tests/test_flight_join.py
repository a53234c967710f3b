"""SingleFlight.join: a caller that finds a flight in progress waits on it as a joining caller of
``do`` would (issue 20: a burst's followers build nothing for a work they never run)."""

from __future__ import annotations

import asyncio
import gc

import pytest
from conftest import finished, signalled, until
from test_flight import Gate

from coalesce_client import SingleFlight, WaitTimeout


async def _started(flight: SingleFlight[str, str], gate: Gate) -> asyncio.Task[str]:
    leader = asyncio.create_task(flight.do("k", gate))
    await signalled(gate.started, "the work started")
    return leader


async def test_joiners_share_the_leaders_value_and_the_work_runs_once() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate("v")
    leader = await _started(flight, gate)
    assert flight.joinable("k") and not flight.joinable("other")
    joiners = [asyncio.create_task(flight.join("k")) for _ in range(3)]
    await until(lambda: flight.joined == 3, "the joiners joined")
    gate.release.set()
    assert await finished(asyncio.gather(leader, *joiners), "the flight") == ["v"] * 4
    assert gate.calls == 1 and len(flight) == 0 and not flight.joinable("k")


async def test_a_joiner_cancelled_leaves_the_others_waiting() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate("v")
    leader = await _started(flight, gate)
    gone, stays = (asyncio.create_task(flight.join("k")) for _ in range(2))
    await until(lambda: flight.joined == 2, "both joined")
    gone.cancel()
    await until(gone.done, "the cancelled joiner left")
    gate.release.set()
    assert await finished(asyncio.gather(leader, stays), "the others") == ["v", "v"]
    assert gone.cancelled() and gate.cancelled == 0


async def test_a_joiners_own_timeout_ends_its_wait_only() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate("v")
    leader = await _started(flight, gate)
    with pytest.raises(WaitTimeout):
        await flight.join("k", timeout=0.001)
    assert not leader.done()
    gate.release.set()
    assert await finished(leader, "the leader") == "v"
    assert gate.cancelled == 0


async def test_the_last_caller_to_leave_cancels_the_work_joiners_included() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate("v")
    leader = await _started(flight, gate)
    joiner = asyncio.create_task(flight.join("k"))
    await until(lambda: flight.joined == 1, "joined")
    leader.cancel()
    await until(leader.done, "the leader left")
    assert gate.cancelled == 0 and flight.joinable("k")  # the joiner still wants it
    joiner.cancel()
    await until(lambda: gate.cancelled == 1, "the work was cancelled")
    assert not flight.joinable("k")


async def test_an_error_of_the_work_reaches_every_joiner() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate("v")
    gate.error = ValueError("origin down")
    leader = await _started(flight, gate)
    joiner = asyncio.create_task(flight.join("k"))
    await until(lambda: flight.joined == 1, "joined")
    gate.release.set()
    for task in (leader, joiner):
        with pytest.raises(ValueError, match="origin down"):
            await finished(task, "the flight")


def test_joinable_drops_a_flight_left_on_a_closed_loop() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate, loop = Gate(), asyncio.new_event_loop()
    pending = loop.create_task(flight.do("k", gate))
    loop.run_until_complete(gate.started.wait())
    loop.close()  # closed with the flight still pending, never finished
    assert "k" in flight and not pending.done()
    assert asyncio.run(_joinable(flight, "k")) is False
    assert "k" not in flight
    del pending, gate  # nobody can finish them: collected (and reported) within the test
    gc.collect()


async def _joinable(flight: SingleFlight[str, str], key: str) -> bool:
    return flight.joinable(key)


async def test_wait_gives_a_waiter_of_its_own_on_the_flight_in_progress_only() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate("v")
    assert flight.wait("k") is None and flight.joined == 0  # nothing in flight: nothing to wait on
    leader = await _started(flight, gate)
    joined = flight.wait("k")
    assert joined is not None and flight.joined == 1 and "k" in flight.keys
    _, waiter = joined
    gate.release.set()
    assert await finished(leader, "the leader") == "v"
    assert await finished(waiter, "the waiter") == "v"
    assert "k" not in flight.keys


async def test_leave_lets_the_others_wait_and_the_last_one_out_cancels_the_work() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = Gate("v")
    leader = await _started(flight, gate)
    first, second = flight.wait("k"), flight.wait("k")
    assert first is not None and second is not None
    leader.cancel()
    await until(leader.done, "the leader left")
    first[1].cancel()  # as the task awaiting it is cancelled: its waiter is, and then it leaves
    flight.leave("k", *first)
    await asyncio.sleep(0)
    assert gate.cancelled == 0 and flight.joinable("k")  # the second still wants it
    second[1].cancel()
    flight.leave("k", *second)
    await until(lambda: gate.cancelled == 1, "the work was cancelled")
    assert not flight.joinable("k")
