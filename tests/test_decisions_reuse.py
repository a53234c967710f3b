"""``spec/decisions/reuse.py``: its transition table, row by row (no event loop)."""

from __future__ import annotations

import pytest

from coalesce_client.spec.decisions import reuse as table
from coalesce_client.spec.decisions.reuse import NOT_STALE, Reuse, StaleTerms
from coalesce_client.spec.freshness import StaleWindows
from coalesce_client.spec.requests import Wanted
from coalesce_client.spec.snapshot import Snapshot

NOW = 1_000_000.0


def stored(expires_in: float) -> Snapshot:
    """A response received 20 s ago (so 20 s old), fresh for ``expires_in`` more seconds."""
    return Snapshot(
        200,
        "OK",
        (),
        "http://x/",
        "GET",
        b"",
        expires_at=NOW + expires_in,
        request_time=NOW - 20,
        response_time=NOW - 20,
    )


FRESH = stored(10.0)
STALE = stored(-5.0)  # stale for 5 s
OIC = Wanted(only_if_cached=True)
WINDOW = StaleTerms(StaleWindows(30.0, 0.0), True)  # stale-while-revalidate 30 s
ALLOWS_STALE = StaleTerms(StaleWindows(0.0, 0.0), True)
FORBIDS_STALE = StaleTerms(StaleWindows(0.0, 0.0), False)

# (stored, refresh, wanted, stale terms) -> variant; one per row of the module's table (and a few
# rows twice, where the row says "or").
ROWS: dict[str, tuple[Snapshot | None, bool, Wanted | None, StaleTerms, Reuse]] = {
    "none, only-if-cached": (None, False, OIC, NOT_STALE, table.OnlyIfCachedMiss("not stored")),
    "none": (None, False, None, NOT_STALE, table.Miss("not stored")),
    "refresh, only-if-cached": (
        FRESH,
        True,
        OIC,
        NOT_STALE,
        table.OnlyIfCachedMiss("request no-cache"),
    ),
    "refresh": (FRESH, True, None, NOT_STALE, table.Revalidate("request no-cache")),
    "fresh, no directives": (FRESH, False, None, NOT_STALE, table.Hit()),
    "fresh, directives accept it": (FRESH, False, Wanted(max_age=60), NOT_STALE, table.Hit()),
    "fresh, older than max-age, only-if-cached": (
        FRESH,
        False,
        Wanted(max_age=10, only_if_cached=True),
        NOT_STALE,
        table.OnlyIfCachedMiss("max-age"),
    ),
    "fresh, older than max-age": (
        FRESH,
        False,
        Wanted(max_age=10),
        NOT_STALE,
        table.Revalidate("max-age"),
    ),
    "fresh, not min-fresh, only-if-cached": (
        FRESH,
        False,
        Wanted(min_fresh=60, only_if_cached=True),
        NOT_STALE,
        table.OnlyIfCachedMiss("min-fresh"),
    ),
    "fresh, not min-fresh": (
        FRESH,
        False,
        Wanted(min_fresh=60),
        NOT_STALE,
        table.Revalidate("min-fresh"),
    ),
    "stale, within stale-while-revalidate": (
        STALE,
        False,
        None,
        WINDOW,
        table.ServeStale("stale-while-revalidate"),
    ),
    "stale, the window's last second": (
        stored(-30.0),
        False,
        None,
        WINDOW,
        table.ServeStale("stale-while-revalidate"),
    ),
    "stale, max-stale accepts, origin allows": (
        STALE,
        False,
        Wanted(max_stale=60),
        ALLOWS_STALE,
        table.ServeStale("max-stale"),
    ),
    "stale, only-if-cached": (STALE, False, OIC, WINDOW, table.OnlyIfCachedMiss("stale")),
    "stale, no window": (STALE, False, None, NOT_STALE, table.Revalidate("stale")),
    "stale, past the window": (
        stored(-31.0),
        False,
        None,
        WINDOW,
        table.Revalidate("stale"),
    ),
    "stale, max-stale, origin forbids": (
        STALE,
        False,
        Wanted(max_stale=60),
        FORBIDS_STALE,
        table.Revalidate("stale"),
    ),
    "stale, past max-stale": (
        STALE,
        False,
        Wanted(max_stale=1),
        ALLOWS_STALE,
        table.Revalidate("stale"),
    ),
    "stale, the caller's max-age rules out the window": (
        STALE,
        False,
        Wanted(max_age=600),
        WINDOW,
        table.Revalidate("stale"),
    ),
}


@pytest.mark.parametrize(
    ("snap", "refresh", "wanted", "stale", "expected"), ROWS.values(), ids=ROWS
)
def test_reuse_follows_its_table(
    snap: Snapshot | None,
    refresh: bool,
    wanted: Wanted | None,
    stale: StaleTerms,
    expected: Reuse,
) -> None:
    assert table.reuse(snap, NOW, wanted, refresh, stale) == expected


def test_a_decision_without_data_of_its_own_costs_no_allocation() -> None:
    """The paths every call takes answer with module constants (the package's rules)."""
    assert table.reuse(None, NOW, None, False, NOT_STALE) is table.reuse(
        None, NOW, None, False, NOT_STALE
    )
    assert table.reuse(FRESH, NOW, None, False, NOT_STALE) is table.reuse(
        FRESH, NOW, None, False, NOT_STALE
    )
