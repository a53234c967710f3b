"""A caching reverse proxy: every request goes to an upstream, through an RFC 9111 shared cache.

    python examples/caching_proxy.py --upstream http://127.0.0.1:8000 --port 8001 --face client

Three ways to build it, chosen with ``--face``:

- ``client``: the handler forwards through one
  ``CoalescingSession(shared=True, policy=CachePolicy(freshness="http"))``;
- ``middleware``: ``CoalesceMiddleware`` (a shared cache) with the same policy, in front of a
  handler that forwards through a plain ``aiohttp.ClientSession``;
- ``client-middleware``: the handler forwards through an ``aiohttp.ClientSession`` whose
  middleware is ``client_middleware(shared=True, ...)`` with the same policy (aiohttp >= 3.12).

``ttl=0``: only what the origin allows (its ``Cache-Control``, ``Expires``, ``Last-Modified``) is
stored. The proxy drops hop-by-hop headers both ways (RFC 9110 §7.6.1), passes bodies through as
they are (no decompression), never follows redirects and never keeps cookies.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Iterable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from coalesce_client import (
    CachePolicy,
    CoalesceMiddleware,
    CoalescingSession,
    cache_info,
    client_middleware,
)

HOP_BY_HOP = frozenset(
    {
        *("connection", "keep-alive", "proxy-connection", "te", "trailer", "trailers"),
        *("transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization"),
    }
)
# The origin's word (RFC 9111), and, as a CDN would, its CDN-Cache-Control (RFC 9213) first.
POLICY = CachePolicy(freshness="http", targeted_cache_control=("CDN-Cache-Control",))
UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey[CoalescingSession | aiohttp.ClientSession]("session")


def end_to_end(headers: CIMultiDictProxy[str], drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """The headers minus the hop-by-hop ones (and those the Connection header names)."""
    named = {v.strip().lower() for c in headers.getall("connection", ()) for v in c.split(",")}
    skip = HOP_BY_HOP | named | set(drop)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in skip)


async def forward(request: web.Request) -> web.Response:
    """Send the request upstream (through the app's session) and answer with what came back."""
    url = request.app[UPSTREAM] + request.rel_url.raw_path_qs
    headers = end_to_end(request.headers, drop=("host", "content-length"))
    body = await request.read() if request.body_exists else None
    session = request.app[SESSION]
    try:
        async with session.request(
            request.method, url, headers=headers, data=body, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
    except aiohttp.ClientError as e:  # the upstream is down, or sent something unreadable
        return web.Response(status=502, text=f"upstream: {type(e).__name__}")
    out = end_to_end(upstream.headers, drop=("content-length",))
    info = cache_info(upstream)  # either client face says where it came from
    if info is not None:
        out["X-Cache"] = info.status.upper()
    return web.Response(status=upstream.status, reason=upstream.reason, headers=out, body=payload)


def make_app(upstream: str, face: str) -> web.Application:
    middlewares = [CoalesceMiddleware(ttl=0, policy=POLICY)] if face == "middleware" else []
    app = web.Application(middlewares=middlewares)
    app[UPSTREAM] = upstream.rstrip("/")

    async def session(app: web.Application) -> AsyncIterator[None]:
        # A proxy forwards the client's own headers, keeps no cookies, leaves bodies encoded.
        cache = None
        if face == "client-middleware":  # key_headers=(): as the client face, below
            cache = client_middleware(ttl=0, key_headers=(), policy=POLICY, shared=True)
        plain = aiohttp.ClientSession(
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            **({"middlewares": [cache]} if cache is not None else {}),
        )
        app[SESSION] = plain
        if face == "client":  # key_headers=(): the origin's Vary says which headers matter
            app[SESSION] = CoalescingSession(
                ttl=0, key_headers=(), policy=POLICY, shared=True, session=plain
            )
        yield
        await app[SESSION].close()
        await plain.close()
        if cache is not None:
            await cache.close()

    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    faces = ("client", "middleware", "client-middleware")
    parser.add_argument("--face", choices=faces, default="client")
    args = parser.parse_args()
    web.run_app(make_app(args.upstream, args.face), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
