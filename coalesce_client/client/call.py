"""One ``CoalescingSession`` call: who else its response may reach, and what is its caller's alone.

Rules of this module (the client face's half of "who may share a response" in
docs/architecture.md; the rule is that no caller's per-call option reaches another caller):

* A call is identified once aiohttp's checks passed (``checks.py``: rejected as aiohttp rejects
  it, on every path, hits included), from what they computed: the URL, headers and JSON body as
  aiohttp will send them.
* **Split the key**: the method; the URL as sent (``params=`` merged as aiohttp merges them, the
  raw query bytes, userinfo as a credential); the credential headers and ``key_headers`` (session
  defaults merged with the call's, as aiohttp merges them); an explicit ``Host``; the cookies that
  will be sent (the session's jar and the call's ``cookies=``); ``auth=``; a body's digest (a JSON
  body's of the bytes aiohttp's serializer writes); and every per-call option that changes the
  request or how its response is read (``SPLIT``).
* **Bypass** (``Identity.key`` None): the preconditions a cache cannot evaluate (``If-Match``,
  ``If-Unmodified-Since``: ``spec/requests.py``, as the middleware: their answers are relative
  to what the caller has), ``Range`` / ``If-Range`` with one of them or on a method other than
  GET and HEAD, ``If-None-Match`` / ``If-Modified-Since`` on a method other than GET and HEAD,
  per-call ``middlewares=`` (they may change anything), a body that cannot be digested (a
  stream, a file), and a malformed header that aiohttp sends (a name that is no token, a control
  character in a value where aiohttp 3.10 lets it through): the origin's answer is its own. A
  GET or HEAD with only ``If-None-Match`` / ``If-Modified-Since`` is answered from storage
  (``Identity.conditional``, ``spec/conditional.py``), never through a flight; so is a GET or
  HEAD with ``Range`` / ``If-Range`` (``Identity.ranged`` too, ``ranges.py``).
* **The caller's alone** (``CALLER_ALONE``): ``timeout`` bounds this caller's wait (the shared
  request runs under the session's timeout) and ``raise_for_status`` applies to this caller's own
  response. The session pops them before a shared request is sent.
* The caller's own ``Cache-Control`` (``spec/requests.py``, ``asked_by``) is read with the
  identity (``Identity.asked``): what it accepts of a stored response, a refresh, ``no-store``.
* Invalidation (RFC 9111 §4.4): ``url_key`` is a URL's identity for ``spec/invalidation.py``,
  built from the same URL parts as the key, by the same URL parser (yarl).
* Vary: ``Identity.header`` answers what the request will really send for a header name: the
  call's headers over the session's defaults, else aiohttp's automatic ones (``Accept``,
  ``Accept-Encoding``, ``User-Agent``, ``Host``) unless skipped.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from http.cookies import Morsel
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ..core.keys import KeyMaker, UrlParts, query_pairs
from ..core.records import Call
from ..core.slots import shell_of
from ..spec.conditional import Validators, validators_of
from ..spec.decisions.reasons import BypassReason
from ..spec.fields import NOT_IN_FIELD_VALUE, TOKEN
from ..spec.ranges import RangeRequest, range_request_of
from ..spec.requests import (
    PRECONDITION_HEADERS,
    UNSHARED_HEADERS,
    VALIDATED_METHODS,
    VALIDATION_HEADERS,
    Asked,
    Wanted,
    asked_by,
    bypass_reason,
)
from ..spec.vary import Header
from .checks import Checked

__all__ = [
    "CALLER_ALONE",
    "SPLIT",
    "Identity",
    "check_base_url",
    "identify",
    "url_key",
]

CALLER_ALONE = frozenset({"timeout", "raise_for_status"})
# Per-call options that change the request sent or how its response is read, with the value that
# changes nothing (a call that passes the default shares the key of one that does not).
SPLIT: dict[str, Any] = {
    "allow_redirects": True,
    "max_redirects": 10,
    "auto_decompress": None,
    "skip_auto_headers": None,
    "proxy": None,
    "proxy_auth": None,
    "proxy_headers": None,
    "ssl": True,
    "verify_ssl": None,
    "fingerprint": None,
    "ssl_context": None,
    "server_hostname": None,
    "compress": None,
    "chunked": None,
    "expect100": False,
    "read_until_eof": True,
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 128,
}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_AUTO_HEADERS: dict[str, str] = {
    **{k.lower(): v for k, v in getattr(aiohttp.ClientRequest, "DEFAULT_HEADERS", {}).items()},
    "user-agent": aiohttp.http.SERVER_SOFTWARE,
}


@dataclass(frozen=True, slots=True)
class Identity:
    """What one call is: its key (None: a bypass), the URL aiohttp will request, and the values
    of the headers it will send (for Vary)."""

    key: str | None
    url: URL
    header: Header
    # What the caller's own Cache-Control asks (RFC 9111 §5.2.1; a Pragma: no-cache counts when
    # there is no Cache-Control, §5.4), or None when it sent neither.
    asked: Asked | None = None
    # The key of the URL's invalidation index (spec/invalidation.py), computed with the key: a
    # hit that goes through fetch() (a disk storage) would otherwise hash the URL again.
    url_key: str | None = None
    # The caller's own If-None-Match and If-Modified-Since, when it sent one: answered from a
    # fresh stored response, never sent through a flight.
    conditional: Validators | None = None
    reason: BypassReason | None = None  # why ``key`` is None (reasons.py)
    # The caller's own Range and If-Range, when it sent one (``conditional`` is then set too):
    # answered from a complete stored response (ranges.py), never sent through a flight.
    ranged: RangeRequest | None = None

    def url_text(self) -> str:
        """The URL without its scheme, as ``CachePolicy.url_ttl`` patterns see it:
        ``host[:port]/path?query``, the host lower-cased, the default port left out."""
        url = self.url
        port = url.explicit_port
        host = (url.raw_host or "").lower()
        if port is not None and port != _DEFAULT_PORTS.get(url.scheme):
            host = f"{host}:{port}"
        return host + url.raw_path_qs

    def keyed(self, key: str | None) -> Identity:
        """This identity with the same ``key`` as another string object, or itself: a face that
        remembers it takes the first call's string (``keys.Sightings``)."""
        if key is self.key or key != self.key:
            return self
        return replace(self, key=key)

    def call(self, ttl: float | None, refresh: bool, wanted: Wanted | None, url_ttl: Any) -> Call:
        """The core's record of this call (``Coalescer.fetch``), with the caller's options:
        ``url_ttl`` (the policy's) says whether there are patterns to match the URL against.
        Positional: half the cost of keywords, on every call that is not a hit (issue 20)."""
        url = self.url_text() if url_ttl else None
        return Call(self.key, self.header, ttl, refresh, url, self.url_key, wanted)


