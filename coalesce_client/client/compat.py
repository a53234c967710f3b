"""What the client face needs of aiohttp's client beyond its public API, in one place.

Rules of this module (docs/architecture.md, the client face):

* The only module of the client face that reads what aiohttp keeps to itself (an attribute whose
  name starts with ``_``, or a helper of a module aiohttp does not document). Each use says which
  aiohttp versions it was checked on; the suite runs on the oldest and the newest supported
  (3.10.0 and 3.14.5), so a release that changes one fails here first, and only this module
  changes.
* Each function here is aiohttp's own step, called as ``ClientSession._request`` calls it, so that
  a call is refused (or not) exactly as aiohttp refuses it (``checks.py`` orders the steps).
* What can be read at import is read at import; what is called per call is one attribute read
  and one call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

import aiohttp
from aiohttp import client as _client
from aiohttp import client_reqrep as _reqrep
from aiohttp import helpers as _helpers
from aiohttp import http_writer as _writer
from aiohttp import payload as _payload
from multidict import CIMultiDict, MultiDict
from yarl import URL

__all__ = [
    "KNOWN_KWARGS",
    "KNOWN_SESSION_KWARGS",
    "STATUS_LINE",
    "allowed_schemes",
    "base_url_of",
    "body_payload",
    "build_url",
    "default_auth",
    "json_bytes",
    "merge_params",
    "merge_ssl",
    "prepare_headers",
    "serialize_headers",
    "strip_auth_from_url",
]


def _keywords(function: Any, positional: set[str]) -> frozenset[str]:
    """The keyword arguments ``function`` takes, but ``positional``."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):  # pragma: no cover - a build without introspection
        return frozenset()
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return frozenset(
        name for name, p in params.items() if name not in positional and p.kind in kinds
    )


# Checked on aiohttp 3.10.0 and 3.14.5: the public ClientSession.request(method, url, **kwargs)
# passes its keyword arguments on to the private ClientSession._request, whose signature names
# each of them (keyword-only or positional-or-keyword). Empty (nothing is refused) if the
# signature cannot be read.
KNOWN_KWARGS = _keywords(aiohttp.ClientSession._request, {"self", "method", "str_or_url"})
# ClientSession.__init__ names each of its options (3.10.0, 3.14.5).
KNOWN_SESSION_KWARGS = _keywords(aiohttp.ClientSession.__init__, {"self"})


# The session's default headers merged with a call's: ``prepare_headers(session, headers)``
# (3.10.0, 3.14.5: the private ``ClientSession._prepare_headers``; a malformed ``headers=`` raises
# multidict's error). Unbound, so that a call pays for no wrapper.
prepare_headers: Callable[[aiohttp.ClientSession, Any], CIMultiDict[str]] = (
    aiohttp.ClientSession._prepare_headers
)
# The URL a call requests, joined to the session's own base URL: ``build_url(session, url)``
# (3.10.0, 3.14.5: the private ``ClientSession._build_url``; 3.10.0 asserts that a URL joined to
# a base URL is a path).
build_url: Callable[[aiohttp.ClientSession, Any], URL] = aiohttp.ClientSession._build_url


def base_url_of(session: aiohttp.ClientSession) -> URL | None:
    """The base URL a session was built with (3.10.0, 3.14.5: the private ``_base_url``)."""
    return session._base_url


def counts_cookies(jar: aiohttp.abc.AbstractCookieJar) -> bool:
    """Whether ``jar._cookie_count`` is ``len(jar)``, read without a call: aiohttp's own
    ``CookieJar``, its ``__len__`` not overridden, on an aiohttp that keeps the count (3.14.5:
    ``__len__`` returns it; 3.10.0 and 3.12.0 count by iterating: no such attribute). A hit
    reads it on every call (``len(jar)``: about 700 instructions, issue 20)."""
    return (
        type(jar).__len__ is aiohttp.CookieJar.__len__
        and type(getattr(jar, "_cookie_count", None)) is int
        and jar._cookie_count == len(jar)  # type: ignore[attr-defined]
    )


