"""Cache-Control (RFC 9111 §5.2, RFC 5861): request and response directives as plain records.

Rules of this module (pure functions, standard library only):

* Names match in any case; arguments are tokens or quoted strings; several field lines combine;
  unknown directives are ignored (§5.2.3).
* Delta-seconds are whole ASCII digits, capped at ``DELTA_SECONDS_MAX`` (§1.2.2). An invalid or
  conflicting ``max-age`` or ``s-maxage`` reads as 0, so the response is stale (§4.2.1); any other
  unreadable directive takes its most restrictive meaning.
* Targeted fields (``CDN-Cache-Control``, RFC 9213) and the choice of the directives a cache
  obeys are ``targeted.py``'s.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass

from .fields import TOKEN as _TOKEN
from .memo import Memo

__all__ = [
    "DELTA_SECONDS_MAX",
    "RequestDirectives",
    "ResponseDirectives",
    "delta_seconds",
    "field_value",
    "field_values",
    "members",
    "parse_request_cache_control",
    "parse_response_cache_control",
    "request_directives",
]

DELTA_SECONDS_MAX = 2**31  # RFC 9111 §1.2.2: "represents infinity (over 68 years)"


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
    directives"). A delta-seconds directive sent more than once (even with the same value), or
    with a value that is not delta-seconds (``+5``, ``5.0``, ``''``, an
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
    if values is None:
        return _NO_RESPONSE_DIRECTIVES  # the common case: no Cache-Control field
    if isinstance(values, str):  # one line: read once (an origin sends few values, many times)
        known = _RESPONSE_READ.get(values)
        if known is None:
            known = _parse_response(values)
            if len(values) <= _READ_LENGTH_MAX:
                _RESPONSE_READ.remember(values, known)
        return known
    return _parse_response(values)


# The response directives of each one-line value read (the records are frozen: shared), so that
# a miss parses an origin's usual Cache-Control once, not once a response (issue 20); bounded.
_RESPONSE_READ: Memo[str, ResponseDirectives] = Memo(256)
_READ_LENGTH_MAX = 256


def _parse_response(values: str | Iterable[str]) -> ResponseDirectives:
    """``parse_response_cache_control`` of a value not remembered."""
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
        for member in members(line):
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


def members(line: str) -> list[str]:
    """The comma-separated members of a line; a comma inside a quoted string does not split."""
    if '"' not in line:
        return line.split(",")
    found: list[str] = []
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
            found.append(line[start:i])
            start = i + 1
        i += 1
    found.append(line[start:])
    return found


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


def delta_seconds(arg: str | None) -> int | None:
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
    if len(occurrences) != 1:
        # RFC 9111 §4.2.1: with more than one value, "either the first occurrence should be
        # used, or the response should be considered stale": stale, the conservative choice,
        # whether the values differ or not.
        return _INVALID
    arg, ok = occurrences[0]
    value = delta_seconds(arg) if ok else None
    return _INVALID if value is None else value


def _max_stale(occurrences: _Occurrences | None) -> int | None:
    if occurrences is None:
        return None
    seen = {
        (DELTA_SECONDS_MAX if arg is None else delta_seconds(arg)) if ok else None
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


def request_directives(cache_control: str | None, pragma: str | None) -> RequestDirectives | None:
    """A request's directives, or None when it sent no ``Cache-Control`` nor ``Pragma``.

    ``Pragma: no-cache`` counts as ``Cache-Control: no-cache`` only when there is no
    ``Cache-Control`` (RFC 9111 §5.4).
    """
    if cache_control:
        return parse_request_cache_control(cache_control)
    if pragma and "no-cache" in (p.strip().lower() for p in pragma.split(",")):
        return RequestDirectives(no_cache=True)
    return None


def field_value(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The value of the field ``name`` (lower-case), its lines joined with ", " (RFC 9110 §5.3);
    None when absent.

    >>> field_value([("Age", "1"), ("X", "y"), ("age", "2")], "age")
    '1, 2'
    """
    values = [v for k, v in headers if k.lower() == name]
    return ", ".join(values) if values else None


def field_values(headers: Iterable[tuple[str, str]], names: Container[str]) -> dict[str, str]:
    """The fields of ``names`` (lower-case) that ``headers`` holds, each as ``field_value``
    gives it, read in one pass: for the rules that read several fields of one response.

    >>> field_values([("Age", "1"), ("Date", "x"), ("age", "2")], {"age", "expires"})
    {'age': '1, 2'}
    """
    found: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in names:
            prior = found.get(key)
            found[key] = value if prior is None else f"{prior}, {value}"
    return found
