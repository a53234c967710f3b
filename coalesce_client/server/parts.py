"""What the middleware reads of a request for its key, its URL key and its DEBUG record.

Rules of this module: pure reads of an ``aiohttp.web`` request, nothing kept. The URL parts are
the request's origin (scheme and ``Host``: virtual hosts never share) and its raw path and query
(``core/keys.py`` keys them); a forwarding header's part of the key is its values, or of
``Forwarded`` only its host= and proto= parameters (``spec/requests.py``).
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from ..core.keys import UrlParts, query_pairs
from ..core.policy import CachePolicy
from ..spec.decisions.reasons import CacheReason
from ..spec.invalidation import Origin
from ..spec.requests import bypass_reason, forwarded_part

__all__ = ["base_of", "forwarded_value", "origin_of", "url_of", "url_parts", "why_bypass"]


def forwarded_value(request: web.Request, name: str) -> str | None:
    """A forwarding header's part of the key: its values, or of ``Forwarded`` only its host= and
    proto= parameters (``spec/requests.py``)."""
    if name == "forwarded":
        return forwarded_part(request.forwarded)
    values = request.headers.getall(name, None)
    return None if values is None else ", ".join(values)


def url_of(request: web.Request) -> str:
    """The request's URL without its query (the DEBUG record's)."""
    return f"{request.scheme}://{request.host}{request.path}"


def origin_of(url: URL) -> Origin:
    return Origin(url.scheme, url.host, url.port)


def url_parts(request: web.Request, url: URL) -> UrlParts:
    """The parts of ``url`` (a path and query on the request's origin) that its keys read: the
    query raw, as sent (?t=%FF and ?t=%FE decode alike but differ: core/keys.py)."""
    query = query_pairs(url.raw_query_string)
    return UrlParts(request.scheme, request.host, None, url.raw_path, query)


def base_of(request: web.Request) -> URL:
    """The request's absolute URL, to resolve ``Location`` against. Not ``request.url``: aiohttp
    3.10 builds it with the Host's port in the host, which newer yarl refuses."""
    return URL(f"{request.scheme}://{request.host}").join(request.rel_url)


def why_bypass(
    request: web.Request, policy: CachePolicy, credentials: tuple[str, ...]
) -> CacheReason:
    """Why a request without a key bypasses the middleware (its module rules' list, in order)."""
    if request.method not in policy.methods:
        return "method not cached"
    if request.body_exists:
        return "request body"
    return bypass_reason(request.headers.__contains__, credentials)
