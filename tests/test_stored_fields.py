"""spec/stored_fields.py's ``storable_headers`` reads the headers once (issue 20): the same
fields as before, and the headers themselves when it drops nothing (no copy)."""

from __future__ import annotations

import pytest

from coalesce_client.spec.stored_fields import field_filter, storable_headers

STRIP = field_filter(("set-cookie", "x-ratelimit-*"))

ROWS = [
    ((), ()),
    ((("Content-Type", "a"), ("ETag", '"1"')), (("Content-Type", "a"), ("ETag", '"1"'))),
    ((("SET-COOKIE", "a"), ("ETag", '"1"')), (("ETag", '"1"'),)),
    ((("X-RateLimit-Left", "1"), ("Proxy-X", "2"), ("Date", "d")), (("Date", "d"),)),
    ((("X-A", "1"), ("CONNECTION", "x-a"), ("X-B", "2")), (("X-B", "2"),)),
    ((("Keep-Alive", "5"), ("TE", "x"), ("Vary", "Accept")), (("Vary", "Accept"),)),
]


@pytest.mark.parametrize(("headers", "kept"), ROWS)
def test_storable_headers_row_by_row(
    headers: tuple[tuple[str, str], ...], kept: tuple[tuple[str, str], ...]
) -> None:
    assert storable_headers(headers, STRIP) == kept
    assert storable_headers(list(headers), STRIP) == kept


def test_headers_that_drop_nothing_are_not_copied() -> None:
    headers = (("Content-Type", "a"), ("ETag", '"1"'))
    assert storable_headers(headers, STRIP) is headers
