"""snapshot.py: the frozen stored response and its versioned, checksummed codec (never pickle)."""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.storage.codec import (
    FORMAT_VERSION,
    SnapshotError,
    decode,
    encode,
    encode_parts,
)
from coalesce_client.storage.records import UrlIndex, VaryPointer


def redirect(status: int, url: str, location: str) -> Snapshot:
    return Snapshot(status, "Moved", (("Location", location),), url, "GET", b"", 10.0, 20.0)


RICH = Snapshot(
    status=200,
    reason="OK",
    headers=(
        ("Content-Type", "text/html; charset=utf-8"),
        ("Vary", "Accept"),
        ("X-Title", "Café — 日本語 ✓"),
        ("vary", "Origin"),
        ("X-Raw", "caf\udce9"),  # how aiohttp hands over undecodable bytes (surrogateescape)
        ("Vary", "Accept"),
        ("X-Empty", ""),
    ),
    url="https://example.com/a/b?q=ü",
    method="GET",
    body=b"\x00\x01<html>\xff\xfe</html>",
    stored_at=1_800_000_000.123456,
    expires_at=1_800_000_060.654321,
    history=(
        redirect(301, "http://example.com/a", "https://example.com/a"),
        redirect(308, "https://example.com/a", "https://example.com/a/b?q=ü"),
    ),
)

SMALL = Snapshot(
    201,
    "Created",
    (("A", "1"), ("B", "")),
    "http://x/",
    "POST",
    b"xyz",
    1.5,
    2.5,
    (redirect(302, "http://x/old", "http://x/"),),
)


# -- round trip -----------------------------------------------------------------------------------


def test_round_trip_keeps_every_field() -> None:
    back = decode(encode(RICH))
    assert back == RICH
    assert back.headers == RICH.headers  # order and repeats, byte for byte
    assert back.history == RICH.history
    assert back.stored_at == RICH.stored_at and back.expires_at == RICH.expires_at
    assert type(back.body) is bytes


def test_round_trip_of_a_minimal_snapshot() -> None:
    snap = Snapshot(204, "", (), "", "HEAD", b"")
    back = decode(encode(snap))
    assert back == snap
    assert back.body == b"" and back.headers == () and back.history == ()


def test_round_trip_of_a_multi_mib_body_byte_for_byte() -> None:
    body = bytes(range(256)) * (3 * 4096 + 7)  # a little over 3 MiB, every byte value
    snap = Snapshot(200, "OK", (("Content-Length", str(len(body))),), "http://x/big", "GET", body)
    back = decode(encode(snap))
    assert len(back.body) == len(body)
    assert back.body == body


def test_decode_accepts_a_memoryview() -> None:
    assert decode(memoryview(encode(RICH))) == RICH


@pytest.mark.parametrize("stored_at", [0.0, -1.0, 1e-9, 2.0**53 + 2, 1_800_000_000.000001])
def test_round_trip_keeps_times_exactly(stored_at: float) -> None:
    snap = dataclasses.replace(SMALL, stored_at=stored_at, expires_at=stored_at + 0.25)
    back = decode(encode(snap))
    assert back.stored_at == snap.stored_at
    assert back.expires_at == snap.expires_at


def test_encoding_starts_with_the_format_version() -> None:
    assert encode(SMALL)[0] == FORMAT_VERSION


header_text = st.text(max_size=20)
snapshots = st.builds(
    Snapshot,
    status=st.integers(100, 599),  # options.is_status: the one range (issue 9),
    reason=st.text(max_size=10),
    headers=st.lists(st.tuples(header_text, header_text), max_size=6).map(tuple),
    url=st.text(max_size=30),
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    body=st.binary(max_size=200),
    stored_at=st.floats(allow_nan=False),
    expires_at=st.floats(allow_nan=False),
    history=st.lists(
        st.builds(
            Snapshot,
            status=st.integers(300, 399),
            reason=st.text(max_size=5),
            headers=st.lists(st.tuples(header_text, header_text), max_size=2).map(tuple),
            url=st.text(max_size=10),
            method=st.just("GET"),
            body=st.just(b""),
        ),
        max_size=2,
    ).map(tuple),
)  # st.text() draws no surrogates, so every drawn snapshot is encodable


