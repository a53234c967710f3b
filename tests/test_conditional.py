"""conditional.py: If-None-Match and If-Modified-Since against a stored response's validators
(RFC 9110 §13.1.2, §13.1.3, §13.2.2; RFC 9111 §4.3.2). A True here becomes a 304 without the body,
so every case where the client's copy may differ from the stored one must be False."""

from __future__ import annotations

import pytest

from coalesce_client.spec.conditional import (
    NOT_MODIFIED_FIELDS,
    entity_tags,
    not_modified,
    not_modified_headers,
    opaque_tag,
)

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
STORED = (
    ("Content-Type", "text/plain"),
    ("ETag", '"v2"'),
    ("Last-Modified", LAST_MODIFIED),
)


# -- entity-tag lists (RFC 9110 §8.8.3, §13.1.2) ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tags"),
    [
        ('"a"', ('"a"',)),
        ('W/"a"', ('"a"',)),
        ('"a", W/"b" ,"c"', ('"a"', '"b"', '"c"')),
        ('"a",,  , "b"', ('"a"', '"b"')),  # empty list members (§5.6.1)
        ('"a,b"', ('"a,b"',)),  # a comma inside the quotes is the tag's
        ('""', ('""',)),  # the empty opaque-tag is a tag
        ('"*"', ('"*"',)),  # a quoted star is a tag, not "any"
        (" * ", ("*",)),
        ('"caf\u00e9"', ('"caf\u00e9"',)),  # obs-text
    ],
)
def test_entity_tag_lists_are_read_per_the_grammar(value: str, tags: tuple[str, ...]) -> None:
    assert entity_tags(value) == tags


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "v2",  # no quotes
        '"v2',  # no closing quote
        'w/"v2"',  # W/ is case-sensitive (%s"W/")
        'W/ "v2"',
        '"v 2"',  # a space is no etagc
        '"v\x7f"',
        '"a" "b"',  # two tags without a comma
        '"a"x',
        '*, "a"',  # * only alone
        "**",
    ],
)
def test_malformed_entity_tag_lists_are_nothing(value: str) -> None:
    assert entity_tags(value) is None


def test_opaque_tag_of_one_entity_tag_only() -> None:
    assert opaque_tag('W/"x"') == opaque_tag(' "x"\t') == '"x"'
    assert opaque_tag("*") is None
    assert opaque_tag('"a", "b"') is None
    assert opaque_tag("x") is None


# -- If-None-Match: weak comparison (§13.1.2, §8.8.3.2) -------------------------------------------


@pytest.mark.parametrize(
    ("stored_etag", "if_none_match", "expected"),
    [
        ('"v2"', '"v2"', True),
        ('"v2"', 'W/"v2"', True),  # weak comparison: either may be weak
        ('W/"v2"', '"v2"', True),
        ('W/"v2"', 'W/"v2"', True),
        ('"v2"', '"v1", "v2"', True),  # any member
        ('"v2"', "*", True),  # any current representation
        ('"v2"', '"v1"', False),
        ('"v2"', '"V2"', False),  # opaque-tags compare character by character
        ('"v2"', '"v2 "', False),
        ('"v2"', '"v2-evil"', False),
        ('"v2"', "v2", False),  # malformed: nothing said
        ('"v2"', '"v1", v2', False),
        ('"v2"', '"v2"x', False),
        ("v2", "v2", False),  # a malformed stored ETag matches nothing
        ('"v2"', '"*"', False),
    ],
)
def test_if_none_match_weak_comparison(
    stored_etag: str, if_none_match: str, expected: bool
) -> None:
    stored = (("ETag", stored_etag), ("Content-Type", "text/plain"))
    assert not_modified(stored, if_none_match, None) is expected


def test_if_none_match_without_a_stored_etag_matches_only_star() -> None:
    stored = (("Last-Modified", LAST_MODIFIED),)
    assert not not_modified(stored, '"v2"', None)
    assert not_modified(stored, "*", None)


def test_two_stored_etags_match_nothing_but_star() -> None:
    stored = (("ETag", '"a"'), ("etag", '"b"'))
    assert not not_modified(stored, '"a"', None)
    assert not not_modified(stored, '"b"', None)
    assert not_modified(stored, "*", None)


def test_stored_etag_name_is_case_insensitive() -> None:
    assert not_modified((("etag", '"v2"'),), '"v2"', None)