_IdentityShell = shell_of(
    Identity, ("key", "url", "header", "asked", "url_key", "conditional", "reason", "ranged")
)


def identify(
    session: aiohttp.ClientSession,
    keys: KeyMaker,
    method: str,
    checked: Checked,
    kwargs: Mapping[str, Any],
) -> Identity:
    """The identity of a call (module rules) that passed ``checks.check_call``; ``kwargs`` are
    aiohttp's, without ``CALLER_ALONE``."""
    url, merged = checked.url, checked.headers
    header = _sent(session, kwargs, merged, url)
    conditional = ranged = None
    if merged and any(h in merged for h in VALIDATION_HEADERS):  # no header: the common call
        if method not in VALIDATED_METHODS:
            return Identity(None, url, header, reason="conditional request")
        conditional = validators_of(header)
    if kwargs.get("middlewares"):
        return Identity(None, url, header, reason="per-call middlewares")
    if merged:
        if any(h in merged for h in UNSHARED_HEADERS):
            if method not in VALIDATED_METHODS or any(h in merged for h in PRECONDITION_HEADERS):
                return Identity(None, url, header, reason=bypass_reason(merged.__contains__))
            ranged, conditional = range_request_of(header), validators_of(header)
        if not all(map(TOKEN.fullmatch, merged)) or NOT_IN_FIELD_VALUE.search(
            "".join(merged.values())
        ):  # a header that is no header (RFC 9110 §5.1, §5.5): a malformed request, which
            # aiohttp may send (a NUL on 3.10); no stored answer is its own
            return Identity(None, url, header, reason="malformed request")
    body_digest = None
    if method in _BODY_METHODS or "data" in kwargs or checked.json is not None:
        body_digest = _body_digest(kwargs.get("data"), checked.json)
        if body_digest is None:
            return Identity(None, url, header, reason="request body")
    parts = url_parts(url)  # read once: the request key and the URL key both hash them

    def sent(name: str) -> str | None:  # what the key reads of the headers aiohttp sends
        return ", ".join(merged.getall(name)) if name in merged else None

    key = keys.request_key(
        method,
        parts,
        sent if merged else None,  # None: no headers, the common call (keys.py)
        body_digest=body_digest,
        extra=_extra(session, keys, url, kwargs, merged),
    )
    ident = _IdentityShell()  # Identity(...), faster: built on every call not remembered
    ident.key, ident.url, ident.header, ident.url_key = key, url, header, keys.url_key_of(parts)
    ident.asked = asked_by(header) if merged else None  # the caller's Cache-Control or Pragma
    ident.conditional, ident.ranged, ident.reason = conditional, ranged, None
    ident.__class__ = Identity
    return ident  # type: ignore[no-any-return]


