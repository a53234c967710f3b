"""A call refused as plain aiohttp refuses it, before any answer is given: hits included.

Rules of this module (docs/architecture.md, the client face: "an argument aiohttp would reject is
rejected on every path, with the exception type aiohttp raises for it"):

* ``check_call`` takes aiohttp's own steps, in the order ``ClientSession._request`` takes them
  (then ``ClientRequest``'s, then the writer's), each through aiohttp's own code where aiohttp has
  it (``compat.py``): unknown arguments; ``ssl`` and its deprecated companions; ``data`` with
  ``json``; the JSON body; the headers merged with the session's; the URL (built, its scheme, its
  host: ``InvalidUrlClientError`` / ``NonHttpUrlClientError``); ``skip_auto_headers``; the proxy
  URL; the ``timeout``; credentials in the URL with ``auth=``, and either with an
  ``Authorization`` header; the cookies; ``params=``; ``auth``'s type; and last the headers as the
  writer serializes them (a value that is not a string, a CR or LF), after the body is built (its
  error first; built only then: aiohttp itself builds it for a call it sends). So a call with two
  faults raises aiohttp's first, and a call aiohttp accepts is accepted.
* What it computes on the way is what the call's identity is built from (``Checked``): the URL
  as aiohttp requests it (``params=`` merged), the headers as aiohttp merges them, and the JSON
  body as aiohttp's serializer writes it (the bytes sent, never a re-sorted copy).
* A relative URL with no base URL is aiohttp's ``InvalidUrlClientError``, with a hint to give
  ``base_url``: the one case where that hint is the fix.
* What a call's response decides (``raise_for_status``, connection errors) is not here: a hit
  applies the caller's ``raise_for_status`` as aiohttp does (``calls.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import aiohttp
from multidict import CIMultiDict, istr
from yarl import URL

from .compat import (
    KNOWN_KWARGS,
    STATUS_LINE,
    allowed_schemes,
    body_payload,
    build_url,
    default_auth,
    json_bytes,
    merge_params,
    merge_ssl,
    prepare_headers,
    serialize_headers,
    strip_auth_from_url,
)

__all__ = ["UNSET", "Checked", "check_call", "request_url", "wait_bound"]

UNSET: Any = object()  # no timeout= given: the session's own
_SSL_OPTIONS = ("ssl", "verify_ssl", "ssl_context", "fingerprint")
_NO_BASE_URL = "a relative URL and no base_url: give CoalescingSession(base_url=...)"


class Checked(NamedTuple):
    """What aiohttp will send for a call that passed its checks (module rules)."""

    url: URL  # absolute, params= merged, userinfo kept (it splits the key)
    headers: CIMultiDict[str]  # the session's defaults merged with the call's
    json: bytes | None  # the JSON body as aiohttp serializes it, when json= was given


def check_call(
    session: aiohttp.ClientSession,
    str_or_url: Any,
    kwargs: Mapping[str, Any],
    own: Mapping[str, Any],
) -> Checked:
    """aiohttp's checks of a call, in aiohttp's order (module rules). ``kwargs`` are aiohttp's
    options but the caller's own (``own``: ``timeout``, ``raise_for_status``)."""
    body = _check_options(session, kwargs) if kwargs else None
    headers = prepare_headers(session, kwargs.get("headers"))
    url = request_url(session, str_or_url)
    if "skip_auto_headers" in kwargs or "proxy" in kwargs:
        _check_connection_options(kwargs)
    if own:
        wait_bound(own.get("timeout", UNSET))  # aiohttp's TimeoutHandle compares it with 0 here
    bare, auth_from_url = strip_auth_from_url(url)
    if not bare.raw_host:
        # No scheme and no host: a relative URL that no base URL joined (the hint is the fix).
        raise aiohttp.InvalidUrlClientError(bare, None if url.scheme else _NO_BASE_URL)
    auth = kwargs.get("auth")
    if auth and auth_from_url:
        raise ValueError("Cannot combine AUTH argument with credentials encoded in URL")
    if auth is None:
        auth = auth_from_url if auth_from_url is not None else default_auth(session, bare)
    if auth is not None and "Authorization" in headers:
        raise ValueError(
            "Cannot combine AUTHORIZATION header with AUTH argument or credentials encoded in URL"
        )
    if kwargs.get("cookies") is not None:
        aiohttp.CookieJar(unsafe=True).update_cookies(kwargs["cookies"])  # aiohttp's errors
    if kwargs.get("params"):
        url = merge_params(url, kwargs["params"])
    if auth is not None and not isinstance(auth, aiohttp.BasicAuth):
        raise TypeError("BasicAuth() tuple is required instead")
    try:
        serialize_headers(STATUS_LINE, headers)  # the writer's: a value not a string, a CR or LF
    except (TypeError, ValueError):
        body_payload(kwargs.get("data"))  # aiohttp builds the body first: its error first
        raise
    return Checked(url, headers, body)


def request_url(session: aiohttp.ClientSession, str_or_url: Any) -> URL:
    """The URL aiohttp requests for ``str_or_url`` (joined to the session's base URL), or
    aiohttp's exception for it: ``InvalidUrlClientError``, ``NonHttpUrlClientError``."""
    try:
        url = build_url(session, str_or_url)
    except ValueError as exc:
        raise aiohttp.InvalidUrlClientError(str_or_url) from exc
    if url.scheme not in allowed_schemes(session):
        raise aiohttp.NonHttpUrlClientError(url)
    return url


def _check_options(session: aiohttp.ClientSession, kwargs: Mapping[str, Any]) -> bytes | None:
    """The checks aiohttp makes first: unknown arguments, ``ssl``, ``data`` with ``json``, and
    the JSON body (returned as the bytes aiohttp will send)."""
    unknown = kwargs.keys() - KNOWN_KWARGS if KNOWN_KWARGS else ()
    if unknown:
        raise TypeError(
            f"ClientSession._request() got an unexpected keyword argument {min(unknown)!r}"
        )
    if not kwargs.keys().isdisjoint(_SSL_OPTIONS):
        with warnings.catch_warnings():  # aiohttp warns of the deprecated ones when it sends
            warnings.simplefilter("ignore", DeprecationWarning)
            merge_ssl(kwargs)
    json = kwargs.get("json")
    if json is None:
        return None
    if kwargs.get("data") is not None:
        raise ValueError("data and json parameters can not be used at the same time")
    return json_bytes(session, json)


def _check_connection_options(kwargs: Mapping[str, Any]) -> None:
    """``skip_auto_headers`` (names, iterated) and the proxy URL, as aiohttp reads them."""
    skipped = kwargs.get("skip_auto_headers")
    if skipped is not None:
        {istr(name) for name in skipped}
    proxy = kwargs.get("proxy")
    if proxy is not None:
        try:
            URL(proxy)
        except ValueError as exc:
            raise aiohttp.InvalidURL(proxy) from exc


def wait_bound(timeout: Any) -> float | None:
    """The seconds a caller's own ``timeout=`` lets it wait, or None (no bound of its own). As
    aiohttp's: a total that is not above 0 is no bound, one that cannot be compared with 0 a
    ``TypeError``."""
    if timeout is UNSET or timeout is None:
        return None
    total = timeout.total if isinstance(timeout, aiohttp.ClientTimeout) else timeout
    if total is None or not total > 0:
        return None
    return float(total)