@settings(max_examples=100, deadline=None)
@given(snapshots)
def test_round_trip_property(snap: Snapshot) -> None:
    assert decode(encode(snap)) == snap


# -- decoding what is not a snapshot --------------------------------------------------------------


def test_snapshot_error_is_a_value_error() -> None:
    assert issubclass(SnapshotError, ValueError)


def test_decode_of_empty_bytes_raises() -> None:
    with pytest.raises(SnapshotError):
        decode(b"")


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, 0x80, 0xFF])
def test_decode_of_another_version_raises(version: int) -> None:
    data = bytearray(encode(SMALL))
    data[0] = version
    with pytest.raises(SnapshotError, match="version"):
        decode(bytes(data))


def reseal(data: bytes | bytearray) -> bytes:
    """``data`` with its checksum made right again: a forgery that reaches the structural checks."""
    return bytes(data[:-4]) + zlib.crc32(data[:-4]).to_bytes(4, "big")


def test_decode_of_a_redirect_with_redirects_of_its_own_raises() -> None:
    data = bytearray(encode(SMALL))
    # The redirect's head: its status and times, found where they are (after the outer fields).
    hop = data.index((302).to_bytes(2, "big") + struct.pack(">dd", 10.0, 20.0))
    data[hop + 38 : hop + 40] = (1).to_bytes(2, "big")  # its redirect count (after 38 bytes)
    with pytest.raises(SnapshotError, match="malformed"):
        decode(reseal(data))


def test_decode_of_every_truncation_raises() -> None:
    data = encode(SMALL)
    for n in range(len(data)):
        with pytest.raises(SnapshotError):
            decode(data[:n])


@pytest.mark.parametrize("tail", [b"\x00", b"x", encode(SMALL)])
def test_decode_with_trailing_bytes_raises(tail: bytes) -> None:
    with pytest.raises(SnapshotError, match="checksum"):
        decode(encode(SMALL) + tail)
    # Bytes slipped in before a checksum that covers them: the structure still refuses them.
    good = encode(SMALL)
    with pytest.raises(SnapshotError, match="trailing"):
        decode(reseal(good[:-4] + tail + good[-4:]))


def test_decode_of_an_out_of_range_status_raises() -> None:
    data = bytearray(encode(SMALL))
    data[2:4] = (42).to_bytes(2, "big")  # after the version and the record kind
    with pytest.raises(SnapshotError, match="checksum"):
        decode(bytes(data))
    with pytest.raises(SnapshotError, match="malformed"):
        decode(reseal(data))


def test_decode_of_a_body_length_past_the_end_raises() -> None:
    data = encode(Snapshot(200, "OK", (), "u", "GET", b"abc"))
    forged = data[:-15] + (2**63).to_bytes(8, "big") + data[-7:]
    with pytest.raises(SnapshotError, match="checksum"):
        decode(forged)
    with pytest.raises(SnapshotError, match="truncated"):
        decode(reseal(forged))


def test_decode_of_a_pickle_raises() -> None:
    with pytest.raises(SnapshotError):
        decode(pickle.dumps(SMALL))


# -- damage is never a wrong snapshot (issue 11) --------------------------------------------------


def test_the_last_four_bytes_are_a_crc32_of_all_the_others() -> None:
    data = encode(RICH)
    assert int.from_bytes(data[-4:], "big") == zlib.crc32(data[:-4])


def test_every_flipped_bit_of_a_record_raises() -> None:
    data = encode(RICH)
    for i in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            with pytest.raises(SnapshotError):
                decode(bytes(damaged))


