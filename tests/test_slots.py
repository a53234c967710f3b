"""core/slots.py: the records built on every miss by their slots (issue 20) are the records
their ``__init__`` or ``replace()`` would build: same type, fields, equality, hash, memos
afresh, still frozen; a record whose slots change stops the import of its builder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

import pytest

from coalesce_client.core.leader import _stamped
from coalesce_client.core.slots import slot_setters
from coalesce_client.spec.snapshot import Snapshot


def full() -> Snapshot:
    """A response with every field set to something but its default, memos made."""
    hop = Snapshot(301, "Moved", (("Location", "/b"),), "http://x/a", "GET", b"")
    snap = Snapshot(
        200,
        "OK",
        (("Date", "Mon, 07 Dec 2026 04:00:00 GMT"), ("Age", "3")),
        "http://x/b",
        "GET",
        b"body",
        stored_at=1.0,
        expires_at=2.0,
        history=(hop,),
        request_time=1_796_000_000.0,
        response_time=1_796_000_001.0,
    )
    snap.age(1_796_000_005.0)
    snap.keep_replay_form(object())
    return snap


def test_a_stamped_copy_is_what_replace_makes() -> None:
    snap = full()
    stamped = _stamped(snap, 10.0, 70.0)
    expected = replace(snap, stored_at=10.0, expires_at=70.0)
    assert type(stamped) is Snapshot
    assert stamped == expected and hash(stamped) == hash(expected)
    for field in dataclasses.fields(Snapshot):
        assert getattr(stamped, field.name) == getattr(expected, field.name), field.name
    assert stamped._initial_age is None and stamped.replay_form is None  # memos afresh
    with pytest.raises(dataclasses.FrozenInstanceError):
        stamped.status = 404  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Pair:
    a: int
    b: int


@dataclass(frozen=True, slots=True)
class Checked:
    a: int

    def __post_init__(self) -> None:
        assert self.a > 0


def test_slot_setters_build_the_record_its_init_builds() -> None:
    set_a, set_b = slot_setters(Pair, ("a", "b"))
    pair = object.__new__(Pair)
    set_a(pair, 1)
    set_b(pair, 2)
    assert pair == Pair(1, 2) and hash(pair) == hash(Pair(1, 2))


@pytest.mark.parametrize(("cls", "names"), [(Pair, ("a",)), (Pair, ("b", "a")), (Checked, ("a",))])
def test_a_record_whose_slots_are_not_the_builders_stops_it(
    cls: type, names: tuple[str, ...]
) -> None:
    with pytest.raises(ImportError):
        slot_setters(cls, names)
