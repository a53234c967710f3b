"""The request rules both faces share (spec/requests.py, spec/conditional.py, spec/invalidation.py):
table tests without an event loop, then the behaviour they fixed in the middleware, through a
real origin on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin as LocalOrigin

from coalesce_client import coalesce_middleware
from coalesce_client.spec import requests
from coalesce_client.spec.conditional import Validators, answers_not_modified, validators_of
from coalesce_client.spec.invalidation import Origin, invalidation_targets
from coalesce_client.spec.requests import Asked, Wanted, asked_by
from coalesce_client.spec.snapshot import Snapshot

# -- asked_by: what a request's own Cache-Control / Pragma asks ------------------------------------

ASKED = [
    # (Cache-Control, Pragma) -> Asked, or None
    ((None, None), None),
    (("", ""), None),
    ((None, "x-other"), None),
    ((None, "no-cache"), Asked(None, True, False)),
    (("max-age=5", "no-cache"), Asked(Wanted(max_age=5), False, False)),  # §5.4: CC wins
    (("no-cache", None), Asked(None, True, False)),
    (("max-age=0", None), Asked(Wanted(max_age=0), True, False)),
    (("max-age=10", None), Asked(Wanted(max_age=10), False, False)),
    (("min-fresh=3", None), Asked(Wanted(min_fresh=3), False, False)),
    (("only-if-cached", None), Asked(Wanted(only_if_cached=True), False, False)),
    (("max-stale=7", None), Asked(Wanted(max_stale=7), False, False)),
    (("no-store", None), Asked(None, False, True)),
    (("no-transform", None), Asked(None, False, False)),
    (("no-cache, no-store, max-age=3", None), Asked(Wanted(max_age=3), True, True)),
]


@pytest.mark.parametrize(("fields", "expected"), ASKED)
def test_asked_by_reads_cache_control_else_pragma(
    fields: tuple[str | None, str | None], expected: Asked | None
) -> None:
    cache_control, pragma = fields
    found = {"cache-control": cache_control, "pragma": pragma}
    assert asked_by(found.get) == expected


def test_the_header_sets_are_those_of_rfc_9110_and_9111() -> None:
    unshared, validation = set(requests.UNSHARED_HEADERS), set(requests.VALIDATION_HEADERS)
    assert unshared == {"range", "if-match", "if-unmodified-since", "if-range"}
    assert validation == {"if-none-match", "if-modified-since"}
    assert not unshared & validation
    assert set(requests.VALIDATED_METHODS) == {"GET", "HEAD"}


# -- answers_not_modified: a 304 from a fresh stored response --------------------------------------

DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
LATER = "Wed, 21 Oct 2015 08:00:00 GMT"
EARLIER = "Wed, 21 Oct 2015 07:00:00 GMT"
NOT_MODIFIED = [
    # (stored status, stored headers, If-None-Match, If-Modified-Since) -> 304?
    (200, (("ETag", '"a"'),), '"a"', None, True),
    (200, (("ETag", 'W/"a"'),), '"b", "a"', None, True),
    (200, (("ETag", '"a"'),), '"b"', None, False),
    (200, (("ETag", '"a"'),), "*", None, True),
    (200, (("ETag", '"a"'),), '"b"', LATER, False),  # If-None-Match decides alone
    (200, (("Last-Modified", DATE),), None, LATER, True),
    (200, (("Last-Modified", DATE),), None, DATE, True),
    (200, (("Last-Modified", DATE),), None, EARLIER, False),
    (200, (("Date", DATE),), None, LATER, True),  # no Last-Modified: the Date
    (204, (("ETag", '"a"'),), '"a"', None, True),
    (206, (("ETag", '"a"'),), '"a"', None, True),
    (301, (("ETag", '"a"'),), '"a"', None, False),  # RFC 9110 §13.2.1: only a 2xx
    (404, (("ETag", '"a"'),), '"a"', None, False),
    (200, (("ETag", '"a"'),), None, None, False),
]


@pytest.mark.parametrize(("status", "headers", "inm", "ims", "expected"), NOT_MODIFIED)
def test_answers_not_modified_for_a_2xx_only(
    status: int,
    headers: tuple[tuple[str, str], ...],
    inm: str | None,
    ims: str | None,
    expected: bool,
) -> None:
    stored = Snapshot(status, "", headers, "/u", "GET", b"body", response_time=1.0)
    assert answers_not_modified(stored, Validators(inm, ims)) is expected


def test_answers_not_modified_dates_a_response_without_dates_by_its_arrival() -> None:
    stored = Snapshot(200, "OK", (), "/u", "GET", b"", response_time=1445412480.0)  # DATE
    assert answers_not_modified(stored, Validators(None, LATER))
    assert not answers_not_modified(stored, Validators(None, EARLIER))


def test_validators_of_reads_the_two_fields() -> None:
    fields = {"if-none-match": '"a"', "if-modified-since": DATE, "if-match": '"b"'}
    assert validators_of(fields.get) == Validators('"a"', DATE)
    nothing: dict[str, str] = {}
    assert validators_of(nothing.get) == Validators(None, None)


# -- invalidation_targets: same-origin Location and Content-Location -------------------------------

_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    return Origin(parts.scheme, parts.hostname, parts.port or _PORTS.get(parts.scheme))


def _resolve(base: str) -> Callable[[str], str]:
    def resolve(ref: str) -> str:
        if ref.startswith("!"):  # what this resolver takes for no URI reference
            raise ValueError(ref)
        return urljoin(base, ref)

    return resolve


HERE = "https://example.com/a/b"
TARGETS = [
    # (Location, Content-Location) -> targets, in order
    ((None, None), []),
    (("", None), []),  # empty: passed over
    ((None, "  "), [HERE]),  # blank: the empty reference, the request's own URL (RFC 3986 §5.2)
    (("/new", None), ["https://example.com/new"]),
    ((" c ", "/d?x=1"), ["https://example.com/a/c", "https://example.com/d?x=1"]),
    (("https://example.com:443/e", None), ["https://example.com:443/e"]),
    (("//other.example/x", "https://example.com:8443/y"), []),  # other origins
    (("http://example.com/x", None), []),  # another scheme: another origin
    (("mailto:someone@example.com", "urn:isbn:0451450523"), []),  # no host
    (("!not a reference", "/kept"), ["https://example.com/kept"]),
]


@pytest.mark.parametrize(("fields", "expected"), TARGETS)
def test_invalidation_targets_are_same_origin_location_then_content_location(
    fields: tuple[str | None, str | None], expected: list[str]
) -> None:
    location, content_location = fields
    found = {"Location": location, "Content-Location": content_location}
    targets = invalidation_targets(found.get, _resolve(HERE), _origin_of, _origin_of(HERE))
    assert targets == expected


# -- the middleware, with a Location that has no host ----------------------------------------------


async def test_the_middleware_answers_an_unsafe_request_whose_location_has_no_host() -> None:
    # Before the shared rule, the middleware compared yarl origins, and URL("mailto:x").origin()
    # raises: the handler's 201 became a 500. A URL without a host is another origin's.
    origin = LocalOrigin(middlewares=[coalesce_middleware(ttl=60)])

    async def item(request: web.Request) -> web.Response:
        if request.method == "POST":
            return web.Response(status=201, headers={"Location": "mailto:someone@example.com"})
        return web.Response(text="item")

    origin.route("/item", item)
    origin.route("/item", item, "POST")
    await origin.start()
    try:
        async with aiohttp.ClientSession() as client:
            async with client.get(origin.url("/item")) as r:
                assert r.headers["X-Cache"] == "MISS"
            async with client.post(origin.url("/item")) as r:
                assert (r.status, r.headers["X-Cache"]) == (201, "BYPASS")
            async with client.get(origin.url("/item")) as r:  # its own URL is still dropped
                assert r.headers["X-Cache"] == "MISS"
        assert origin.calls["/item"] == 3
    finally:
        await origin.stop()
