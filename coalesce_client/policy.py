"""CachePolicy: what may be shared, what may be stored, and for how long.

Rules of this module:

* A policy is a frozen value, checked when built: a bad option raises ``ValueError`` naming it.
* It decides from plain data (a status, header pairs); it imports no HTTP framework.
* TTL precedence (DESIGN.md): the call's ``cache_ttl``, else ``status_ttl[status]``, else the
  session's ``ttl``; then capped by ``Cache-Control: max-age`` (or ``s-maxage`` in a shared cache,
  RFC 9111 §5.2.2.10) when ``respect_cache_control`` is on. A result of 0 means "not stored".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .keys import KeyMaker, normalize_headers

if TYPE_CHECKING:
    from .snapshot import Headers

__all__ = ["CacheControl", "CachePolicy", "parse_cache_control"]

# RFC 9110 §7.6.1: hop-by-hop headers, meaningful for one connection only; never stored or replayed.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
    }
)


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The response directives of ``Cache-Control`` that matter here (RFC 9111 §5.2.2)."""

    no_store: bool = False
    no_cache: bool = False
    private: bool = False
    max_age: float | None = None
    s_maxage: float | None = None


_NO_DIRECTIVES = CacheControl()


def parse_cache_control(value: str | None) -> CacheControl:
    """Parse a ``Cache-Control`` value; unknown directives are ignored, bad numbers make it 0.

    >>> parse_cache_control('public, max-age=60, s-maxage="30"')
    CacheControl(no_store=False, no_cache=False, private=False, max_age=60.0, s_maxage=30.0)
    """
    if not value:
        return _NO_DIRECTIVES
    no_store = no_cache = private = False
    max_age: float | None = None
    s_maxage: float | None = None
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        name = name.strip().lower()
        arg = arg.strip().strip('"')
        if name == "no-store":
            no_store = True
        elif name == "no-cache":
            no_cache = True  # with or without field names (§5.2.2.4): both mean "revalidate"
        elif name == "private":
            private = True
        elif name == "max-age":
            max_age = _seconds(arg, max_age)
        elif name == "s-maxage":
            s_maxage = _seconds(arg, s_maxage)
    return CacheControl(no_store, no_cache, private, max_age, s_maxage)


