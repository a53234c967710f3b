"""Request identity: structured fields -> canonical bytes -> SHA-256 digest.

Rules of this module:

* Every field is written with its length in front, so no two different requests can encode to the
  same bytes by moving text from one field into the next (go-chi/stampede's summed hashes and plain
  concatenations can collide; this cannot).
* The faces hand over a URL already parsed into parts; this module only decides what is the same
  resource: the method, scheme and host lower-cased, the default port dropped, the fragment
  dropped, the path as given (case kept), the query sorted by name (stable for repeated names)
  unless told not to, ignored parameters removed. The query is keyed as the request sends it,
  raw (``query_pairs``): ``?t=%FF`` and ``?t=%FE`` decode to the same text but are different
  requests, and so are ``?a`` and ``?a=``.
* The values of ``key_headers`` and of the credential headers split the key. An absent header is
  written differently from an empty one. Credentials only ever reach the digest, never storage.
* The result is a hex digest: it is the storage key, and safe to show in logs. Its bytes never
  change between versions (a new encoding would orphan every stored entry and URL index); the
  parts that repeat from one request to the next are remembered encoded (issue 20), the bytes
  they make are the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar
from urllib.parse import unquote_plus

from ..options import check_header_names
from ..spec.memo import Memo
from ..storage.codec import put_field

__all__ = [
    "CREDENTIAL_HEADERS",
    "KeyMaker",
    "KeyMemo",
    "UrlParts",
    "normalize_headers",
    "query_pairs",
    "variant_key",
]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# An absent header (or body) where a length-prefixed value would be: no present value has this
# length prefix, so absent and empty stay apart (in a request's key and in a variant key alike).
_ABSENT = b"\xff\xff\xff\xff"
_MEMO_SIZE = 4096  # remembered keys per face; cleared when full

V = TypeVar("V")

# Request headers that carry who is asking: always part of the key (docs/architecture.md, "Who
# may share a response, and keys").
CREDENTIAL_HEADERS = (
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-api-key",
    "x-auth-token",
    "api-key",
)

normalize_headers = check_header_names  # lower-case names, repeats dropped, ValueError naming it


class KeyMemo(Memo[Hashable, V]):
    """Keys already built, by the request parts they were built from (bounded, cleared when full).

    Building the digest is most of what a cache hit costs; both faces look a key up here first,
    by a tuple of exactly the request parts that feed the key. ``V`` is what a face keeps per
    key: the key itself, or the key with the URL it resolved.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(_MEMO_SIZE)


UNSEEN = ""  # no key is empty: Sightings.sighted's answer for parts seen the first time


