"""Range requests a cache answers from a complete stored response (RFC 9110 §14, §13.1.5; RFC 9111
§3.3-3.4).

Rules of this module (pure functions, standard library only, no asyncio; a face hands over the
request's ``Range`` and ``If-Range`` as a ``RangeRequest`` and gets a decision back):

* Only a GET is ranged (``RANGED_METHOD``, RFC 9110 §14.2: "GET is the only method for which
  range handling is defined"); a HEAD with ``Range`` is a plain HEAD, its ``Range`` ignored.
* Only a stored 200 (§14.2: Range is evaluated "only if the result in absence of the Range header
  field would be a 200 (OK) response") of a known length, without a content coding, is ranged
  (``rangeable``): the client face keeps a body decoded and aiohttp.web codes one as it is sent,
  so the offsets of a coded representation are not those of the stored bytes. Another stored
  response is not the faces' to range: they send the request to the origin.
* ``evaluate`` decides, for a complete representation of a known length (the transition table):

  ============================================  ===========================================
  the request                                   the answer
  ============================================  ===========================================
  no ``Range`` (``If-Range`` alone, §13.1.5)     ``Whole("no range")``: the stored 200
  ``If-Range`` that does not hold (§13.1.5)      ``Whole("if-range")``
  a unit other than ``bytes``, bad syntax        ``Whole("invalid range")`` (§14.2: ignored)
  more than one range                            ``Whole("multiple ranges")`` (below)
  one range that is satisfiable (§14.1.2)        ``Partial``: a 206 with ``Content-Range``
  one range that is not (§14.1.2)                ``Unsatisfiable``: a 416, ``bytes */len``
  ============================================  ===========================================

* More than one range answers the whole 200, never ``multipart/byteranges``: a server may ignore
  ``Range`` (§14.2), Varnish does the same, and a set of many small or overlapping ranges is
  a known way to make a server do much work for little (§14.2 lets a server ignore or reject
  such sets, §17.15); a client that asks for several ranges accepts the whole.
* ``If-Range`` (§13.1.5) holds for an entity-tag that matches the stored ``ETag`` by the strong
  comparison (§8.8.3.2: neither weak), or for an HTTP-date equal to the stored ``Last-Modified``
  when that is strong for a cache (§8.8.2.2: the stored response has a ``Date`` at least 60
  seconds after it). Every doubt (two ETags, a malformed value) is "does not hold": the whole
  200 is a right answer to any ``If-Range`` request, a 206 only to the right one.
* ``range_answer`` is what both faces ask of a fresh stored response for a GET or HEAD with
  ``Range`` or ``If-Range``: None when the stored response is not to be ranged (the origin
  answers), else the snapshot to replay. ``If-None-Match`` / ``If-Modified-Since`` are
  evaluated before the range (§13.2.2: a 304 first); a HEAD's ``Range`` and an ``If-Range``
  without ``Range`` are ignored, so those are answered as a conditional request is (the stored
  response, or a 304).
* The answers are snapshots (``answer_snapshot``): a 206 carries the stored headers with its own
  ``Content-Range`` and ``Content-Length``, and a slice of the stored body, or for a streamed body
  (``Snapshot.stream``) a ``RangeOfBody``: a view whose readers read only the range. A 416
  carries ``Content-Range: bytes */len`` and the stored ``Date``, nothing of the representation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

from .conditional import Validators, answers_not_modified, not_modified_snapshot, opaque_tag
from .dates import parse_http_date
from .snapshot import BodyReader, Headers, Snapshot, StreamedBody

__all__ = [
    "RANGED_METHOD",
    "ByteRangeSpec",
    "Partial",
    "RangeAnswer",
    "RangeOfBody",
    "RangeRequest",
    "Unsatisfiable",
    "Whole",
    "answer_snapshot",
    "evaluate",
    "if_range_holds",
    "parse_range",
    "range_answer",
    "range_request_of",
    "rangeable",
]

RANGED_METHOD = "GET"
# What a 206 or a 416 from storage computes anew; the rest of a 206's fields are the stored 200's
# (RFC 9110 §15.3.7: what a 200 would carry of Date, Cache-Control, ETag, Expires, Vary...).
_REPLACED = frozenset({"content-length", "content-range"})
_DIGITS = frozenset("0123456789")
# A cache compares a presented Last-Modified with its entry's (RFC 9110 §8.8.2.2, third case).
_STRONG_DATE_GAP = 60.0


class RangeRequest(NamedTuple):
    """A request's own ``Range`` and ``If-Range`` (lines joined with ", ", None when absent)."""

    range: str | None
    if_range: str | None


