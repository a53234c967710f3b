"""core/slots.py: the records built on every miss in their shells (issue 20) are the records
their ``__init__`` or ``replace()`` would build: same type, fields, equality, hash, memos
afresh, still frozen; a record whose slots change stops the import of its builder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

import pytest

from coalesce_client.client.send import Times, snapshot_of
from coalesce_client.core.leader import _stamped
from coalesce_client.core.slots import shell_of
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


def test_a_shell_becomes_the_record_its_init_builds() -> None:
    pair = shell_of(Pair, ("a", "b"))()
    pair.a, pair.b = 1, 2
    pair.__class__ = Pair
    assert type(pair) is Pair
    assert pair == Pair(1, 2) and hash(pair) == hash(Pair(1, 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.a = 3


@pytest.mark.parametrize(("cls", "names"), [(Pair, ("a",)), (Pair, ("b", "a")), (Checked, ("a",))])
def test_a_record_whose_slots_are_not_the_builders_stops_it(
    cls: type, names: tuple[str, ...]
) -> None:
    with pytest.raises(ImportError):
        shell_of(cls, names)


class _Received:
    """What ``snapshot_of`` reads of an aiohttp response."""

    def __init__(self, url: str, history: tuple[_Received, ...] = ()) -> None:
        self.status, self.reason, self.method = 200, "OK", "GET"
        self.headers = {"Content-Type": "text/plain", "Date": "Mon, 07 Dec 2026 04:00:00 GMT"}
        self.url, self.history = url, history


def test_a_received_snapshot_is_what_its_init_builds() -> None:
    hop = _Received("http://x/a")
    snap = snapshot_of(_Received("http://x/b", (hop,)), b"body", Times(1.0, 2.0))  # type: ignore[arg-type]
    headers = (("Content-Type", "text/plain"), ("Date", "Mon, 07 Dec 2026 04:00:00 GMT"))
    expected = Snapshot(
        200,
        "OK",
        headers,
        "http://x/b",
        "GET",
        b"body",
        history=(Snapshot(200, "OK", headers, "http://x/a", "GET", b"", 0.0, 0.0, (), 1.0, 2.0),),
        request_time=1.0,
        response_time=2.0,
    )
    assert type(snap) is Snapshot and type(snap.history[0]) is Snapshot
    assert snap == expected and hash(snap) == hash(expected)
    for field in dataclasses.fields(Snapshot):
        assert getattr(snap, field.name) == getattr(expected, field.name), field.name
    assert snap.stream is None and snap._initial_age is None and snap.replay_form is None