def test_damage_deep_in_a_large_body_raises() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    data = bytearray(encode(Snapshot(200, "OK", (), "http://x/big", "GET", body)))
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(8) if data[middle : middle + 8] != bytes(8) else b"\xff" * 8
    with pytest.raises(SnapshotError, match="checksum"):
        decode(bytes(data))


# SMALL without its redirect, as version 1 wrote it (no checksum): read as unknown, never decoded.
VERSION_1 = bytes.fromhex(
    "0100c83ff80000000000004004000000000000000000010000000000024f4b0000000347455400000009687474"
    "703a2f2f782f00000001410000000131000000000000000378797a"
)


# SMALL without its redirect, as version 2 wrote it (no request and response times, before issue
# 12): read as unknown, so that a storage treats it as a miss and writes it again as 3.
VERSION_2 = bytes.fromhex(
    "0200c93ff80000000000004004000000000000000000020000000000074372656174656400000004504f5354"
    "00000009687474703a2f2f782f00000001410000000131000000014200000000000000000000000378797a01"
    "877281"
)


# SMALL without its redirect, with request and response times, as version 3 wrote it (before issue
# 18: no record kind, so a Vary pointer or a URL index was a response with a made-up method). Read
# as unknown, so that a storage treats it as a miss and writes it again as 4.
VERSION_3 = bytes.fromhex(
    "0300c93ff800000000000040040000000000003ff00000000000003ff400000000000000000002000000000007"
    "4372656174656400000004504f535400000009687474703a2f2f782f0000000141000000013100000001420000"
    "0000000000000000000378797a6443e609"
)


@pytest.mark.parametrize(
    ("version", "record"), [(1, VERSION_1), (2, VERSION_2), (3, VERSION_3)], ids=str
)
def test_a_record_of_an_older_version_is_refused(version: int, record: bytes) -> None:
    with pytest.raises(SnapshotError, match=f"unknown snapshot format version {version}"):
        decode(record)


def test_version_4_is_version_3_with_a_record_kind() -> None:
    # The same response as VERSION_3: the kind byte after the version, nothing else.
    again = dataclasses.replace(SMALL, history=(), request_time=1.0, response_time=1.25)
    assert encode(again)[2:-4] == VERSION_3[1:-4]


def test_round_trip_keeps_the_request_and_response_times() -> None:
    snap = dataclasses.replace(SMALL, request_time=1_800_000_000.25, response_time=1_800_000_001.5)
    got = decode(encode(snap))
    assert (got.request_time, got.response_time) == (1_800_000_000.25, 1_800_000_001.5)
    assert got == snap


# -- the records that are not responses (storage/records.py) --------------------------------------

POINTER = VaryPointer(("accept", "accept-language"), ("a" * 64, "b" * 64), "http://x/ü", 1.5, 2.5)
INDEX = UrlIndex(("a" * 64, "c" * 64, "d" * 64), "http://x/", 1.5, 2.5)
RECORDS = [POINTER, INDEX, VaryPointer((), (), "", 0.0, 0.0), UrlIndex((), "", 0.0, 0.0)]


@pytest.mark.parametrize("record", RECORDS, ids=repr)
def test_a_pointer_or_an_index_round_trips_as_itself(record: VaryPointer | UrlIndex) -> None:
    got = decode(encode(record))
    assert type(got) is type(record) and got == record
    assert b"".join(encode_parts(record)) == encode(record)
    assert encode_parts(record)[1] == b""  # no body


def test_each_kind_of_record_has_its_own_kind_byte() -> None:
    kinds = {encode(record)[1] for record in (SMALL, POINTER, INDEX)}
    assert len(kinds) == 3
    assert all(encode(record)[0] == FORMAT_VERSION for record in (SMALL, POINTER, INDEX))


