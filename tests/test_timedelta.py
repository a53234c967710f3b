"""Every option in seconds also takes a ``datetime.timedelta`` (requests-cache and
aiohttp-client-cache users pass one); a negative one is refused as the number would be."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import FakeClock, Origin

from coalesce_client import CachePolicy, CoalescingSession, coalesce_middleware
from coalesce_client.options import check_seconds, check_seconds_map, check_seconds_or_none

MINUTE = timedelta(minutes=1)


def test_the_checks_turn_a_timedelta_into_float_seconds() -> None:
    assert check_seconds(timedelta(hours=1), "ttl") == 3600.0
    assert check_seconds(timedelta(milliseconds=1500), "ttl") == 1.5
    assert check_seconds_or_none(MINUTE, "wait_timeout", positive=True) == 60.0
    assert check_seconds_map({404: MINUTE}, "status_ttl", lambda s: True, "codes") == {404: 60.0}


@pytest.mark.parametrize("value", [timedelta(seconds=-1), timedelta(days=-1)])
def test_a_negative_timedelta_is_refused_as_the_number(value: timedelta) -> None:
    with pytest.raises(ValueError, match="ttl must be a non-negative number of seconds"):
        check_seconds(value, "ttl")
    with pytest.raises(ValueError, match="wait_timeout"):
        check_seconds_or_none(timedelta(0), "wait_timeout", positive=True)
    with pytest.raises(ValueError, match=r"status_ttl\[404\]"):
        CachePolicy(status_ttl={404: value})


@pytest.mark.parametrize(
    "option",
    ["pass_ttl", "heuristic_max", "stale_while_revalidate", "stale_if_error", "keep_stale"],
)
def test_policy_windows_take_a_timedelta_and_keep_float_seconds(option: str) -> None:
    policy = CachePolicy(**{option: timedelta(minutes=2)})
    assert getattr(policy, option) == 120.0
    assert type(getattr(policy, option)) is float
    with pytest.raises(ValueError, match=option):
        CachePolicy(**{option: timedelta(seconds=-5)})


def test_status_ttl_and_url_ttl_values_take_a_timedelta() -> None:
    policy = CachePolicy(status_ttl={404: MINUTE}, url_ttl={"h/static/*": timedelta(hours=1)})
    assert policy.status_ttl == {404: 60.0}
    assert policy.url_ttl == {"h/static/*": 3600.0}
    assert policy.ttl_for(404, [], session_ttl=5) == 60.0
    assert policy.url_lifetime("h/static/a.css", 5) == 3600.0


def test_both_faces_take_a_timedelta_ttl_and_wait_timeout() -> None:
    session = CoalescingSession(ttl=timedelta(hours=1), wait_timeout=timedelta(seconds=3))
    assert (session._core.ttl, session._core.wait_timeout) == (3600.0, 3.0)
    middleware = coalesce_middleware(ttl=MINUTE, wait_timeout=timedelta(seconds=2))
    assert (middleware._core.ttl, middleware._core.wait_timeout) == (60.0, 2.0)
    for face in (CoalescingSession, coalesce_middleware):
        with pytest.raises(ValueError, match="ttl"):
            face(ttl=timedelta(seconds=-1))


async def test_cache_ttl_takes_a_timedelta(started: Origin, clock: FakeClock) -> None:
    async with CoalescingSession(ttl=1, clock=clock) as s:
        first = await s.get(started.url("/text"), cache_ttl=timedelta(minutes=10))
        clock.advance(599)
        again = await s.get(started.url("/text"))
        clock.advance(2)
        later = await s.get(started.url("/text"))
        with pytest.raises(ValueError, match="cache_ttl"):
            await s.get(started.url("/text"), cache_ttl=timedelta(seconds=-1))
    assert [r.cache_status for r in (first, again, later)] == ["miss", "hit", "miss"]