def range_request_of(header: Callable[[str], str | None]) -> RangeRequest:
    """The ``RangeRequest`` of the request whose fields ``header`` looks up (lower-case names)."""
    return RangeRequest(header("range"), header("if-range"))


class ByteRangeSpec(NamedTuple):
    """One range of a ``Range`` field (RFC 9110 §14.1.1): ``first``-``last`` (``last`` None:
    to the end), or a suffix of ``last`` bytes (``first`` None)."""

    first: int | None
    last: int | None


@dataclass(frozen=True, slots=True)
class Whole:
    """The whole stored 200 answers (the module's table says when)."""

    reason: Literal["no range", "if-range", "invalid range", "multiple ranges"]


@dataclass(frozen=True, slots=True)
class Partial:
    """A 206: bytes ``first`` to ``last`` (inclusive) of a representation of ``length`` bytes."""

    first: int
    last: int
    length: int

    @property
    def content_range(self) -> str:
        """``Content-Range`` (RFC 9110 §14.4)."""
        return f"bytes {self.first}-{self.last}/{self.length}"


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    """A 416 for a representation of ``length`` bytes (RFC 9110 §15.5.17)."""

    length: int


RangeAnswer = Whole | Partial | Unsatisfiable


def _number(text: str) -> int | None:
    """``1*DIGIT`` as an int; None for anything else (a sign, spaces, nothing)."""
    return int(text) if text and _DIGITS.issuperset(text) else None


def parse_range(value: str) -> tuple[ByteRangeSpec, ...] | None:
    """The ranges of a ``Range`` field value in order (RFC 9110 §14.1.1, §14.2: ``bytes=`` then
    a list of ``first-last``, ``first-`` and ``-suffix``); None when it is not that grammar or
    names another unit (the field is then ignored). Units match in any case (§14.1).

    >>> parse_range("bytes=0-1, 5-, -3")
    (ByteRangeSpec(first=0, last=1), ByteRangeSpec(first=5, last=None), ByteRangeSpec(first=None, last=3))
    >>> parse_range("bytes=2-1"), parse_range("items=0-1"), parse_range("bytes=1"), parse_range("bytes=-")
    (None, None, None, None)
    """  # noqa: E501
    unit, eq, rest = value.strip(" \t").partition("=")
    if not eq or unit.lower() != "bytes":
        return None
    specs: list[ByteRangeSpec] = []
    for member in rest.split(","):
        member = member.strip(" \t")
        if not member:
            continue  # empty list members are allowed (RFC 9110 §5.6.1)
        first_text, dash, last_text = member.partition("-")
        if not dash:
            return None
        first, last = _number(first_text), _number(last_text)
        if first_text == "":  # a suffix: "-" 1*DIGIT
            if last is None:
                return None
        elif first is None or (last_text != "" and (last is None or last < first)):
            return None  # §14.1.1: last-pos below first-pos makes the range invalid
        specs.append(ByteRangeSpec(first, last))
    return tuple(specs) if specs else None


