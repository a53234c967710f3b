"""HTTP-dates (RFC 9110 §5.6.7): the three forms a recipient must accept, and nothing else.

Rules of this module (pure functions, standard library only):

* IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), the obsolete RFC 850 form (``Sunday,
  06-Nov-94 08:49:37 GMT``) and asctime (``Sun Nov  6 08:49:37 1994``) are read, letters in any
  case (RFC 9111 §4.2); anything else (``0``, ``-1``, another zone, a missing comma, an impossible
  day) is None, never an exception. A wrong weekday is tolerated (the day name is the sender's
  duty; recipients "are encouraged to be robust in parsing timestamps").
* A two-digit year more than 50 years in the future is the most recent past year with the same
  last two digits (RFC 9110 §5.6.7), judged against ``now``, which the caller always passes:
  nothing here reads a clock (``time.gmtime`` only converts). ``now=None`` says that no reference
  time is known: a two-digit year cannot be placed, and an RFC 850 date is then None.
* The result is UTC seconds since the epoch, like ``time.time()``.
"""

from __future__ import annotations

import time

from .memo import Memo

__all__ = ["format_http_date", "parse_http_date"]


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


def parse_http_date(value: str, *, now: float | None) -> float | None:
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
    of the RFC 850 form is in the century of ``now``, unless that "appears to be more than 50
    years in the future", then it is "the most recent year in the past that had the same last
    two digits" (RFC 9110 §5.6.7). With ``now=None`` (no reference time known) an RFC 850 date is
    None: its century cannot be told. The other two forms do not need ``now``.

    >>> parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", now=None)
    784111777.0
    >>> parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now=1_700_000_000)
    784111777.0
    >>> parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now=None) is None
    True
    >>> parse_http_date("Sun Nov  6 08:49:37 1994", now=None)
    784111777.0
    >>> [parse_http_date(v, now=None) for v in ("0", "Sun, 06 Nov 1994 08:49:37 UTC")]
    [None, None]
    """
    known = _READ.get(value, _UNREAD)  # a fixed-length form read before: the same answer
    if known is not _UNREAD:
        return known
    # Whitespace around a field value is not part of it (RFC 9110 §5.5); inside, it must be exact.
    v = value.strip(" \t")
    if not v.isascii():  # and so str.isdigit() below accepts 0-9 only
        return None
    v = v.lower()
    if len(v) not in (29, 24):
        return _rfc850_date(v, now)
    at = _fixed_length_date(v)
    if len(value) == len(v):  # remembered without padding only: the memo's keys stay short
        _READ.remember(value, at)
    return at


# The two fixed-length forms do not depend on ``now``: each value read is remembered (an origin
# sends one Date a second, the same Last-Modified and Expires many times), so that a miss
# parses its Date once a second, not once a response (issue 20).
_READ: Memo[str, float | None] = Memo(256)
_UNREAD = float("nan")  # found by identity: never a result


def _fixed_length_date(v: str) -> float | None:
    """An IMF-fixdate (29 characters) or an asctime-date (24), lower-cased."""
    if len(v) == 29:  # IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        if v[3:5] != ", " or v[7] != " " or v[11] != " " or v[16] != " " or v[25:] != " gmt":
            return None
        if v[:3] not in _DAY_NAMES:
            return None
        return _timestamp(v[12:16], v[8:11], v[5:7], v[17:25])
    # asctime-date: "Sun Nov  6 08:49:37 1994" (day: 2DIGIT or SP DIGIT)
    if v[3] != " " or v[7] != " " or v[10] != " " or v[19] != " " or v[:3] not in _DAY_NAMES:
        return None
    day = v[8:10]
    if day[0] == " ":
        day = "0" + day[1]  # a space then one digit; "  " stays invalid below
    return _timestamp(v[20:24], v[4:7], day, v[11:19])


def format_http_date(at: float) -> str:
    """``at`` (seconds since the epoch, UTC) as an IMF-fixdate, the form senders use (RFC 9110
    §5.6.7), rounded down to the second; the names are English whatever the locale.

    >>> format_http_date(784111777.9)
    'Sun, 06 Nov 1994 08:49:37 GMT'
    """
    t = time.gmtime(int(at))
    return (
        f"{_DAY_ABBR[t.tm_wday]}, {t.tm_mday:02d} {_MONTH_ABBR[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


_DAY_ABBR = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # time.struct_time.tm_wday order
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _rfc850_date(v: str, now: float | None) -> float | None:
    """The obsolete form, lower-cased: "sunday, 06-nov-94 08:49:37 gmt", a full day name, then
    24 fixed characters."""
    comma = len(v) - 24
    if comma < 6 or v[comma : comma + 2] != ", " or v[:comma] not in _DAY_NAMES_L:
        return None
    rest = v[comma + 2 :]  # "06-nov-94 08:49:37 gmt"
    if rest[2] != "-" or rest[6] != "-" or rest[9] != " " or rest[18:] != " gmt":
        return None
    yy = rest[7:9]
    if not yy.isdigit():
        return None
    at = _timestamp("2000", rest[3:6], rest[:2], rest[10:18])  # checks all but the year
    if at is None or now is None:
        return None  # not a date, or no reference time to place its two-digit year against
    return _rfc850_year(int(yy), rest, now)


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
