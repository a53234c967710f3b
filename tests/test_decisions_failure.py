"""``spec/decisions/failure.py``: its transition table, row by row (no event loop)."""

from __future__ import annotations

import pytest

from coalesce_client.spec.decisions.failure import (
    ERROR_STATUSES,
    Failure,
    FailureStands,
    StaleIfError,
    on_failure,
)
from coalesce_client.spec.snapshot import Snapshot

NOW = 1_000_000.0
PRIOR = Snapshot(200, "OK", (), "http://x/", "GET", b"stored", expires_at=NOW - 30)  # stale 30 s

# (prior, status, window) -> variant: one per row of the module's table.
ROWS: dict[str, tuple[Snapshot | None, object, float, Failure]] = {
    "nothing stored": (None, 503, 60.0, FailureStands("not stored")),
    "an exception that is an answer": (PRIOR, 404, 60.0, FailureStands("not an error")),
    "no window": (PRIOR, None, 0.0, FailureStands("no stale-if-error")),
    "past the window": (PRIOR, 503, 29.0, FailureStands("past stale-if-error")),
    "an exception, within the window": (PRIOR, None, 60.0, StaleIfError(PRIOR)),
    "a 503, within the window": (PRIOR, 503, 60.0, StaleIfError(PRIOR)),
}


@pytest.mark.parametrize(("prior", "status", "window", "expected"), ROWS.values(), ids=ROWS)
def test_on_failure_follows_its_table(
    prior: Snapshot | None, status: object, window: float, expected: Failure
) -> None:
    assert on_failure(prior, status, NOW, window) == expected


@pytest.mark.parametrize("status", sorted(ERROR_STATUSES))
def test_every_error_status_falls_back_on_the_prior(status: int) -> None:
    assert on_failure(PRIOR, status, NOW, 60.0) == StaleIfError(PRIOR)


def test_the_window_is_inclusive() -> None:
    """RFC 5861 §4: "within" the window, its last second included."""
    assert on_failure(PRIOR, None, NOW, 30.0) == StaleIfError(PRIOR)