def _sent(
    session: aiohttp.ClientSession,
    kwargs: Mapping[str, Any],
    merged: CIMultiDict[str],
    url: URL,
) -> Header:
    """What the request will really send for a header name (module rules: Vary): the merged
    headers, else aiohttp's automatic ones unless skipped."""

    def skipped(name: str) -> bool:  # read only when an automatic header is asked for
        return name in {h.lower() for h in session.skip_auto_headers} or name in {
            h.lower() for h in kwargs.get("skip_auto_headers") or ()
        }

    def header(name: str) -> str | None:
        values = merged.getall(name, None)
        if values is not None:
            return ", ".join(values)
        if (name != "host" and name not in _AUTO_HEADERS) or skipped(name):
            return None
        if name == "host":
            port = url.explicit_port
            return (
                url.raw_host
                if port in (None, _DEFAULT_PORTS.get(url.scheme))
                else (f"{url.raw_host}:{port}")
            )
        return _AUTO_HEADERS.get(name)

    return header


def url_parts(url: URL) -> UrlParts:
    """The parts of an absolute URL that its keys read."""
    return UrlParts(
        url.scheme,
        url.host or "",
        url.explicit_port,
        url.raw_path,
        query_pairs(url.raw_query_string),
    )


def url_key(keys: KeyMaker, url: URL) -> str:
    """The URL key of an absolute URL, from the URL parts ``identify`` keys (module rules)."""
    return keys.url_key_of(url_parts(url))


def _extra(
    session: aiohttp.ClientSession,
    keys: KeyMaker,
    url: URL,
    kwargs: Mapping[str, Any],
    merged: CIMultiDict[str],
) -> list[str]:
    """The key parts beyond the URL, the headers and the body (module rules: split the key)."""
    extra: list[str] = []
    if url.raw_user is not None or url.raw_password is not None:
        extra.append(f"userinfo:{url.raw_user or ''}:{url.raw_password or ''}")
    auth = kwargs.get("auth") or session.auth
    if auth is not None:
        extra.append("auth:" + auth.encode())
    if "host" in merged:
        extra.append("host:" + ", ".join(merged.getall("host")))
    if "cookie" in keys.credential_headers:
        if len(session.cookie_jar):
            jar = session.cookie_jar.filter_cookies(url)
            if jar:
                extra.append("jar:" + "; ".join(f"{k}={m.value}" for k, m in sorted(jar.items())))
        cookies = kwargs.get("cookies")
        if cookies:
            extra.append("cookies:" + _cookies(cookies))
    for name, default in SPLIT.items() if kwargs else ():
        if name in kwargs and kwargs[name] != default:
            extra.append(f"{name}:{_stable(kwargs[name])}")
    return extra


def _cookies(cookies: Any) -> str:
    """Per-call cookies in one canonical form (a dict, pairs, or http.cookies morsels)."""
    items = cookies.items() if hasattr(cookies, "items") else cookies
    out = []
    for name, value in items:
        out.append(f"{name}={value.value if isinstance(value, Morsel) else value}")
    return "; ".join(sorted(out))


def _stable(value: Any) -> str:
    """A text for an option's value that two equal values share (a BasicAuth, a set, a URL)."""
    if isinstance(value, aiohttp.BasicAuth):
        return "basic:" + hashlib.sha256(value.encode().encode()).hexdigest()
    if isinstance(value, (set, frozenset)):
        return repr(sorted(str(v).lower() for v in value))
    if isinstance(value, Mapping):
        return repr(sorted((str(k).lower(), str(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return repr([str(v).lower() for v in value])
    if isinstance(value, (str, int, float, bool, URL)) or value is None:
        return f"{type(value).__name__}:{value}"
    return f"{type(value).__name__}@{id(value):x}"  # an SSLContext, a Fingerprint: by identity


def _body_digest(data: Any, json: bytes | None) -> bytes | None:
    """A digest of a request body we can identify, or None (a stream, a form, a file). ``json``
    is the JSON body as aiohttp serializes it: the bytes sent."""
    if json is not None:
        return b"json:" + hashlib.sha256(json).digest()
    if data is None:
        return b"none"
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return b"data:" + hashlib.sha256(data).digest()
    if isinstance(data, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raw = jsonlib.dumps(sorted(data.items())).encode()
        return b"form:" + hashlib.sha256(raw).digest()
    return None


def check_base_url(value: str | URL | None) -> URL | None:
    if value is None:
        return None
    try:
        url = URL(value)
    except (TypeError, ValueError):
        url = None
    if url is None or not url.absolute or not url.path.endswith("/"):
        raise ValueError(
            f"base_url must be an absolute URL whose path ends with '/', got {value!r}"
        )
    return url
