"""Conditional requests a cache may answer itself: ``If-None-Match`` and ``If-Modified-Since``
evaluated against a stored response's validators (RFC 9110 §13.1.2, §13.1.3, §13.2.2; RFC 9111
§4.3.2).

Rules of this module (pure functions, standard library only):

* The one question answered here is "is the stored response not modified for this request?"
  (``not_modified``). True means the face may answer 304; False means nothing can be said, and the
  face answers with the full stored response, which is never wrong for a GET or HEAD: a 200 is a
  valid answer to any conditional GET, a 304 only to the right one. So every doubt (a malformed
  field, a stored response without the validator, two ETags) is False.
* ``If-None-Match`` takes precedence: when the request has one, ``If-Modified-Since`` is not
  looked at (§13.1.3: "A recipient MUST ignore If-Modified-Since if the request contains an
  If-None-Match header field", the order of §13.2.2). It matches with the weak comparison
  (§13.1.2, §8.8.3.2: the opaque-tags are equal, either may be weak); ``*`` matches any stored
  response (there is a current representation).
* ``If-Modified-Since`` is compared with the stored ``Last-Modified``; a stored response without
  one is dated by its ``Date``, else by the time it was received (RFC 9111 §4.3.2: a cache
  "SHOULD use the stored response's Date field value (or, if no Date field is present, the time
  that the stored response was received)"). An invalid date on either side, or a field with more
  than one member, is ignored (§13.1.3).
* A precondition is ignored when the unconditional response would not be a 2xx (§13.2.1):
  ``answers_not_modified`` is the question both faces ask of a fresh stored response, with the
  request's ``Validators``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NamedTuple

from .dates import parse_http_date
from .snapshot import Snapshot

__all__ = [
    "NOT_MODIFIED_FIELDS",
    "Validators",
    "answers_not_modified",
    "entity_tags",
    "not_modified",
    "not_modified_headers",
    "not_modified_snapshot",
    "opaque_tag",
    "validators_of",
]

# What a 304 carries of the stored response: what the 200 would have carried of these (RFC 9110
# §15.4.5: Content-Location, Date, ETag, Vary, Cache-Control, Expires; Last-Modified too, so that
# the client's cache can go on validating with it).
NOT_MODIFIED_FIELDS = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "last-modified", "vary"}
)

_OWS = " \t"


def _etagc(c: str) -> bool:
    """etagc = %x21 / %x23-7E / obs-text (RFC 9110 §8.8.3): visible characters but DQUOTE."""
    o = ord(c)
    return o == 0x21 or 0x23 <= o <= 0x7E or o >= 0x80


def opaque_tag(value: str) -> str | None:
    """The opaque-tag of one entity-tag (``"x"`` or ``W/"x"``, surrounding whitespace allowed),
    quotes included; None when ``value`` is not exactly one entity-tag.

    >>> opaque_tag('W/"v2"'), opaque_tag(' "v2" '), opaque_tag("v2"), opaque_tag('"a", "b"')
    ('"v2"', '"v2"', None, None)
    """
    tags = entity_tags(value)
    if tags is None or len(tags) != 1 or tags[0] == "*":
        return None
    return tags[0]


def entity_tags(value: str) -> tuple[str, ...] | None:
    """The opaque-tags of an ``If-None-Match`` field value (``#entity-tag``, RFC 9110 §13.1.2),
    in order, quotes included and ``W/`` dropped; ``("*",)`` for ``*``; None when the value is
    not that grammar (nothing of a malformed field is used).

    Empty list members are allowed (RFC 9110 §5.6.1: a recipient accepts ``, ,``); commas inside
    quotes belong to the tag.

    >>> entity_tags('"a", W/"b",, "c,d"'), entity_tags(" * "), entity_tags('"a", *')
    (('"a"', '"b"', '"c,d"'), ('*',), None)
    """
    text = value.strip(_OWS)
    if text == "*":
        return ("*",)
    tags: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _OWS or c == ",":
            i += 1
            continue
        if text.startswith("W/", i):
            i += 2
        if i >= n or text[i] != '"':
            return None
        end = i + 1
        while end < n and text[end] != '"':
            if not _etagc(text[end]):
                return None
            end += 1
        if end >= n:
            return None  # no closing quote
        tags.append(text[i : end + 1])
        i = end + 1
        # After a tag: whitespace, then a comma or the end.
        while i < n and text[i] in _OWS:
            i += 1
        if i < n and text[i] != ",":
            return None
    return tuple(tags) if tags else None


def not_modified(
    stored: Iterable[tuple[str, str]],
    if_none_match: str | None,
    if_modified_since: str | None,
    received: float | None = None,
) -> bool:
    """Whether a request with these ``If-None-Match`` / ``If-Modified-Since`` values (lines
    joined with ", ", None when absent) may be answered 304 from a stored response with these
    header pairs, ``received`` at that time (see the module rules).

    >>> stored = (("ETag", 'W/"v2"'), ("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"))
    >>> not_modified(stored, '"v1", "v2"', None), not_modified(stored, '"v1"', None)
    (True, False)
    >>> not_modified(stored, None, "Wed, 21 Oct 2015 07:28:00 GMT")
    True
    >>> not_modified(stored, '"v1"', "Wed, 21 Oct 2015 07:28:00 GMT")  # INM decides alone
    False
    """
    if if_none_match is not None:
        tags = entity_tags(if_none_match)
        if tags is None:
            return False
        if tags == ("*",):
            return True
        etag = _only(stored, "etag")
        own = None if etag is None else opaque_tag(etag)
        return own is not None and own in tags  # weak comparison: opaque-tags only
    if if_modified_since is not None:
        # A two-digit year (RFC 850) is placed against the time the stored response arrived.
        since = parse_http_date(if_modified_since, now=received)
        modified = _modified_at(tuple(stored), received)
        return since is not None and modified is not None and modified <= since
    return False


def not_modified_headers(stored: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The header pairs of a 304 for a stored response: those of ``NOT_MODIFIED_FIELDS``, in
    their order, repeats kept.

    >>> not_modified_headers((("Content-Type", "text/plain"), ("ETag", '"a"'), ("Vary", "A")))
    (('ETag', '"a"'), ('Vary', 'A'))
    """
    return tuple((k, v) for k, v in stored if k.lower() in NOT_MODIFIED_FIELDS)


def not_modified_snapshot(stored: Snapshot) -> Snapshot:
    """The 304 a face answers for ``stored``: its ``not_modified_headers``, no body, no redirect
    history, and its times (so that its ``Age`` is the stored response's).

    >>> s = Snapshot(200, "OK", (("ETag", '"a"'), ("Content-Type", "text/plain")), "u", "GET", b"x")
    >>> r = not_modified_snapshot(s)
    >>> r.status, r.headers, r.body
    (304, (('ETag', '"a"'),), b'')
    """
    return replace(
        stored,
        status=304,
        reason="Not Modified",
        headers=not_modified_headers(stored.headers),
        body=b"",
        history=(),
    )


def _modified_at(stored: tuple[tuple[str, str], ...], received: float | None) -> float | None:
    """When the stored response was last modified, for ``If-Modified-Since``: its
    ``Last-Modified``; without one its ``Date``; without either, when it was ``received`` (RFC
    9111 §4.3.2). None when the field that decides is repeated or not a date.

    >>> _modified_at((("Date", "Wed, 21 Oct 2015 07:28:00 GMT"),), None)
    1445412480.0
    >>> _modified_at((("Last-Modified", "0"), ("Date", "Wed, 21 Oct 2015 07:28:00 GMT")), 5.0)
    """
    for name in ("last-modified", "date"):
        if any(k.lower() == name for k, _ in stored):
            raw = _only(stored, name)
            return None if raw is None else parse_http_date(raw, now=received)
    return received


def _only(stored: Iterable[tuple[str, str]], name: str) -> str | None:
    """The value of a field that must appear once; None when absent or repeated."""
    found = None
    for k, v in stored:
        if k.lower() == name:
            if found is not None:
                return None  # two ETags (two dates): which one the client holds is unknown
            found = v
    return found


class Validators(NamedTuple):
    """A request's own ``If-None-Match`` and ``If-Modified-Since`` (lines joined with ", ", None
    when absent): what a cache evaluates for it against a stored response."""

    if_none_match: str | None
    if_modified_since: str | None


def validators_of(header: Callable[[str], str | None]) -> Validators:
    """The ``Validators`` of the request whose fields ``header`` looks up (lower-case names)."""
    return Validators(header("if-none-match"), header("if-modified-since"))


def answers_not_modified(stored: Snapshot, validators: Validators) -> bool:
    """Whether a GET or HEAD with these validators is answered 304 from the fresh ``stored``
    response: only a 2xx (RFC 9110 §13.2.1: a precondition is ignored when the response would
    not be one), not modified for them (``not_modified``, dated by its headers, else by when it
    was received). False: the full stored response answers.

    >>> s, v = Snapshot(200, "OK", (("ETag", '"a"'),), "u", "GET", b"x"), Validators
    >>> answers_not_modified(s, v('"a"', None)), answers_not_modified(s, v('"b"', None))
    (True, False)
    >>> answers_not_modified(replace(s, status=404), v('"a"', None))
    False
    """
    return 200 <= stored.status < 300 and not_modified(
        stored.headers, *validators, stored.response_time or None
    )