def if_range_holds(if_range: str, stored: Headers) -> bool:
    """Whether an ``If-Range`` value holds for a stored response with these header pairs (module
    rules: a strong ETag match, or a strong ``Last-Modified`` equal to the date).

    >>> stored = (("ETag", '"a"'), ("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ...           ("Date", "Wed, 21 Oct 2015 08:28:00 GMT"))
    >>> [if_range_holds(tag, stored) for tag in ('"a"', 'W/"a"', '"b"')]
    [True, False, False]
    >>> if_range_holds("Wed, 21 Oct 2015 07:28:00 GMT", stored)
    True
    """
    value = if_range.strip(" \t")
    fields: dict[str, list[str]] = {}
    for name, field_value in stored:
        fields.setdefault(name.lower(), []).append(field_value.strip(" \t"))
    if value.startswith(('"', "W/")):  # an entity-tag: the strong comparison (§8.8.3.2)
        etags = fields.get("etag", [])
        if len(etags) != 1 or not (value.startswith('"') and etags[0].startswith('"')):
            return False  # a weak tag never matches strongly; two stored ETags: which one?
        tag = opaque_tag(value)
        return tag is not None and tag == opaque_tag(etags[0])
    modified, dates = fields.get("last-modified", []), fields.get("date", [])
    if len(modified) != 1 or len(dates) != 1:
        return False
    sent = parse_http_date(dates[0], now=None)
    if sent is None:
        return False
    # A two-digit year (RFC 850) is placed against when the stored response was sent.
    asked, at = parse_http_date(value, now=sent), parse_http_date(modified[0], now=sent)
    if asked is None or at is None:
        return False
    return asked == at and sent - at >= _STRONG_DATE_GAP


def evaluate(asked: RangeRequest, stored: Headers, length: int) -> RangeAnswer:
    """What a GET with ``asked`` gets of a complete stored 200 with these header pairs and a
    body of ``length`` bytes (the module's table).

    >>> evaluate(RangeRequest("bytes=-3", None), (), 10)
    Partial(first=7, last=9, length=10)
    >>> evaluate(RangeRequest("bytes=10-", None), (), 10)
    Unsatisfiable(length=10)
    >>> evaluate(RangeRequest("bytes=0-1,4-5", None), (), 10)
    Whole(reason='multiple ranges')
    """
    if asked.range is None:
        return Whole("no range")
    if asked.if_range is not None and not if_range_holds(asked.if_range, stored):
        return Whole("if-range")
    specs = parse_range(asked.range)
    if specs is None:
        return Whole("invalid range")
    if len(specs) > 1:
        return Whole("multiple ranges")
    first, last = specs[0]
    if first is None:  # a suffix (§14.1.2): the last bytes, all of them if fewer
        assert last is not None
        if last == 0:
            return Unsatisfiable(length)  # §14.1.2: a suffix of zero bytes is unsatisfiable
        if length == 0:
            return Whole("invalid range")  # nothing to take the bytes from: the empty 200
        return Partial(max(0, length - last), length - 1, length)
    if first >= length:
        return Unsatisfiable(length)  # §14.1.2: no byte of it is in the representation
    return Partial(first, length - 1 if last is None else min(last, length - 1), length)


def rangeable(stored: Snapshot) -> int | None:
    """The length of a stored response's body when a GET may be ranged against it (module rules:
    a 200 of a known length, without a content coding); None otherwise.

    >>> rangeable(Snapshot(200, "OK", (), "u", "GET", b"abc"))
    3
    >>> rangeable(Snapshot(200, "OK", (("Content-Encoding", "gzip"),), "u", "GET", b"abc"))
    >>> rangeable(Snapshot(404, "Not Found", (), "u", "GET", b"abc"))
    """
    if stored.status != 200:
        return None
    coding = stored.header("Content-Encoding")
    if coding is not None and coding.strip(" \t").lower() not in ("", "identity"):
        return None
    return len(stored.body) if stored.stream is None else stored.stream.length