def allowed_schemes(session: aiohttp.ClientSession) -> AbstractSet[str]:
    """The URL schemes a session sends: 3.14.5 asks its connector (``""`` included: a relative
    URL is refused later, for its missing host); 3.10.0 has one module-wide set."""
    schemes: AbstractSet[str] | None = getattr(
        session.connector, "allowed_protocol_schema_set", None
    )
    return _client.ALLOWED_PROTOCOL_SCHEMA_SET if schemes is None else schemes  # type: ignore[attr-defined]


def merge_ssl(kwargs: Any) -> Any:
    """aiohttp's merge of ``ssl`` with the deprecated ``verify_ssl``, ``ssl_context`` and
    ``fingerprint`` (3.10.0, 3.14.5: the private ``client._merge_ssl_params``), which refuses
    a wrong type or a contradictory pair."""
    return _client._merge_ssl_params(  # type: ignore[attr-defined]
        kwargs.get("ssl", True),
        kwargs.get("verify_ssl"),
        kwargs.get("ssl_context"),
        kwargs.get("fingerprint"),
    )


def json_bytes(session: aiohttp.ClientSession, value: Any) -> bytes:
    """The body aiohttp sends for ``json=value``: the session's ``json_serialize_bytes`` when it
    has one (3.14), else its ``json_serialize`` encoded to UTF-8 (``payload.JsonPayload``)."""
    dumps_bytes: Callable[[Any], bytes] | None = getattr(session, "_json_serialize_bytes", None)
    if dumps_bytes is not None:
        return dumps_bytes(value)
    return session.json_serialize(value).encode("utf-8")


def default_auth(session: aiohttp.ClientSession, url: URL) -> aiohttp.BasicAuth | None:
    """The session's ``auth=`` where aiohttp applies it: 3.14.5 only to its base URL's origin
    (the private ``_base_url_origin``), 3.10.0 everywhere."""
    auth = session.auth
    if auth is None:
        return None
    base = getattr(session, "_base_url", None)
    if base is not None and hasattr(session, "_base_url_origin"):
        return auth if session._base_url_origin == url.origin() else None
    return auth


# Checked on aiohttp 3.10.0 (which merges the two queries through a MultiDict) and 3.14.5 (which
# calls yarl's URL.extend_query): the source of ClientRequest.__init__ says which this one does.
_EXTENDS_QUERY = "extend_query" in inspect.getsource(_reqrep.ClientRequest.__init__)


def merge_params(url: URL, params: Any) -> URL:
    """``url`` with ``params=`` merged into its query, as this aiohttp's ``ClientRequest`` merges
    them (yarl's error for a value it refuses)."""
    if _EXTENDS_QUERY:
        return url.extend_query(params)
    query = MultiDict(url.query)
    query.extend(url.with_query(params).query)
    return url.with_query(query)


def body_payload(data: Any) -> None:
    """Build aiohttp's payload for ``data=`` as ``ClientRequest.update_body_from_data`` does
    (3.10.0, 3.14.5: the payload registry, else a ``FormData``), for its errors (``TypeError``
    for a body aiohttp cannot send). Never a ``FormData`` of the caller's: it can be used once."""
    if data is None or isinstance(data, aiohttp.FormData):
        return
    try:
        _payload.PAYLOAD_REGISTRY.get(data, disposition=None)
    except _payload.LookupError:
        aiohttp.FormData(data)()


strip_auth_from_url = _helpers.strip_auth_from_url  # (url without userinfo, its BasicAuth)


# The writer's checks of the headers it writes (3.10.0, 3.14.5: ``http_writer._serialize_headers``,
# the C version when built), called as ``serialize_headers(STATUS_LINE, headers)``: a value that
# is not a string is a ``TypeError``; a CR or LF (and on 3.14 NUL and other controls) in a name or
# a value a ``ValueError`` (header injection).
serialize_headers: Callable[[str, CIMultiDict[str]], bytes] = _writer._serialize_headers
STATUS_LINE = "GET / HTTP/1.1"
