"""Range requests answered from a complete stored response (issue 24, ``spec/ranges.py``): table
tests, no event loop but the streamed view's."""

from __future__ import annotations

import asyncio

import pytest

from coalesce_client.spec.ranges import (
    ByteRangeSpec,
    Partial,
    RangeOfBody,
    RangeRequest,
    Unsatisfiable,
    Whole,
    answer_snapshot,
    evaluate,
    if_range_holds,
    parse_range,
    rangeable,
)
from coalesce_client.spec.snapshot import BodyReader, Snapshot

S = ByteRangeSpec
PARSED = [
    ("bytes=0-1", (S(0, 1),)),
    ("bytes=1-", (S(1, None),)),
    ("bytes=-5", (S(None, 5),)),
    ("bytes=0-0", (S(0, 0),)),
    ("BYTES=0-1", (S(0, 1),)),  # units are case-insensitive (RFC 9110 §14.1)
    (" bytes=0-1 ", (S(0, 1),)),
    ("bytes=0-1, 4-5,,-2", (S(0, 1), S(4, 5), S(None, 2))),  # empty members (§5.6.1)
    ("bytes=0-99999999999999999999", (S(0, 99999999999999999999),)),
    # Not the grammar, or another unit: the field is ignored (§14.2).
    ("bytes=2-1", None),  # last below first (§14.1.1)
    ("bytes=1", None),
    ("bytes=-", None),
    ("bytes=a-b", None),
    ("bytes=+1-2", None),
    ("bytes=1 -2", None),
    ("bytes=0-1, x", None),
    ("bytes=", None),
    ("bytes 0-1", None),
    ("items=0-1", None),
    ("bytes=0-1, bytes=2-3", None),  # two Range lines joined
]


@pytest.mark.parametrize(("value", "expected"), PARSED)
def test_parse_range(value: str, expected: tuple[ByteRangeSpec, ...] | None) -> None:
    assert parse_range(value) == expected


LM = "Wed, 21 Oct 2015 07:28:00 GMT"
DATE_60 = "Wed, 21 Oct 2015 07:29:00 GMT"  # 60 s after LM: LM is strong for a cache (§8.8.2.2)
DATE_59 = "Wed, 21 Oct 2015 07:28:59 GMT"
STRONG = (("ETag", '"v1"'), ("Last-Modified", LM), ("Date", DATE_60))
IF_RANGE = [
    ('"v1"', STRONG, True),
    (' "v1" ', STRONG, True),
    ('"v2"', STRONG, False),
    ('W/"v1"', STRONG, False),  # a weak tag never matches by the strong comparison (§13.1.5)
    ('"v1"', (("ETag", 'W/"v1"'),), False),
    ('"v1"', (("ETag", '"v1"'), ("ETag", '"v1"')), False),  # two ETags: doubt
    ('"v1"', (), False),
    ('"v1', (("ETag", '"v1'),), False),  # not an entity-tag
    (LM, STRONG, True),
    ("Wednesday, 21-Oct-15 07:28:00 GMT", STRONG, True),  # the same date, another form
    ("Wed, 21 Oct 2015 07:28:01 GMT", STRONG, False),  # not equal
    (LM, (("Last-Modified", LM), ("Date", DATE_59)), False),  # not strong: under 60 s
    (LM, (("Last-Modified", LM),), False),  # no Date: not strong
    ("not a date", STRONG, False),
]


@pytest.mark.parametrize(("value", "stored", "holds"), IF_RANGE)
def test_if_range(value: str, stored: tuple[tuple[str, str], ...], holds: bool) -> None:
    assert if_range_holds(value, stored) is holds


R = RangeRequest
EVALUATED = [
    # (Range, If-Range, length) -> answer
    (R("bytes=0-1", None), 11, Partial(0, 1, 11)),
    (R("bytes=3-5", None), 11, Partial(3, 5, 11)),
    (R("bytes=1-", None), 11, Partial(1, 10, 11)),
    (R("bytes=-1", None), 11, Partial(10, 10, 11)),
    (R("bytes=-50", None), 11, Partial(0, 10, 11)),  # a longer suffix: all of it (§14.1.2)
    (R("bytes=5-500", None), 11, Partial(5, 10, 11)),  # past the end: to the end
    (R("bytes=10-10", None), 11, Partial(10, 10, 11)),
    (R("bytes=11-", None), 11, Unsatisfiable(11)),
    (R("bytes=11-20", None), 11, Unsatisfiable(11)),
    (R("bytes=-0", None), 11, Unsatisfiable(11)),  # a zero suffix (§14.1.2)
    (R("bytes=0-", None), 0, Unsatisfiable(0)),
    (R("bytes=-3", None), 0, Whole("invalid range")),
    (R("bytes=2-1", None), 11, Whole("invalid range")),
    (R("pages=1-2", None), 11, Whole("invalid range")),
    (R("bytes=0-1,3-4", None), 11, Whole("multiple ranges")),
    (R("bytes=0-1,20-30", None), 11, Whole("multiple ranges")),
    (R(None, None), 11, Whole("no range")),
    (R(None, '"v1"'), 11, Whole("no range")),  # If-Range without Range is ignored (§13.1.5)
    (R("bytes=0-1", '"v1"'), 11, Partial(0, 1, 11)),
    (R("bytes=0-1", '"v2"'), 11, Whole("if-range")),
    (R("bytes=0-1", LM), 11, Partial(0, 1, 11)),
    (R("bytes=99-", '"v2"'), 11, Whole("if-range")),  # If-Range first: the whole, not a 416
]