def answer_snapshot(stored: Snapshot, answer: RangeAnswer) -> Snapshot:
    """The snapshot a face replays for ``answer`` (module rules): ``stored`` itself for the whole
    200, else a 206 or a 416 with the stored times (its ``Age`` is the stored response's).

    >>> s = Snapshot(200, "OK", (("Content-Length", "10"), ("ETag", '"a"')), "u", "GET",
    ...              b"0123456789")
    >>> p = answer_snapshot(s, Partial(7, 9, 10))
    >>> p.status, p.headers, p.body
    (206, (('ETag', '"a"'), ('Content-Range', 'bytes 7-9/10'), ('Content-Length', '3')), b'789')
    >>> answer_snapshot(s, Unsatisfiable(10)).headers
    (('Content-Range', 'bytes */10'), ('Content-Length', '0'))
    """
    if isinstance(answer, Whole):
        return stored
    if isinstance(answer, Unsatisfiable):
        date = tuple((k, v) for k, v in stored.headers if k.lower() == "date")
        return replace(
            stored,
            status=416,
            reason="Range Not Satisfiable",
            headers=(*date, ("Content-Range", f"bytes */{answer.length}"), ("Content-Length", "0")),
            body=b"",
            stream=None,
        )
    size = answer.last - answer.first + 1
    headers = tuple((k, v) for k, v in stored.headers if k.lower() not in _REPLACED)
    source = stored.stream
    return replace(
        stored,
        status=206,
        reason="Partial Content",
        headers=(*headers, ("Content-Range", answer.content_range), ("Content-Length", str(size))),
        body=stored.body[answer.first : answer.last + 1] if source is None else b"",
        stream=None if source is None else RangeOfBody(source, answer.first, size),
    )


class RangeOfBody:
    """A ``StreamedBody`` over ``size`` bytes of another from ``start`` on: the body of a 206
    answered from a streamed stored body. Each reader reads only its part of the range, through
    the stored body's own reader (never the whole body)."""

    __slots__ = ("_size", "_source", "_start")

    def __init__(self, source: StreamedBody, start: int, size: int) -> None:
        self._source = source
        self._start = start
        self._size = size

    @property
    def length(self) -> int:
        return self._size

    def reader(self, start: int = 0, end: int | None = None) -> BodyReader:
        end = self._size if end is None else min(end, self._size)
        return self._source.reader(self._start + start, self._start + max(start, end))

    async def complete(self) -> int:
        await self._source.complete()
        return self._size

    def __repr__(self) -> str:
        return f"<RangeOfBody {self._start}+{self._size} of {self._source!r}>"


def range_answer(
    stored: Snapshot, method: str, validators: Validators, asked: RangeRequest
) -> Snapshot | None:
    """What a fresh ``stored`` response answers a GET or HEAD with ``Range`` or ``If-Range``
    (module rules): the snapshot to replay (a 304, a 206, a 416, or ``stored`` itself), or None
    when it is not to be ranged (the face sends the request to the origin).

    >>> s = Snapshot(200, "OK", (("ETag", '"a"'),), "u", "GET", b"0123")
    >>> none = Validators(None, None)
    >>> range_answer(s, "GET", none, RangeRequest("bytes=1-2", None)).body
    b'12'
    >>> range_answer(s, "GET", Validators('"a"', None), RangeRequest("bytes=1-2", None)).status
    304
    >>> range_answer(s, "HEAD", none, RangeRequest("bytes=1-2", None)) is s
    True
    >>> range_answer(replace(s, status=404), "GET", none, RangeRequest("bytes=1-2", None))
    """
    ignored = method != RANGED_METHOD or asked.range is None  # §14.2, §13.1.5
    length = rangeable(stored)
    if length is None and not ignored:
        return None
    if answers_not_modified(stored, validators):
        return not_modified_snapshot(stored)
    if ignored or length is None:
        return stored
    return answer_snapshot(stored, evaluate(asked, stored.headers, length))