class Sightings:
    """Request parts seen once, by their hash, with the key their call had: a face remembers a
    call's work (``KeyMemo``) from the second call of its parts on. A scraper's every URL once
    kept its identity and its flight request for nothing, thirteen objects a URL that the
    collector walked again and again (issue 20); hashes and key strings it never walks. Two
    parts of one hash are remembered from their first call: no harm, a memo's value is the
    same whenever it is built."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: Memo[int, str | None] = Memo(_MEMO_SIZE)

    def sighted(self, parts: Hashable, key: str | None) -> str | None:
        """The key of the first call of ``parts`` when they were seen before: the same string,
        so that a hit's lookups find what that call stored by identity, not by comparing 64
        characters; else ``UNSEEN``, and ``key`` is noted (bounded, cleared when full)."""
        seen = hash(parts)
        first = self._keys.get(seen, UNSEEN)
        if first is UNSEEN:
            self._keys.remember(seen, key)
        return first


class UrlParts(NamedTuple):
    """A request's URL as its face parsed it: what a key reads of it (normalized here, see the
    module rules). ``query`` is raw (``query_pairs``); ``port`` None when the URL names none."""

    scheme: str
    host: str
    port: int | None
    path: str
    query: Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class KeyMaker:
    """Builds the key of a request from its parts; one per session or middleware.

    >>> km = KeyMaker(namespace="demo", key_headers=("accept",))
    >>> a = UrlParts("http", "example.com", 80, "/a", [("y", "2"), ("x", "1")])
    >>> b = UrlParts("HTTP", "Example.com", None, "/a", [("x", "1"), ("y", "2")])
    >>> km.request_key("GET", a, {}.get) == km.request_key("get", b, {}.get)
    True
    >>> len(km.request_key("GET", a, {}.get))
    64
    """

    namespace: str = ""
    key_headers: tuple[str, ...] = ()  # lower-case names, see options.check_header_names()
    credential_headers: tuple[str, ...] = CREDENTIAL_HEADERS
    sort_query: bool = True
    ignored_params: frozenset[str] = frozenset()
    _headers: tuple[str, ...] = field(init=False, repr=False)
    # The encoded fields that repeat from one request to the next (issue 20: building the bytes
    # cost more than the digest): the key's head by (method, scheme, host, port), the URL key's
    # by (scheme, host, port), bounded as KeyMemo; and the last URL's path and query fields, a
    # request's key and its URL key being built one after the other. The bytes are the same.
    _heads: KeyMemo[bytes] = field(init=False, repr=False, compare=False)
    _last: list[tuple[str, tuple[tuple[str, str], ...], bytes]] = field(
        init=False, repr=False, compare=False
    )
    # The header fields of a request that sends none of the headers the key reads.
    _absent: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Credential headers first, then the user's, each once: one loop on the hot path.
        names = self.credential_headers + tuple(
            h for h in self.key_headers if h not in self.credential_headers
        )
        object.__setattr__(self, "_headers", names)
        object.__setattr__(self, "_heads", KeyMemo())
        object.__setattr__(self, "_last", [("", (), b"")])
        object.__setattr__(self, "_absent", _ABSENT * len(names))

    @property
    def header_names(self) -> tuple[str, ...]:
        """Every header the key reads (credential headers, then key_headers), lower-case."""
        return self._headers

    def request_key(
        self,
        method: str,
        url: UrlParts,
        header: Callable[[str], str | None] | None,
        *,
        body_digest: bytes | None = None,
        extra: Sequence[str] = (),
    ) -> str:
        """The key of one request, as a 64-character hex digest.

        ``header(name)`` returns the request's value for a lower-case header name (repeated headers
        joined by ``", "``) or None when absent; ``header`` None: the request has no headers (the
        key of a ``header`` that answers None to every name). ``body_digest`` identifies a request
        body (methods with a body only). ``extra`` holds more parts a face adds (the middleware's
        ``key_func``, a redirect setting).
        """
        head = (method, url.scheme, url.host, url.port)
        parts = [self._heads.get(head) or self._head(head, url, method.upper().encode())]
        parts.append(self._rest(url))
        if header is None:  # none of them sent: every field absent, at once
            parts.append(self._absent)
        else:
            for name in self._headers:
                hvalue = header(name)
                if hvalue is None:
                    parts.append(_ABSENT)
                else:
                    put_field(parts, hvalue.encode("utf-8", "surrogatepass"))
        if body_digest is None:
            parts.append(_ABSENT)
        else:
            put_field(parts, body_digest)
        parts.append(len(extra).to_bytes(4, "big"))
        for item in extra:
            put_field(parts, item.encode("utf-8", "surrogatepass"))
        return hashlib.sha256(b"".join(parts)).hexdigest()

    def url_key_of(self, url: UrlParts) -> str:
        """The URL key of a resource (``Call.url_key``): the URL part of every key
        ``request_key`` builds for it, whatever the method, credentials or headers, as a hex
        digest.

        >>> km = KeyMaker()
        >>> km.url_key_of(UrlParts("HTTP", "X", 80, "/a", [])) == km.url_key_of(
        ...     UrlParts("http", "x", None, "/a", []))
        True
        """
        origin = (url.scheme, url.host, url.port)
        head = self._heads.get(origin) or self._head(origin, url, None)
        return hashlib.sha256(head + self._rest(url)).hexdigest()

    def _head(self, memo: Hashable, url: UrlParts, method: bytes | None) -> bytes:
        """The fields before the path, remembered by ``memo``: a request key's (namespace,
        ``method``, origin), or with no method a URL key's (a mark no request's key starts
        with, namespace, origin)."""
        parts: list[bytes] = [] if method is not None else [b"url-index"]
        put_field(parts, self.namespace.encode())
        if method is not None:
            put_field(parts, method)
        scheme = url.scheme.lower()
        put_field(parts, scheme.encode())
        put_field(parts, url.host.lower().encode())
        port, default = url.port, _DEFAULT_PORTS.get(scheme)
        put_field(parts, b"" if port is None or port == default else str(port).encode())
        return self._heads.remember(memo, b"".join(parts))

    def _rest(self, url: UrlParts) -> bytes:
        """The path and query fields of a key, normalized (module rules); the last URL's
        again when it is the same (module rules of the class: request key, then URL key)."""
        path, query = url.path, url.query
        given = query if isinstance(query, tuple) else tuple(query)  # kept: never changes
        last = self._last[0]  # one tuple: read whole, also when threads share this KeyMaker
        if last[0] == path and last[1] == given and last[2]:
            return last[2]
        parts: list[bytes] = []
        put_field(parts, path.encode("utf-8", "surrogatepass"))
        if self.ignored_params:
            ignored = self.ignored_params
            query = [kv for kv in query if unquote_plus(kv[0]) not in ignored]
        if self.sort_query and len(query) > 1:
            query = sorted(query, key=_name)  # sorted() is stable: repeated names keep their order
        parts.append(len(query).to_bytes(4, "big"))
        for qname, qvalue in query:
            put_field(parts, qname.encode("utf-8", "surrogatepass"))
            put_field(parts, qvalue.encode("utf-8", "surrogatepass"))
        rest = b"".join(parts)
        self._last[0] = (path, given, rest)
        return rest


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """A raw query string as (raw name, raw rest) pairs for ``UrlParts.query``, nothing decoded.

    The rest keeps its ``=``, so that ``a`` and ``a=`` stay apart.

    >>> query_pairs("b=%FF&a&a=")
    [('b', '=%FF'), ('a', ''), ('a', '=')]
    """
    if not raw_query:
        return []
    pairs = []
    for piece in raw_query.split("&"):
        name, sep, value = piece.partition("=")
        pairs.append((name, sep + value))
    return pairs


def _name(kv: tuple[str, str]) -> str:
    return kv[0]


def variant_key(key: str, names: tuple[str, ...], values: tuple[str | None, ...]) -> str:
    """The storage key of the variant of ``key`` for these values of ``names``."""
    parts: list[bytes] = [b"vary"]
    put_field(parts, key.encode())
    parts.append(len(names).to_bytes(4, "big"))
    for name, value in zip(names, values, strict=True):
        put_field(parts, name.encode())
        if value is None:
            parts.append(_ABSENT)
        else:
            put_field(parts, value.encode("utf-8", "surrogatepass"))
    return hashlib.sha256(b"".join(parts)).hexdigest()
