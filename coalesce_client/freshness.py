"""HTTP freshness arithmetic (RFC 9111 §4.2): HTTP-dates, Cache-Control, lifetimes and ages.

Rules of this module:

* Pure functions over plain values. A header is given as the string received; a field sent on
  several lines is given as one value, its lines joined with ", " (RFC 9110 §5.3), except
  ``Cache-Control``, whose lines may also be given one by one. Times are wall-clock seconds since
  the epoch, UTC (``time.time()``). Nothing here reads a clock unless a caller leaves ``now`` out
  of ``parse_http_date``, and nothing imports a framework.
* Bad input never raises. A value that is not an HTTP-date is ``None``: an invalid ``Expires``
  is already stale (RFC 9111 §5.3: "A cache recipient MUST interpret invalid date formats,
  especially the value "0", as representing a time in the past"). An invalid or conflicting
  ``max-age`` or ``s-maxage`` is 0, so the response is stale (§4.2.1: "Caches are encouraged to
  consider responses that have invalid freshness information (e.g., a max-age directive with
  non-integer content) to be stale"). Any other unreadable directive takes its most restrictive
  meaning: it may cost a request to the origin, and never serves what the origin or the client
  did not allow.
* Delta-seconds are whole ASCII digits, read as an ``int`` capped at 2**31 (§1.2.2: a value
  greater than the greatest integer the cache can represent "MUST" be taken as 2147483648), so a
  huge value neither raises nor overflows later.
* A response is fresh while its lifetime is greater than its age, not equal (§4.2:
  ``response_is_fresh = (freshness_lifetime > current_age)``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DELTA_SECONDS_MAX",
    "HEURISTICALLY_CACHEABLE",
    "RequestDirectives",
    "ResponseDirectives",
    "current_age",
    "freshness_lifetime",
    "heuristic_lifetime",
    "is_fresh",
    "parse_http_date",
    "parse_request_cache_control",
    "parse_response_cache_control",
]

DELTA_SECONDS_MAX = 2**31  # RFC 9111 §1.2.2: "represents infinity (over 68 years)"

# RFC 9110 §15.1: the status codes defined as heuristically cacheable.
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})

_HEURISTIC_FRACTION = 0.1  # RFC 9111 §4.2.2: "A typical setting of this fraction might be 10%."


# -- HTTP-date (RFC 9110 §5.6.7) ------------------------------------------------------------------

# Lower case: RFC 9111 §4.2 says that "although all date formats are specified to be
# case-sensitive, a cache recipient SHOULD match the field value case-insensitively".
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAY_NAMES = frozenset({"mon", "tue", "wed", "thu", "fri", "sat", "sun"})
_DAY_NAMES_L = frozenset(
    {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
)
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_FIFTY_YEARS = 50


def parse_http_date(value: str, *, now: float | None = None) -> float | None:
    """An HTTP-date as seconds since the epoch (UTC), or None when ``value`` is not one.

    The three forms of RFC 9110 §5.6.7 ("A recipient that parses a timestamp value in an HTTP
    field MUST accept all three HTTP-date formats"), exactly as its grammar writes them, and
    nothing else: no other zone than GMT (RFC 9111 §4.2: a cache "SHOULD consider a date with a
    zone abbreviation other than "GMT" to be invalid"), no numeric offsets, no missing comma,
    no extra or missing spaces, no one-digit hours, no impossible days. Letters match in any
    case (RFC 9111 §4.2).

    The day name must be one of the seven, but need not be the date's own weekday. RFC 9110
    gives day-name the meaning of RFC 5322 §3.3, where matching the date is the sender's duty,
    and §5.6.7 encourages recipients "to be robust in parsing timestamps"; the date alone is
    unambiguous, and refusing it would turn a usable ``Expires`` into "already stale".

    A leap second (``23:59:60``, allowed by the grammar) reads as ``23:59:59``: RFC 9111 §4.2
    asks for "the nearest time equal to or earlier than the received value". The two-digit year
    of the RFC 850 form is in the century of ``now`` (default: the clock), unless that "appears
    to be more than 50 years in the future", then it is "the most recent year in the past that
    had the same last two digits" (RFC 9110 §5.6.7).

    >>> parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")
    784111777.0
    >>> parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now=1_700_000_000)
    784111777.0
    >>> parse_http_date("Sun Nov  6 08:49:37 1994")
    784111777.0
    >>> parse_http_date("0") is None, parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC") is None
    (True, True)
    """
    # Whitespace around a field value is not part of it (RFC 9110 §5.5); inside, it must be exact.
    value = value.strip(" \t")
    if not value.isascii():  # and so str.isdigit() below accepts 0-9 only
        return None
    v = value.lower()
    n = len(v)
    if n == 29:  # IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        if v[3:5] != ", " or v[7] != " " or v[11] != " " or v[16] != " " or v[25:] != " gmt":
            return None
        if v[:3] not in _DAY_NAMES:
            return None
        return _timestamp(v[12:16], v[8:11], v[5:7], v[17:25])
    if n == 24:  # asctime-date: "Sun Nov  6 08:49:37 1994" (day: 2DIGIT or SP DIGIT)
        if v[3] != " " or v[7] != " " or v[10] != " " or v[19] != " " or v[:3] not in _DAY_NAMES:
            return None
        day = v[8:10]
        if day[0] == " ":
            day = "0" + day[1]  # a space then one digit; "  " stays invalid below
        return _timestamp(v[20:24], v[4:7], day, v[11:19])
    # rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT": a full day name, then 24 fixed characters.
    comma = n - 24
    if comma < 6 or v[comma : comma + 2] != ", " or v[:comma] not in _DAY_NAMES_L:
        return None
    rest = v[comma + 2 :]  # "06-nov-94 08:49:37 gmt"
    if rest[2] != "-" or rest[6] != "-" or rest[9] != " " or rest[18:] != " gmt":
        return None
    yy = rest[7:9]
    if not yy.isdigit():
        return None
    at = _timestamp("2000", rest[3:6], rest[:2], rest[10:18])  # checks all but the year
    if at is None:
        return None
    return _rfc850_year(int(yy), rest, time.time() if now is None else now)


def _rfc850_year(yy: int, rest: str, now: float) -> float | None:
    # RFC 9110 §5.6.7: this century's year, unless that is more than 50 years after now. The
    # comparison is of whole timestamps, as the rule says "a timestamp that appears to be".
    clock = time.gmtime(now)
    year = clock.tm_year - clock.tm_year % 100 + yy
    month, day = _MONTHS[rest[3:6]], int(rest[:2])
    hms = (int(rest[10:12]), int(rest[13:15]), int(rest[16:18]))
    limit = (clock.tm_year + _FIFTY_YEARS, clock.tm_mon, clock.tm_mday)
    if (year, month, day, *hms) > (*limit, clock.tm_hour, clock.tm_min, clock.tm_sec):
        year -= 100
    return _timestamp(f"{year:04d}", rest[3:6], rest[:2], rest[10:18])  # Feb 29 checked again


def _timestamp(year: str, month: str, day: str, hms: str) -> float | None:
    """Seconds since the epoch of a checked date; every part as the grammar's digits."""
    mon = _MONTHS.get(month)
    if mon is None or hms[2] != ":" or hms[5] != ":":
        return None
    hh, mm, ss = hms[:2], hms[3:5], hms[6:]
    if not (year + day + hh + mm + ss).isdigit():
        return None  # ASCII checked by the caller: "+1", " 1" and "1." are not digits
    y, d, h, m, s = int(year), int(day), int(hh), int(mm), int(ss)
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if not 1 <= d <= _MONTH_DAYS[mon - 1] + (mon == 2 and leap) or h > 23 or m > 59:
        return None
    if s > 59:
        if s != 60 or h != 23 or m != 59:
            return None
        s = 59  # a leap second, read as the second before it (RFC 9111 §4.2)
    return float(_days_from_civil(y, mon, d) * 86400 + h * 3600 + m * 60 + s)


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Days since 1970-01-01 in the proleptic Gregorian calendar, for any year (no datetime limits).
    y -= m <= 2
    return 365 * y + y // 4 - y // 100 + y // 400 + (153 * ((m + 9) % 12) + 2) // 5 + d - 719469


# -- Cache-Control (RFC 9111 §5.2) ----------------------------------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2: 1*tchar


@dataclass(frozen=True, slots=True)
class ResponseDirectives:
    """The response directives of ``Cache-Control`` (RFC 9111 §5.2.2, RFC 5861).

    A delta-seconds field is None when the directive is absent. ``no_cache`` and ``private`` are
    True for both their forms; ``no_cache_fields`` and ``private_fields`` hold the lower-cased
    field names of the qualified form, and are empty for the unqualified one (which wins when
    both are sent). RFC 9111 §5.2.2.4 notes that caches commonly treat the qualified form as the
    unqualified one, which is what reading ``no_cache`` or ``private`` alone does.

    >>> parse_response_cache_control('public, max-age=60, no-cache="Set-Cookie"').max_age
    60
    """

    max_age: int | None = None
    s_maxage: int | None = None
    no_cache: bool = False
    no_cache_fields: frozenset[str] = frozenset()
    no_store: bool = False
    private: bool = False
    private_fields: frozenset[str] = frozenset()
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    no_transform: bool = False
    immutable: bool = False
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    """The request directives of ``Cache-Control`` (RFC 9111 §5.2.1).

    ``max_stale`` is ``DELTA_SECONDS_MAX`` for a ``max-stale`` without a value ("the client will
    accept a stale response of any age", §5.2.1.2), and None when the client accepts none.

    >>> rd = parse_request_cache_control("max-stale, min-fresh=5")
    >>> rd.max_stale == DELTA_SECONDS_MAX, rd.min_fresh, rd.max_age
    (True, 5, None)
    """

    max_age: int | None = None
    max_stale: int | None = None
    min_fresh: int | None = None
    no_cache: bool = False
    no_store: bool = False
    only_if_cached: bool = False
    no_transform: bool = False


# A directive's occurrences: (argument, well formed). The argument is None when none was given.
_Occurrences = list[tuple[str | None, bool]]
_INVALID = -1  # from _one_delta: present, but unreadable or sent with different values


def parse_response_cache_control(values: str | Iterable[str] | None) -> ResponseDirectives:
    """The response directives of one ``Cache-Control`` value, or of several field lines.

    Names match in any case, arguments may be tokens or quoted strings (RFC 9111 §5.2: recipients
    "ought to accept both forms"), and what sits inside a quoted string is never a directive.
    Unknown directives are ignored (§5.2.3: "A cache MUST ignore unrecognized cache
    directives"). A directive sent more than once with the same value counts once; with
    different values, or a value that is not delta-seconds (``+5``, ``5.0``, ``''``, an
    Arabic-Indic five, ``'5'``, a space around ``=``), it is unreadable:

    * ``max-age`` and ``s-maxage`` are then 0, so the response is stale (RFC 9111 §4.2.1: "When
      there is more than one value present for a given directive ... the response should be
      considered stale"; invalid freshness information: "consider ... to be stale").
    * ``stale-while-revalidate`` and ``stale-if-error`` are then absent: no stale serving.

    A directive that takes no argument still counts when given one if it restricts (``no-store``,
    ``must-revalidate``...); ``public``, ``immutable`` and ``must-understand``, which relax, count
    only without one (§5.2: "no argument is defined (nor allowed)").

    >>> cc = parse_response_cache_control(['max-age=60, s-maxage="30"', "Must-Revalidate"])
    >>> cc.max_age, cc.s_maxage, cc.must_revalidate
    (60, 30, True)
    >>> parse_response_cache_control("max-age=+60").max_age
    0
    """
    d = _directives(values)
    if not d:
        return _NO_RESPONSE_DIRECTIVES
    max_age = _one_delta(d.get("max-age"))
    s_maxage = _one_delta(d.get("s-maxage"))
    swr = _one_delta(d.get("stale-while-revalidate"))
    sie = _one_delta(d.get("stale-if-error"))
    return ResponseDirectives(
        max_age=0 if max_age == _INVALID else max_age,  # §4.2.1: invalid = stale
        s_maxage=0 if s_maxage == _INVALID else s_maxage,
        no_cache="no-cache" in d,
        no_cache_fields=_field_names(d.get("no-cache")),
        no_store="no-store" in d,
        private="private" in d,
        private_fields=_field_names(d.get("private")),
        public=_bare(d.get("public")),
        must_revalidate="must-revalidate" in d,
        proxy_revalidate="proxy-revalidate" in d,
        must_understand=_bare(d.get("must-understand")),
        no_transform="no-transform" in d,
        immutable=_bare(d.get("immutable")),
        stale_while_revalidate=None if swr == _INVALID else swr,  # no stale window granted
        stale_if_error=None if sie == _INVALID else sie,
    )


def parse_request_cache_control(values: str | Iterable[str] | None) -> RequestDirectives:
    """The request directives of one ``Cache-Control`` value, or of several field lines.

    Parsed as the response directives are. A directive whose value is unreadable or sent twice
    with different values takes its most restrictive meaning, so that the client never gets a
    stored response it might not have accepted (§4.2.1: "the most restrictive directive should
    be honored"): ``max-age`` 0, ``min-fresh`` ``DELTA_SECONDS_MAX`` (nothing stored is fresh
    enough), ``max-stale`` absent (nothing stale is accepted). All three then send the request
    to the origin.

    >>> parse_request_cache_control("no-cache, max-age=5.5").max_age
    0
    """
    d = _directives(values)
    if not d:
        return _NO_REQUEST_DIRECTIVES
    max_age = _one_delta(d.get("max-age"))
    min_fresh = _one_delta(d.get("min-fresh"))
    return RequestDirectives(
        max_age=0 if max_age == _INVALID else max_age,
        max_stale=_max_stale(d.get("max-stale")),
        min_fresh=DELTA_SECONDS_MAX if min_fresh == _INVALID else min_fresh,
        no_cache="no-cache" in d,
        no_store="no-store" in d,
        only_if_cached="only-if-cached" in d,
        no_transform="no-transform" in d,
    )


_NO_RESPONSE_DIRECTIVES = ResponseDirectives()
_NO_REQUEST_DIRECTIVES = RequestDirectives()


def _directives(values: str | Iterable[str] | None) -> dict[str, _Occurrences]:
    """Every directive of the field lines, by lower-cased name, in the order sent."""
    out: dict[str, _Occurrences] = {}
    if values is None:
        return out
    # Line by line: an unterminated quote on one line does not swallow the next line.
    for line in (values,) if isinstance(values, str) else values:
        for member in _members(line):
            member = member.strip(" \t")
            if not member:
                continue  # RFC 9110 §5.6.1: empty list elements are allowed and mean nothing
            name, eq, arg = member.partition("=")
            bare_name = name.rstrip(" \t")
            if not _TOKEN.fullmatch(bare_name):
                continue  # not a directive at all
            if not eq:
                out.setdefault(bare_name.lower(), []).append((None, True))
                continue
            # cache-directive = token [ "=" ( token / quoted-string ) ]: no space around "=".
            ok = bare_name == name and arg[:1] not in (" ", "\t")
            if arg.startswith('"'):
                unquoted = _unquote(arg)
                ok = ok and unquoted is not None
                value = arg if unquoted is None else unquoted
            else:
                ok = ok and _TOKEN.fullmatch(arg) is not None
                value = arg
            out.setdefault(bare_name.lower(), []).append((value, ok))
    return out


def _members(line: str) -> list[str]:
    """The comma-separated members of a line; a comma inside a quoted string does not split."""
    if '"' not in line:
        return line.split(",")
    members: list[str] = []
    start, i, n, quoted = 0, 0, len(line), False
    while i < n:
        c = line[i]
        if quoted:
            if c == "\\":
                i += 1  # quoted-pair: the next character is literal
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ",":
            members.append(line[start:i])
            start = i + 1
        i += 1
    members.append(line[start:])
    return members


def _unquote(arg: str) -> str | None:
    """The content of a quoted-string that is the whole of ``arg``, or None (RFC 9110 §5.6.4)."""
    chars: list[str] = []
    i, n = 1, len(arg)
    while i < n:
        c = arg[i]
        if c == "\\" and i + 1 < n:
            chars.append(arg[i + 1])
            i += 2
        elif c == '"':
            return "".join(chars) if i == n - 1 else None  # nothing may follow the close
        else:
            chars.append(c)
            i += 1
    return None  # unterminated


def _delta_seconds(arg: str | None) -> int | None:
    """``1*DIGIT`` (RFC 9111 §1.2.2) as an int capped at 2**31, or None when it is not one."""
    if not arg or not (arg.isascii() and arg.isdigit()):
        return None  # isascii: Arabic-Indic or fullwidth digits pass isdigit
    digits = arg.lstrip("0")
    if len(digits) > 10:  # beyond 2**31; and int() would refuse a string of 4,301+ digits
        return DELTA_SECONDS_MAX
    return min(int(digits or "0"), DELTA_SECONDS_MAX)


def _one_delta(occurrences: _Occurrences | None) -> int | None:
    """The delta-seconds of a directive: None when absent, ``_INVALID`` when not one value."""
    if occurrences is None:
        return None
    seen = {_delta_seconds(arg) if ok else None for arg, ok in occurrences}
    if len(seen) != 1 or None in seen:
        return _INVALID  # unreadable, or several different values (RFC 9111 §4.2.1)
    return seen.pop()


def _max_stale(occurrences: _Occurrences | None) -> int | None:
    if occurrences is None:
        return None
    seen = {
        (DELTA_SECONDS_MAX if arg is None else _delta_seconds(arg)) if ok else None
        for arg, ok in occurrences
    }
    if len(seen) != 1 or None in seen:
        return None  # unreadable or conflicting: accept nothing stale (the restrictive reading)
    return seen.pop()


def _field_names(occurrences: _Occurrences | None) -> frozenset[str]:
    """The field names of a qualified ``no-cache`` or ``private``; empty when unqualified."""
    if occurrences is None:
        return frozenset()
    names: set[str] = set()
    for arg, ok in occurrences:
        listed = {f.strip(" \t").lower() for f in arg.split(",")} - {""} if arg and ok else set()
        if not listed:
            return frozenset()  # the unqualified form (or an unreadable list) applies to all
        names |= listed
    return frozenset(names)


def _bare(occurrences: _Occurrences | None) -> bool:
    """A relaxing directive counts only as defined: without an argument."""
    return occurrences is not None and all(arg is None for arg, _ in occurrences)


# -- lifetime and age (RFC 9111 §4.2) --------------------------------------------------------------


def freshness_lifetime(
    directives: ResponseDirectives,
    *,
    expires: str | None,
    date: float | None,
    response_time: float,
    shared: bool = False,
) -> float | None:
    """The origin's explicit freshness lifetime in seconds (RFC 9111 §4.2.1), or None.

    The first of: ``s-maxage`` in a shared cache; ``max-age``; ``Expires`` minus ``Date``. None
    when the response has none of them (a heuristic lifetime may then apply). ``expires`` is the
    ``Expires`` value as received (lines joined with ", ", so two lines read as invalid, which
    §4.2.1 allows: "the response should be considered stale"); ``date`` is the parsed ``Date``.

    * An invalid ``Expires`` gives 0: already stale (§5.3 "MUST interpret invalid date formats,
      especially the value "0", as representing a time in the past").
    * Without a valid ``Date``, ``response_time`` stands for it (RFC 9110 §6.6.1: a recipient
      "MUST record the time it was received" when there is none, and "MAY replace" an invalid
      one with it).
    * An ``Expires`` before ``Date`` gives 0; one beyond 2**31 seconds is capped (§1.2.2).

    >>> cc = parse_response_cache_control("max-age=60, s-maxage=600")
    >>> freshness_lifetime(cc, expires=None, date=None, response_time=0.0)
    60.0
    >>> freshness_lifetime(cc, expires=None, date=None, response_time=0.0, shared=True)
    600.0
    >>> freshness_lifetime(ResponseDirectives(), expires="0", date=None, response_time=0.0)
    0.0
    """
    if shared and directives.s_maxage is not None:
        return float(directives.s_maxage)
    if directives.max_age is not None:
        return float(directives.max_age)  # §5.3: with max-age, Expires "MUST" be ignored
    if expires is None:
        return None
    # The two-digit year of an RFC 850 Expires is read against the time the response arrived,
    # so that the same response always gets the same lifetime.
    at = parse_http_date(expires, now=response_time)
    if at is None:
        return 0.0
    base = response_time if date is None else date
    return float(min(max(0.0, at - base), DELTA_SECONDS_MAX))


def heuristic_lifetime(
    status: int,
    *,
    date: float | None,
    last_modified: float | None,
    heuristic_max: float,
    public: bool = False,
) -> float | None:
    """A heuristic freshness lifetime (RFC 9111 §4.2.2): 10% of ``Date`` minus ``Last-Modified``.

    For use only when the response has no explicit lifetime ("A cache MUST NOT use heuristics
    to determine freshness when an explicit expiration time is present"), and only for the
    heuristically cacheable statuses of RFC 9110 §15.1, or any status marked ``public`` (§4.2.2:
    responses "marked as explicitly cacheable (e.g., with a "public" response directive)").
    At most ``heuristic_max``, never below 0 (a ``Last-Modified`` after ``Date``). None when the
    status does not qualify, or ``date`` or ``last_modified`` is unknown. ``date`` is the parsed
    ``Date``, or the time the response was received (RFC 9110 §6.6.1).

    >>> heuristic_lifetime(200, date=1_000_000.0, last_modified=0.0, heuristic_max=86_400)
    86400.0
    >>> heuristic_lifetime(200, date=1_000.0, last_modified=0.0, heuristic_max=86_400)
    100.0
    >>> heuristic_lifetime(500, date=1_000.0, last_modified=0.0, heuristic_max=86_400) is None
    True
    """
    if status not in HEURISTICALLY_CACHEABLE and not public:
        return None
    if date is None or last_modified is None:
        return None
    return float(max(0.0, min((date - last_modified) * _HEURISTIC_FRACTION, heuristic_max)))


def current_age(
    age_header: str | None,
    date: float | None,
    *,
    request_time: float,
    response_time: float,
    now: float,
) -> float:
    """The current age of a response in seconds, exactly as RFC 9111 §4.2.3 computes it.

    ``age_header`` is the ``Age`` value as received (lines joined with ", "); ``date`` the parsed
    ``Date`` (None: absent or invalid, and ``response_time`` stands for it, RFC 9110 §6.6.1);
    ``request_time`` when the request that brought the response was sent, ``response_time``
    when the response arrived, ``now`` the time of the question.

    ``Age`` is read per §5.1: of a list, the first member ("SHOULD use the first member of the
    field value, discarding subsequent ones"); a value that is not delta-seconds (``-5``,
    ``1.5``, ``abc``) is ignored ("a cache SHOULD ignore the field"), i.e. taken as 0, which
    leaves the age to the ``Date`` and the request's own delay.

    >>> current_age("10", 995.0, request_time=1000.0, response_time=1002.0, now=1010.0)
    20.0
    """
    age_value = _age_value(age_header)
    date_value = response_time if date is None else date
    apparent_age = max(0.0, response_time - date_value)
    response_delay = response_time - request_time
    corrected_age_value = age_value + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = now - response_time
    return corrected_initial_age + resident_time


def _age_value(age_header: str | None) -> int:
    if age_header is None:
        return 0
    first = age_header.split(",", 1)[0].strip(" \t")  # §5.1: the first member of a list
    value = _delta_seconds(first)
    return 0 if value is None else value  # §5.1: an invalid Age is ignored


def is_fresh(lifetime: float | None, age: float) -> bool:
    """Whether a response of this lifetime and age is fresh: ``lifetime > age`` (RFC 9111 §4.2).

    No lifetime (None) is never fresh; an age equal to the lifetime is already stale.

    >>> is_fresh(60.0, 59.5), is_fresh(60.0, 60.0), is_fresh(None, 0.0)
    (True, False, False)
    """
    return lifetime is not None and lifetime > age