# -- If-Modified-Since: against Last-Modified only, and only without If-None-Match ----------------


@pytest.mark.parametrize(
    ("if_modified_since", "expected"),
    [
        (LAST_MODIFIED, True),  # equal: not modified since
        ("Wed, 21 Oct 2015 07:28:01 GMT", True),  # later
        ("Wednesday, 21-Oct-15 07:28:00 GMT", True),  # the obsolete forms are dates too
        ("Wed Oct 21 07:28:00 2015", True),
        ("Wed, 21 Oct 2015 07:27:59 GMT", False),  # a second earlier: modified
        ("Tue, 20 Oct 2015 07:28:00 GMT", False),
        ("yesterday", False),  # not a date: ignored (§13.1.3)
        (f"{LAST_MODIFIED}, {LAST_MODIFIED}", False),  # more than one member: ignored
        ("Wed, 21 Oct 2015 07:28:00 CET", False),
    ],
)
def test_if_modified_since_against_last_modified(if_modified_since: str, expected: bool) -> None:
    # Received the day after LAST_MODIFIED: the time a two-digit year is read against.
    assert not_modified(STORED, None, if_modified_since, received=1445498880.0) is expected


def test_without_last_modified_if_modified_since_compares_with_date_then_the_time_received() -> (
    None
):
    """RFC 9111 §4.3.2: a cache SHOULD use the stored Date, or the time it was received."""
    stored = (("Date", "Wed, 21 Oct 2015 07:28:00 GMT"), ("ETag", '"v2"'))
    assert not_modified(stored, None, "Thu, 22 Oct 2015 07:28:00 GMT")
    assert not not_modified(stored, None, "Tue, 20 Oct 2015 07:28:00 GMT")
    undated = (("ETag", '"v2"'),)
    oct_22 = "Thu, 22 Oct 2015 07:28:00 GMT"
    assert not_modified(undated, None, oct_22, received=1445412480.0)  # received on Oct 21
    assert not not_modified(undated, None, oct_22, received=1445585280.0)  # on Oct 23
    assert not not_modified(undated, None, oct_22)  # when, nobody knows
    # A Last-Modified that is there decides, even unreadable: Date is not a stand-in for it.
    assert not not_modified((("Last-Modified", "0"), *stored), None, oct_22)


def test_an_invalid_stored_last_modified_is_never_not_modified() -> None:
    stored = (("Last-Modified", "0"),)
    assert not not_modified(stored, None, "Thu, 22 Oct 2015 07:28:00 GMT")


def test_if_none_match_decides_alone_when_present() -> None:
    # §13.1.3: If-Modified-Since is ignored when If-None-Match is there, whichever would match.
    assert not not_modified(STORED, '"v1"', LAST_MODIFIED)
    assert not_modified(STORED, '"v2"', "Tue, 20 Oct 2015 07:28:00 GMT")
    assert not not_modified(STORED, "v2", LAST_MODIFIED)  # even a malformed one


def test_no_condition_is_never_not_modified() -> None:
    assert not not_modified(STORED, None, None)


# -- what a 304 carries ---------------------------------------------------------------------------


def test_not_modified_headers_keep_the_listed_fields_in_order_with_repeats() -> None:
    stored = (
        ("Date", "Wed, 21 Oct 2015 07:30:00 GMT"),
        ("Content-Type", "text/plain"),
        ("ETag", '"v2"'),
        ("Cache-Control", "max-age=60"),
        ("Vary", "Accept"),
        ("Set-Cookie", "a=b"),
        ("vary", "Accept-Language"),
        ("Content-Length", "5"),
        ("Content-Location", "/doc.en"),
        ("Expires", "Wed, 21 Oct 2015 07:31:00 GMT"),
        ("Last-Modified", LAST_MODIFIED),
        ("X-Custom", "1"),
    )
    assert not_modified_headers(stored) == (
        ("Date", "Wed, 21 Oct 2015 07:30:00 GMT"),
        ("ETag", '"v2"'),
        ("Cache-Control", "max-age=60"),
        ("Vary", "Accept"),
        ("vary", "Accept-Language"),
        ("Content-Location", "/doc.en"),
        ("Expires", "Wed, 21 Oct 2015 07:31:00 GMT"),
        ("Last-Modified", LAST_MODIFIED),
    )
    assert {"etag", "last-modified", "date", "vary", "content-location"} <= NOT_MODIFIED_FIELDS