def _seconds(arg: str, previous: float | None) -> float:
    # RFC 9111 §4.2.1: an invalid or repeated freshness directive makes the response stale.
    if previous is not None or not (arg.isascii() and arg.isdigit()):  # §1.2.2: ASCII digits
        return 0.0
    return float(arg)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """What may be shared and stored.

    >>> policy = CachePolicy(status_ttl={404: 10}, ignored_params={"utm_source"})
    >>> policy.ttl_for(404, [], session_ttl=60)
    10.0
    >>> policy.ttl_for(200, [("Cache-Control", "max-age=5")], session_ttl=60)
    5.0
    >>> CachePolicy(max_body_size=-1)
    Traceback (most recent call last):
    ...
    ValueError: max_body_size must be a non-negative number of bytes, got -1
    """

    methods: AbstractSet[str] = frozenset({"GET", "HEAD"})
    cacheable_statuses: AbstractSet[int] = frozenset({200, 203, 300, 301, 308})
    status_ttl: Mapping[int, float] = field(default_factory=dict)
    strip_headers: Sequence[str] = ("set-cookie", "access-control-*", "x-ratelimit-*")
    max_body_size: int = 8 * 1024 * 1024
    respect_cache_control: bool = True
    sort_query: bool = True
    ignored_params: AbstractSet[str] = frozenset()
    should_store: Callable[[Any], bool] | None = None
    credential_headers: Sequence[str] = ("authorization", "cookie", "proxy-authorization")
    pass_ttl: float = 120.0
    _strip_exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _strip_prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        methods = self.methods
        if isinstance(methods, str) or not all(isinstance(m, str) and m for m in methods):
            raise ValueError(f"methods must be a collection of HTTP method names, got {methods!r}")
        set_(self, "methods", frozenset(m.upper() for m in methods))
        statuses = self.cacheable_statuses
        if isinstance(statuses, (str, bytes)) or not all(_is_status(s) for s in statuses):
            raise ValueError(f"cacheable_statuses must be HTTP status codes, got {statuses!r}")
        set_(self, "cacheable_statuses", frozenset(statuses))
        if not isinstance(self.status_ttl, Mapping):
            raise ValueError(
                f"status_ttl must map status codes to seconds, got {self.status_ttl!r}"
            )
        for status, ttl in self.status_ttl.items():
            if not _is_status(status):
                raise ValueError(f"status_ttl: {status!r} is not an HTTP status code")
            if not _is_number(ttl) or not 0 <= ttl < math.inf:
                raise ValueError(f"status_ttl[{status}] must be a non-negative number, got {ttl!r}")
        set_(self, "status_ttl", {s: float(t) for s, t in self.status_ttl.items()})
        if isinstance(self.strip_headers, (str, bytes)):
            raise ValueError(
                "strip_headers must be a collection of header names, not a single string"
            )
        normalize_headers(  # validates the names; a trailing "*" makes a prefix
            [h.rstrip("*") if isinstance(h, str) else h for h in self.strip_headers],
            "strip_headers",
        )
        raw = [h.strip().lower() for h in self.strip_headers]
        set_(self, "strip_headers", tuple(raw))
        set_(self, "_strip_exact", frozenset(h for h in raw if not h.endswith("*")) | HOP_BY_HOP)
        prefixes = tuple(h.rstrip("*") for h in raw if h.endswith("*"))
        set_(self, "_strip_prefixes", (*prefixes, "proxy-"))  # Proxy-* is hop-by-hop too
        if not _is_number(self.max_body_size) or not self.max_body_size >= 0:  # NaN too
            raise ValueError(
                f"max_body_size must be a non-negative number of bytes, got {self.max_body_size!r}"
            )
        for name in ("respect_cache_control", "sort_query"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        params = self.ignored_params
        if isinstance(params, (str, bytes)) or not all(isinstance(p, str) for p in params):
            raise ValueError(f"ignored_params must be a collection of names, got {params!r}")
        set_(self, "ignored_params", frozenset(params))
        if self.should_store is not None and not callable(self.should_store):
            raise ValueError(f"should_store must be callable, got {self.should_store!r}")
        set_(
            self,
            "credential_headers",
            normalize_headers(self.credential_headers, "credential_headers"),
        )
        if not _is_number(self.pass_ttl) or not 0 <= self.pass_ttl < math.inf:
            raise ValueError(
                f"pass_ttl must be a non-negative number of seconds, got {self.pass_ttl!r}"
            )

    def key_maker(self, *, namespace: str, key_headers: Iterable[str]) -> KeyMaker:
        """The key builder of a face (session or middleware) that uses this policy."""
        return KeyMaker(
            namespace=namespace,
            key_headers=normalize_headers(key_headers, "key_headers"),
            credential_headers=tuple(self.credential_headers),
            sort_query=self.sort_query,
            ignored_params=frozenset(self.ignored_params),
        )

    def ttl_for(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        *,
        session_ttl: float,
        call_ttl: float | None = None,
        shared_cache: bool = False,
    ) -> float:
        """How long a response may be stored, in seconds; 0 means not at all."""
        # The status decides whether it may be stored at all; a call's cache_ttl only says how long.
        if status in self.status_ttl:
            ttl = self.status_ttl[status]
            if ttl <= 0:
                return 0.0  # status_ttl={status: 0}: never stored, whatever the call asks
        elif status in self.cacheable_statuses:
            ttl = session_ttl
        else:
            return 0.0
        if call_ttl is not None:
            ttl = call_ttl
        if ttl <= 0:
            return 0.0
        if self.respect_cache_control:
            cc = parse_cache_control(_joined(headers, "cache-control"))
            if cc.no_store or cc.no_cache or (shared_cache and cc.private):
                return 0.0  # no-cache: stored only once revalidation exists (DESIGN.md "Later")
            limit = cc.s_maxage if shared_cache and cc.s_maxage is not None else cc.max_age
            if limit is not None:
                ttl = min(ttl, limit)
        return float(ttl)

    def storable_headers(self, headers: Iterable[tuple[str, str]]) -> Headers:
        """The headers to store and replay: without ``strip_headers`` and hop-by-hop headers."""
        exact, prefixes = self._strip_exact, self._strip_prefixes
        headers = tuple(headers)  # read twice below
        connection = {
            t.strip().lower()
            for name, value in headers
            if name.lower() == "connection"
            for t in value.split(",")
        }
        out = []
        for name, value in headers:
            low = name.lower()
            if low in exact or low in connection or low.startswith(prefixes):
                continue
            out.append((name, value))
        return tuple(out)


def _is_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def _joined(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in headers if k.lower() == name]
    return ", ".join(values) if values else None