def test_a_record_of_an_unknown_kind_raises() -> None:
    data = bytearray(encode(POINTER))
    data[1] = 0x7F
    with pytest.raises(SnapshotError, match="kind"):
        decode(reseal(data))


def test_a_pointer_read_as_an_index_is_refused() -> None:
    # An index has one list of keys: a record with a second list is malformed, never an index.
    data = bytearray(encode(POINTER))
    data[1] = encode(INDEX)[1]
    with pytest.raises(SnapshotError, match="malformed"):
        decode(reseal(data))


@pytest.mark.parametrize("record", [POINTER, INDEX], ids=repr)
def test_every_truncation_and_flipped_bit_of_a_pointer_or_index_raises(
    record: VaryPointer | UrlIndex,
) -> None:
    data = encode(record)
    for n in range(len(data)):
        with pytest.raises(SnapshotError):
            decode(data[:n])
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x10
        with pytest.raises(SnapshotError):
            decode(bytes(damaged))


def test_records_are_frozen_and_slotted() -> None:
    for record in (POINTER, INDEX):
        assert not hasattr(record, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.url = "other"  # type: ignore[misc]


# -- age (RFC 9111 §4.2.3) ------------------------------------------------------------------------


def aged(*headers: tuple[str, str], sent: float = 1000.0, received: float = 1000.0) -> Snapshot:
    return Snapshot(
        200, "OK", headers, "http://x/", "GET", b"", request_time=sent, response_time=received
    )


def test_age_grows_with_residence_and_adds_the_origins_age() -> None:
    snap = aged(("Age", "10"))
    assert (snap.age(1000.0), snap.age(1005.0)) == (10.0, 15.0)


def test_age_of_a_date_in_the_past_is_the_apparent_age() -> None:
    assert aged(("Date", "Thu, 01 Jan 1970 00:16:20 GMT")).age(1000.0) == 20.0  # Date = 980


def test_age_counts_the_request_delay() -> None:
    assert aged(("Age", "10"), sent=998.0).age(1000.0) == 12.0  # corrected_age_value


def test_age_is_computed_again_for_a_replaced_snapshot() -> None:
    snap = aged(("Age", "10"))
    assert snap.age(1000.0) == 10.0  # remembered now
    assert dataclasses.replace(snap, headers=(("Age", "30"),)).age(1000.0) == 30.0
    assert decode(encode(snap)).age(1000.0) == 10.0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_snapshot_error(data: bytes) -> None:
    with contextlib.suppress(SnapshotError):  # anything else fails the test
        decode(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_after_a_version_byte_raise_only_snapshot_error(data: bytes) -> None:
    # With the right first byte the decoder gets past the version check into the fields.
    with contextlib.suppress(SnapshotError):  # anything else fails the test
        decode(bytes([FORMAT_VERSION]) + data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_corrupted_encodings_raise_only_snapshot_error(data: st.DataObject) -> None:
    good = bytearray(encode(SMALL))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(SnapshotError):  # anything else fails the test
        decode(bytes(good))


# -- the Snapshot value ---------------------------------------------------------------------------


def test_header_lookup_is_case_insensitive_and_returns_the_first_value() -> None:
    assert RICH.header("content-type") == "text/html; charset=utf-8"
    assert RICH.header("CONTENT-TYPE") == "text/html; charset=utf-8"
    assert RICH.header("VARY") == "Accept"
    assert RICH.header("x-empty") == ""
    assert RICH.header("X-Missing") is None


def test_snapshot_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RICH.status = 500  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RICH.body = b"other"  # type: ignore[misc]


def test_snapshot_has_no_instance_dict() -> None:
    # slots=True: a typo such as snap.boddy = ... cannot slip through on a copy either.
    assert not hasattr(SMALL, "__dict__")


def test_snapshot_size_counts_the_body() -> None:
    small = Snapshot(200, "OK", (), "u", "GET", b"")
    big = dataclasses.replace(small, body=b"x" * 1000)
    assert big.size - small.size == 1000
