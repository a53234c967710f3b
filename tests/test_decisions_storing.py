"""``spec/decisions/storing.py``: its two transition tables, row by row (no event loop)."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, get_args

import pytest

from coalesce_client.core.policy import CachePolicy
from coalesce_client.spec.decisions import storing as table
from coalesce_client.spec.decisions.storing import ShareTerms, Sharing, Storing
from coalesce_client.spec.freshness import Lifetime
from coalesce_client.spec.lifetime import NotStored, NotStoredReason
from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.spec.vary import ANY


def response(status: int = 200, *headers: tuple[str, str], body: bytes = b"body") -> Snapshot:
    return Snapshot(status, "", headers, "http://x/", "GET", body, response_time=1_000.0)


class Stream(NamedTuple):
    """A streamed body of a known length or not (``StreamedBody``; its reader is not read)."""

    length: int | None

    def reader(self, start: int = 0, end: int | None = None) -> Any:
        raise AssertionError("storing never reads the body")

    async def complete(self) -> int:
        raise AssertionError("storing never waits for the body")


# -- sharing ---------------------------------------------------------------------------------------

COOKIE = ("Set-Cookie", "session=alice")
TERMS = ShareTerms(targeted=())

# (response, names, private, terms) -> variant: one per row of the first table.
SHARING: dict[str, tuple[Snapshot | None, tuple[str, ...], bool, ShareTerms, Sharing]] = {
    "streamed": (None, (), False, TERMS, table.Neither("streamed")),
    "vary *": (response(), ANY, False, TERMS, table.Neither("vary *")),
    "streamed as it arrives (a stream, not bytes)": (
        dataclasses.replace(response(), body=b"", stream=Stream(10_000)),
        (),
        False,
        TERMS,
        table.SHAREABLE,
    ),
    "a large body in memory (a face streams what is over max_body_size)": (
        response(body=b"x" * 100_001),
        (),
        False,
        TERMS,
        table.SHAREABLE,
    ),
    "private, Set-Cookie": (response(200, COOKIE), (), True, TERMS, table.Neither("set-cookie")),
    "private, cc private": (
        response(200, ("Cache-Control", "private, no-store")),
        (),
        True,
        TERMS,
        table.Neither("private"),
    ),
    "private, otherwise": (
        response(200, ("Cache-Control", "no-store")),
        (),
        True,
        TERMS,
        table.Neither("no-store"),
    ),
    "shareable": (response(200, COOKIE), ("accept",), False, TERMS, table.Shareable()),
}


@pytest.mark.parametrize(
    ("snap", "names", "private", "terms", "expected"), SHARING.values(), ids=SHARING
)
def test_sharing_follows_its_table(
    snap: Snapshot | None,
    names: tuple[str, ...],
    private: bool,
    terms: ShareTerms,
    expected: Sharing,
) -> None:
    assert table.sharing(snap, names, private, terms) == expected


# -- storing ---------------------------------------------------------------------------------------

LIFETIME = Lifetime(60.0, 600.0)
SMALL = response(200)  # a body of 4 bytes, in memory
ROOM = table.Room(max_stored_size=100, stream_limit=50)


def streamed(length: int | None) -> Snapshot:
    return dataclasses.replace(response(200), body=b"", stream=Stream(length))


# (should_store's verdict, the policy's lifetime, the response, the room) -> variant: one per row
# of the second table, the NotStored row once per reason the policy gives.
STORING: dict[str, tuple[bool, Lifetime | NotStored, Snapshot, table.Room, Storing]] = {
    "should_store says no": (False, LIFETIME, SMALL, ROOM, table.ShareOnly("should_store veto")),
    **{
        f"not stored: {reason}": (True, NotStored(reason), SMALL, ROOM, table.ShareOnly(reason))
        for reason in get_args(NotStoredReason)
    },
    "streamed, the storage takes none": (
        True,
        LIFETIME,
        streamed(10),
        table.Room(100, 0),
        table.ShareOnly("storage takes no streams"),
    ),
    "streamed, over the storage's limit": (
        True,
        LIFETIME,
        streamed(51),
        ROOM,
        table.ShareOnly("body over max_stored_size"),
    ),
    "streamed, over max_stored_size": (
        True,
        LIFETIME,
        streamed(11),
        table.Room(10, 50),
        table.ShareOnly("body over max_stored_size"),
    ),
    "in memory, over max_stored_size": (
        True,
        LIFETIME,
        SMALL,
        table.Room(1, 50),
        table.ShareOnly("body over max_stored_size"),
    ),
    "a lifetime": (True, LIFETIME, SMALL, ROOM, table.StoreAndShare(LIFETIME)),
    "a lifetime, streamed within the limits": (
        True,
        LIFETIME,
        streamed(50),
        ROOM,
        table.StoreAndShare(LIFETIME),
    ),
    "a lifetime, streamed of unknown length": (
        True,
        LIFETIME,
        streamed(None),
        ROOM,
        table.StoreAndShare(LIFETIME),
    ),
}


@pytest.mark.parametrize(
    ("storable", "lifetime", "snap", "room", "expected"), STORING.values(), ids=STORING
)
def test_storing_follows_its_table(
    storable: bool,
    lifetime: Lifetime | NotStored,
    snap: Snapshot,
    room: table.Room,
    expected: Storing,
) -> None:
    assert table.storing(storable, lifetime, snap, room) == expected


def test_a_targeted_field_decides_the_private_reason_in_a_shared_cache() -> None:
    """RFC 9213 §2.2: the directives the cache obeys are the targeted field's, as the policy's
    ``is_private`` reads them."""
    headers = (("Cache-Control", "public"), ("CDN-Cache-Control", "private"))
    snap = response(200, *headers)
    policy = CachePolicy(targeted_cache_control=("CDN-Cache-Control",))
    assert policy.is_private(snap.headers, snap.status)
    terms = ShareTerms(tuple(policy.targeted_cache_control))
    assert table.sharing(snap, (), True, terms) == table.Neither("private")
    assert table.sharing(snap, (), True, TERMS) == table.Neither(
        "no-store"
    )  # (Cache-Control alone)
