"""What a request asks of a cache, as plain data: the rules both faces share.

Rules of this module: pure (standard library only, no asyncio), ``now`` is a parameter. A face
hands over its request as a header lookup (a name in lower case -> the field's lines joined with
", ", or None when absent) and gets plain records back; both faces classify with the same
functions and the same header names, so that a request is treated alike on either side:

* A request with ``Range`` or ``If-Range`` (its answer is partial, RFC 9110 §14.2, §13.1.5) or
  a precondition a cache cannot evaluate for it (``If-Match``, ``If-Unmodified-Since``: RFC 9110
  §13.1) is never shared (``UNSHARED_HEADERS``): it never leads nor joins a flight, and nothing
  of its answer is stored. Of those, a GET or HEAD with only ``Range`` / ``If-Range``
  (``RANGE_HEADERS``) may be answered from a complete stored response (``ranges.py``: a 206, a
  416 or the whole 200) on the session and the server middleware; the others bypass.
* A GET or HEAD with only ``If-None-Match`` / ``If-Modified-Since`` (``VALIDATION_HEADERS``) may
  be answered from a fresh stored response (RFC 9111 §4.3.2, ``conditional.py``); another
  method with them bypasses (§13.1.3: those conditions are for GET and HEAD).
* What the caller's own ``Cache-Control`` (or, without one, ``Pragma: no-cache``, §5.4) asks
  (``asked_by``): ``no-cache`` or ``max-age=0`` go to the origin whatever is stored (a refresh,
  §5.2.1.4, §5.2.1.1); ``max-age``, ``min-fresh``, ``max-stale``, ``only-if-cached`` limit what
  a stored response may answer (``Wanted``); ``no-store`` says nothing of it may be stored
  (§5.2.1.5: each face decides whether it honours that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .cache_control import request_directives
from .decisions.reasons import BypassReason
from .snapshot import Snapshot

__all__ = [
    "PRECONDITION_HEADERS",
    "RANGE_HEADERS",
    "UNSHARED_HEADERS",
    "VALIDATED_METHODS",
    "VALIDATION_HEADERS",
    "Asked",
    "Wanted",
    "asked_by",
    "bypass_reason",
]


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a caller's own request directives accept of a stored response (RFC 9111 §5.2.1).

    ``max_age``: at most this old (§5.2.1.1); ``min_fresh``: still fresh for at least this long
    (§5.2.1.3); ``max_stale``: a stale response will do if stale for at most this long
    (§5.2.1.2); ``only_if_cached``: never go to the origin, answer without a response instead
    (§5.2.1.7: the face then answers 504).
    """

    max_age: float | None = None
    min_fresh: float | None = None
    only_if_cached: bool = False
    max_stale: float | None = None

    def accepts(self, snap: Snapshot, now: float) -> bool:
        """Whether a fresh stored response will do."""
        if self.max_age is not None and snap.age(now) > self.max_age:
            return False
        return self.min_fresh is None or snap.expires_at - now >= self.min_fresh

    def accepts_stale(self, snap: Snapshot, now: float) -> bool:
        """Whether this stale stored response will do (``max-stale``)."""
        if self.max_stale is None or self.min_fresh is not None:
            return False
        if self.max_age is not None and snap.age(now) > self.max_age:
            return False
        return now - snap.expires_at <= self.max_stale


# A partial request (RFC 9110 §14.2, §13.1.5): answered from storage (``ranges.py``) or alone.
RANGE_HEADERS = ("range", "if-range")
# Preconditions a cache does not evaluate (RFC 9110 §13.1.1, §13.1.4): always a bypass.
PRECONDITION_HEADERS = ("if-match", "if-unmodified-since")
# Requests whose answer is partial or relative to what the caller already has (module rules).
UNSHARED_HEADERS = RANGE_HEADERS + PRECONDITION_HEADERS
# The conditions a cache may evaluate itself against a fresh stored response (RFC 9111 §4.3.2).
VALIDATION_HEADERS = ("if-none-match", "if-modified-since")
# The methods those conditions are evaluated for (RFC 9110 §13.1.3); a 304 answers these only.
VALIDATED_METHODS = frozenset({"GET", "HEAD"})
# What a proxy in front says of the request it forwarded, and an attacker may send himself: a
# handler that reflects one of them (a link built from X-Forwarded-Host) must not answer everybody
# with the first sender's value, so a shared cache keys them (web cache poisoning). Not the ones
# that name the client (X-Forwarded-For, Forwarded's for=): keyed, every client would get an
# entry of its own. Of ``Forwarded`` (RFC 7239), only host= and proto= (``forwarded_part``).
FORWARDED_HEADERS = (
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-port",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "forwarded",
)
_FORWARDED_KEYED = frozenset({"host", "proto"})


def forwarded_part(elements: Iterable[Mapping[str, str]]) -> str | None:
    """What a key keeps of parsed ``Forwarded`` elements: their host= and proto= parameters, in
    order (None when there are none), never for= or by=.

    >>> forwarded_part([{"for": "1.2.3.4", "host": "a.example", "proto": "https"}])
    'host=a.example;proto=https'
    >>> forwarded_part([{"for": "1.2.3.4"}]) is None
    True
    """
    parts = [
        ";".join(
            f"{name}={value}" for name, value in sorted(element.items()) if name in _FORWARDED_KEYED
        )
        for element in elements
    ]
    return ",".join(parts) if any(parts) else None


def bypass_reason(has: Callable[[str], bool], credentials: Iterable[str] = ()) -> BypassReason:
    """Why a request that carries a bypass header bypasses (``reasons.py``): ``has`` says whether
    it carries a header (a lower-case name); ``credentials``: the middleware's unkeyed ones. A
    range request says so whenever it goes to the origin: nothing usable stored, or a
    precondition besides (or a face that does not range: the client middleware).

    >>> bypass_reason({"if-range"}.__contains__), bypass_reason({"if-match"}.__contains__)
    ('range request', 'conditional request')
    """
    if has("range") or has("if-range"):
        return "range request"
    if any(map(has, credentials)):
        return "credential header"
    return "conditional request"


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request's own directives ask of a cache (module rules): what it accepts of a stored
    response (``wanted``, None: any fresh one), whether it goes to the origin whatever is stored
    (``refresh``), and whether it forbids storing its response (``no_store``)."""

    wanted: Wanted | None
    refresh: bool
    no_store: bool


def asked_by(header: Callable[[str], str | None]) -> Asked | None:
    """What the request whose fields ``header`` looks up asks of a cache; None when it sent no
    ``Cache-Control`` nor ``Pragma`` (or nothing in them counts).

    >>> a = asked_by({"cache-control": "max-age=0, no-store"}.get)
    >>> a.wanted, a.refresh, a.no_store
    (Wanted(max_age=0, min_fresh=None, only_if_cached=False, max_stale=None), True, True)
    >>> asked_by({"pragma": "no-cache"}.get)
    Asked(wanted=None, refresh=True, no_store=False)
    >>> asked_by({}.get) is None
    True
    """
    d = request_directives(header("cache-control"), header("pragma"))
    if d is None:
        return None
    wanted = None
    if (
        d.max_age is not None
        or d.min_fresh is not None
        or d.only_if_cached
        or d.max_stale is not None
    ):
        wanted = Wanted(
            max_age=d.max_age,
            min_fresh=d.min_fresh,
            only_if_cached=d.only_if_cached,
            max_stale=d.max_stale,
        )
    # RFC 9111 §5.2.1.4 (no-cache), §5.2.1.1 (max-age=0: no stored response is young enough).
    return Asked(wanted, d.no_cache or d.max_age == 0, d.no_store)