@pytest.mark.parametrize(("asked", "length", "expected"), EVALUATED)
def test_evaluate(asked: RangeRequest, length: int, expected: object) -> None:
    assert evaluate(asked, STRONG, length) == expected


STORED = Snapshot(
    200,
    "OK",
    (("Content-Type", "text/plain"), ("Content-Length", "11"), ("Date", DATE_60), ("ETag", '"v1"')),
    "http://x/",
    "GET",
    b"01234567890",
    stored_at=5.0,
    expires_at=100.0,
    response_time=5.0,
)


def test_a_206_is_the_stored_200_with_its_range() -> None:
    got = answer_snapshot(STORED, Partial(3, 5, 11))
    assert (got.status, got.reason, got.body) == (206, "Partial Content", b"345")
    assert got.headers == (
        ("Content-Type", "text/plain"),
        ("Date", DATE_60),
        ("ETag", '"v1"'),
        ("Content-Range", "bytes 3-5/11"),
        ("Content-Length", "3"),
    )
    assert (got.stored_at, got.expires_at, got.response_time) == (5.0, 100.0, 5.0)


def test_a_416_says_the_length_and_nothing_of_the_representation() -> None:
    got = answer_snapshot(STORED, Unsatisfiable(11))
    assert (got.status, got.body, got.stream) == (416, b"", None)
    assert got.headers == (
        ("Date", DATE_60),
        ("Content-Range", "bytes */11"),
        ("Content-Length", "0"),
    )


def test_the_whole_is_the_stored_response_itself() -> None:
    assert answer_snapshot(STORED, Whole("multiple ranges")) is STORED


@pytest.mark.parametrize(
    ("status", "headers", "length"),
    [
        (200, (), 11),
        (200, (("Content-Encoding", "identity"),), 11),
        (200, (("Content-Encoding", "gzip"),), None),
        (203, (), None),
        (404, (), None),
        (206, (), None),
    ],
)
def test_rangeable(status: int, headers: tuple[tuple[str, str], ...], length: int | None) -> None:
    snap = Snapshot(status, "", headers, "http://x/", "GET", b"01234567890")
    assert rangeable(snap) == length


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, n: int = -1) -> bytes:
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out

    def close(self) -> None:
        pass


class Body:
    """A streamed body that records the ranges its readers are asked for."""

    def __init__(self, data: bytes, length: int | None = None) -> None:
        self.data = data
        self.length = len(data) if length is None else length
        self.asked: list[tuple[int, int | None]] = []

    def reader(self, start: int = 0, end: int | None = None) -> BodyReader:
        self.asked.append((start, end))
        return Reader(self.data[start:end])

    async def complete(self) -> int:
        return len(self.data)


def test_a_streamed_206_reads_only_its_range() -> None:
    body = Body(b"0123456789" * 100)
    stored = Snapshot(200, "OK", (), "http://x/", "GET", b"", stream=body)
    assert rangeable(stored) == 1000
    got = answer_snapshot(stored, Partial(990, 999, 1000))
    assert (got.status, got.body, got.stream.length) == (206, b"", 10)  # type: ignore[union-attr]
    assert body.asked == []  # nothing read until a face reads
    view = got.stream
    assert isinstance(view, RangeOfBody)

    async def read_all(reader: BodyReader) -> bytes:
        return await reader.read()

    assert asyncio.run(read_all(view.reader())) == b"0123456789"
    assert asyncio.run(read_all(view.reader(2, 5))) == b"234"
    assert asyncio.run(read_all(view.reader(8, 50))) == b"89"  # never past the range
    assert body.asked == [(990, 1000), (992, 995), (998, 1000)]
    assert asyncio.run(view.complete()) == 10


def test_a_streamed_body_of_unknown_length_is_not_ranged() -> None:
    body = Body(b"abc")
    body.length = None  # type: ignore[assignment]
    assert rangeable(Snapshot(200, "OK", (), "http://x/", "GET", b"", stream=body)) is None
