"""Request identity: structured fields -> canonical bytes -> SHA-256 digest.

Rules of this module:

* Every field is written with its length in front, so no two different requests can encode to the
  same bytes by moving text from one field into the next (go-chi/stampede's summed hashes and plain
  concatenations can collide; this cannot).
* The faces hand over a URL already parsed into parts; this module only decides what is the same
  resource: the method, scheme and host lower-cased, the default port dropped, the fragment
  dropped, the path as given (case kept), the query sorted by name (stable for repeated names)
  unless told not to, ignored parameters removed.
* The values of ``key_headers`` and of the credential headers split the key. An absent header is
  written differently from an empty one. Credentials only ever reach the digest, never storage.
* The result is a hex digest: it is the storage key, and safe to show in logs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["KeyMaker", "normalize_headers"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_ABSENT = b"\xff\xff\xff\xff"  # a header count that no present header can have
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 §5.6.2)


def normalize_headers(names: Iterable[str], option: str) -> tuple[str, ...]:
    """Lower-case header names, drop repeats, keep order; a bad name is a ValueError."""
    if isinstance(names, (str, bytes)):
        raise ValueError(f"{option} must be a collection of header names, not a single string")
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"{option}: {name!r} is not a valid header name")
        low = name.lower()
        if low not in out:
            out.append(low)
    return tuple(out)


def _field(parts: list[bytes], data: bytes) -> None:
    parts.append(len(data).to_bytes(4, "big"))
    parts.append(data)


@dataclass(frozen=True, slots=True)
class KeyMaker:
    """Builds the key of a request from its parts; one per session or middleware.

    >>> km = KeyMaker(namespace="demo", key_headers=("accept",))
    >>> a = km.make("GET", "http", "example.com", 80, "/a", [("y", "2"), ("x", "1")], {}.get)
    >>> b = km.make("GET", "HTTP", "Example.com", None, "/a", [("x", "1"), ("y", "2")], {}.get)
    >>> a == b, len(a)
    (True, 64)
    """

    namespace: str = ""
    key_headers: tuple[str, ...] = ()  # lower-case names, see normalize_headers()
    credential_headers: tuple[str, ...] = ("authorization", "cookie", "proxy-authorization")
    sort_query: bool = True
    ignored_params: frozenset[str] = frozenset()
    _headers: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Credential headers first, then the user's, each once: one loop on the hot path.
        names = self.credential_headers + tuple(
            h for h in self.key_headers if h not in self.credential_headers
        )
        object.__setattr__(self, "_headers", names)

    @property
    def header_names(self) -> tuple[str, ...]:
        """Every header the key reads (credential headers, then key_headers), lower-case."""
        return self._headers

    def make(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int | None,
        path: str,
        query: Sequence[tuple[str, str]],
        header: Callable[[str], str | None],
        *,
        body_digest: bytes | None = None,
        extra: Sequence[str] = (),
    ) -> str:
        """The key of one request, as a 64-character hex digest.

        ``header(name)`` returns the request's value for a lower-case header name (repeated headers
        joined by ``", "``) or None when absent. ``body_digest`` identifies a request body (methods
        with a body only). ``extra`` holds more parts a face adds (the middleware's ``key_func``, a
        redirect setting).
        """
        scheme = scheme.lower()
        parts: list[bytes] = []
        _field(parts, self.namespace.encode())
        _field(parts, method.upper().encode())
        _field(parts, scheme.encode())
        _field(parts, host.lower().encode())
        default = _DEFAULT_PORTS.get(scheme)
        _field(parts, b"" if port is None or port == default else str(port).encode())
        _field(parts, path.encode("utf-8", "surrogatepass"))
        if self.ignored_params:
            query = [kv for kv in query if kv[0] not in self.ignored_params]
        if self.sort_query and len(query) > 1:
            query = sorted(query, key=_name)  # sorted() is stable: repeated names keep their order
        parts.append(len(query).to_bytes(4, "big"))
        for qname, qvalue in query:
            _field(parts, qname.encode("utf-8", "surrogatepass"))
            _field(parts, qvalue.encode("utf-8", "surrogatepass"))
        for name in self._headers:
            hvalue = header(name)
            if hvalue is None:
                parts.append(_ABSENT)
            else:
                _field(parts, hvalue.encode("utf-8", "surrogatepass"))
        if body_digest is None:
            parts.append(_ABSENT)
        else:
            _field(parts, body_digest)
        parts.append(len(extra).to_bytes(4, "big"))
        for item in extra:
            _field(parts, item.encode("utf-8", "surrogatepass"))
        return hashlib.sha256(b"".join(parts)).hexdigest()


def _name(kv: tuple[str, str]) -> str:
    return kv[0]
