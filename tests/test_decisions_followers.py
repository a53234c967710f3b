"""``spec/decisions/followers.py``: its transition table, row by row (no event loop)."""

from __future__ import annotations

import pytest

from coalesce_client.spec.decisions.followers import (
    Follow,
    OwnVariant,
    SendAlone,
    Served,
    Take,
    Variant,
    follow,
    variant_of,
)

LEADER = Variant(("accept-language",), ("fr",))

# (shared, served, variant, mine, second round) -> variant: one per row of the module's table.
ROWS: dict[
    str,
    tuple[bool, Served | None, Variant | None, tuple[str | None, ...] | None, bool, Follow],
] = {
    "not shared": (False, None, None, None, False, SendAlone("not shared")),
    "stale": (True, "stale", None, None, False, Take("stale")),
    "does not vary": (True, None, None, None, False, Take("coalesced")),
    "revalidated, does not vary": (True, "revalidated", None, None, False, Take("coalesced")),
    "the leader's variant": (True, None, LEADER, ("fr",), True, Take("coalesced")),
    "another variant, first round": (
        True,
        None,
        LEADER,
        ("de",),
        False,
        OwnVariant(("accept-language",)),
    ),
    "another variant, second round": (
        True,
        None,
        LEADER,
        (None,),
        True,
        SendAlone("other variant"),
    ),
}


@pytest.mark.parametrize(
    ("shared", "served", "variant", "mine", "second_round", "expected"), ROWS.values(), ids=ROWS
)
def test_follow_follows_its_table(
    shared: bool,
    served: Served | None,
    variant: Variant | None,
    mine: tuple[str | None, ...] | None,
    second_round: bool,
    expected: Follow,
) -> None:
    assert follow(shared, served, variant, mine, second_round) == expected


def test_the_variant_of_a_request_is_its_trimmed_values_absent_apart_from_empty() -> None:
    names = ("accept", "accept-language")
    assert variant_of(names, {"accept": " text/html "}.get) == Variant(names, ("text/html", None))
    assert variant_of(names, {"accept-language": ""}.get) == Variant(names, (None, ""))
    assert variant_of((), {"accept": "x"}.get) is None
