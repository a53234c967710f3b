"""client/call.py: the key of a client call (README "Who may share a response").

Property tests over ``identify``, with a real ``aiohttp.ClientSession`` that sends nothing: two
calls that differ in any one field that splits the key get different keys; two calls that differ
only in what the key ignores (query order, a default port written out, host case, a fragment)
get the same key.
"""

from __future__ import annotations

import re
import string
import warnings
from dataclasses import dataclass, replace
from http.cookies import Morsel
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from yarl import URL

from coalesce_client import CachePolicy
from coalesce_client.client.call import identify
from coalesce_client.client.checks import check_call
from coalesce_client.core.keys import KeyMaker

KEYS: KeyMaker = CachePolicy().key_maker(namespace="", key_headers=("Accept",))
DEFAULT_PORTS = {"http": 80, "https": 443}
# Call fields that are request headers: a key header, and every default credential header.
HEADERS = {
    "accept": "Accept",
    "authorization": "Authorization",
    "proxy_authorization": "Proxy-Authorization",
    "cookie": "Cookie",
    "x_api_key": "X-Api-Key",
    "x_auth_token": "X-Auth-Token",
    "api_key": "Api-Key",
    "host_header": "Host",
}

token = st.text(string.ascii_letters + string.digits, min_size=1, max_size=8)
header_value = st.text(string.ascii_letters + string.digits + "-_.=/+;", max_size=12)
# A raw query value, from pieces that decode alike: "%41" and "A"; "%FF", "%FE" and "%EF%BF%BD"
# (all U+FFFD once decoded); "+" and "%20".
ALIASES = {"A": "%41", "%41": "A", "%FF": "%FE", "%FE": "%EF%BF%BD", "%EF%BF%BD": "%FF"}
ALIASES.update({"+": "%20", "%20": "+"})
raw_value = st.lists(st.sampled_from([*ALIASES, "%2B", "b"]), max_size=3).map("".join)
_PIECE = re.compile("|".join(re.escape(p) for p in ALIASES))


def aliases(raw: str) -> st.SearchStrategy[str]:
    """Raw values that decode as ``raw`` does (one piece or more swapped for its alias)."""
    return st.just(_PIECE.sub(lambda m: ALIASES[m.group()], raw))


@dataclass(frozen=True)
class Call:
    """One client call, field by field; None: the field is not given."""

    method: str = "GET"
    scheme: str = "http"
    host: str = "example.com"
    port: int | None = None
    path: str = "/"
    query: tuple[tuple[str, str], ...] = ()  # raw (name, value) pairs, distinct names
    fragment: str = ""
    userinfo: tuple[str, str] | None = None
    accept: str | None = None  # the headers named in HEADERS
    authorization: str | None = None
    proxy_authorization: str | None = None
    cookie: str | None = None
    x_api_key: str | None = None
    x_auth_token: str | None = None
    api_key: str | None = None
    host_header: str | None = None
    cookies: tuple[tuple[str, str], ...] | None = None
    auth: tuple[str, str] | None = None
    allow_redirects: bool | None = None
    auto_decompress: bool | None = None
    max_redirects: int | None = None
    body: bytes | None = None

    def url(self) -> URL:
        """The URL as a user writes it (URL.build would drop a default port)."""
        userinfo = "" if self.userinfo is None else "{}:{}@".format(*self.userinfo)
        port = "" if self.port is None else f":{self.port}"
        query = "?" + "&".join(f"{k}={v}" for k, v in self.query) if self.query else ""
        fragment = f"#{self.fragment}" if self.fragment else ""
        return URL(
            f"{self.scheme}://{userinfo}{self.host}{port}{self.path}{query}{fragment}",
            encoded=True,
        )

    def kwargs(self) -> dict[str, Any]:
        headers = {}
        for field, header in HEADERS.items():
            if getattr(self, field) is not None:
                headers[header] = getattr(self, field)
        kw: dict[str, Any] = {"headers": headers} if headers else {}
        if self.cookies is not None:
            kw["cookies"] = dict(self.cookies)
        if self.auth is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # auth= is deprecated in 3.14
                kw["auth"] = aiohttp.BasicAuth(*self.auth)
        for name in ("allow_redirects", "auto_decompress", "max_redirects"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        if self.body is not None:
            kw["data"] = self.body
        return kw

    def key(self, session: aiohttp.ClientSession) -> str | None:
        kwargs = self.kwargs()
        checked = check_call(session, self.url(), kwargs, {})
        return identify(session, KEYS, self.method, checked, kwargs).key


# A cookie's name: a token that is not one of the attribute names SimpleCookie refuses as a name
# (Expires, Path, Version, ...; http.cookies.Morsel._reserved).
cookie_name = token.filter(lambda t: t.lower() not in Morsel._reserved)  # type: ignore[attr-defined]


# Each field that splits the key, with a strategy for its values and what the value means (two
# values of the same meaning are the same request: an option left out is its default).
def _same(v: Any) -> Any:
    return v


SPLITTING: dict[str, tuple[st.SearchStrategy[Any], Any]] = {
    "method": (st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]), _same),
    "path": (st.lists(token, min_size=1, max_size=3).map(lambda p: "/" + "/".join(p)), _same),
    "query": (raw_value, _same),  # the raw value of the query's last pair (see _with)
    **{field: (st.none() | header_value, _same) for field in HEADERS if field != "host_header"},
    "cookies": (
        st.none()
        | st.dictionaries(cookie_name, token, min_size=1, max_size=3).map(
            lambda d: tuple(sorted(d.items()))
        ),
        _same,
    ),
    "userinfo": (st.none() | st.tuples(token, token), _same),
    "auth": (st.none() | st.tuples(token, token), _same),
    "host_header": (st.none() | token.map(lambda t: t.lower() + ".example"), _same),
    "allow_redirects": (st.none() | st.booleans(), lambda v: v is not False),
    "auto_decompress": (st.none() | st.booleans(), lambda v: v is not False),
    "max_redirects": (st.none() | st.integers(0, 30), lambda v: 10 if v is None else v),
    "body": (st.none() | st.binary(min_size=1, max_size=16), _same),
}


@st.composite
def calls(draw: st.DrawFn) -> Call:
    """A call with every field drawn (never both URL credentials and ``auth=``, nor either with an
    ``Authorization`` header: aiohttp refuses them together)."""
    call = Call(
        scheme=draw(st.sampled_from(["http", "https"])),
        host=draw(token).lower() + ".example",
        port=draw(st.none() | st.sampled_from([8080, 8443])),
        query=tuple(
            draw(st.dictionaries(token, raw_value, max_size=3).map(lambda d: tuple(d.items())))
        ),
    )
    fields = {name: draw(strategy) for name, (strategy, _) in SPLITTING.items() if name != "query"}
    if fields["userinfo"] is not None:
        fields["auth"] = None
    if fields["userinfo"] is not None or fields["auth"] is not None:
        fields["authorization"] = None
    return replace(call, **fields)


def _room_for(call: Call, name: str) -> Call:
    """``call`` without the credentials that aiohttp refuses together with field ``name``."""
    if name == "authorization":
        return replace(call, userinfo=None, auth=None)
    if name in ("auth", "userinfo"):
        return replace(call, authorization=None)
    return call


def _with(call: Call, name: str, value: Any) -> Call:
    """``call`` with one field changed; for the query, the raw value of its last pair (or a
    first pair)."""
    if name == "query":
        name_of_last = call.query[-1][0] if call.query else "t"
        value = (*call.query[:-1], (name_of_last, value))
    return replace(call, **{name: value})


@pytest.mark.parametrize("name", sorted(SPLITTING))
async def test_calls_that_differ_in_one_field_that_splits_the_key_get_different_keys(
    name: str,
) -> None:
    async with aiohttp.ClientSession() as session:

        @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.data())
        def check(data: st.DataObject) -> None:
            a = _room_for(data.draw(calls(), "a"), name)
            strategy, meaning = SPLITTING[name]
            if name == "query":  # half the time, a raw value that decodes as the old one does
                old = a.query[-1][1] if a.query else ""
                strategy = strategy | aliases(old)
            b = _with(a, name, data.draw(strategy, "other value"))
            assume(meaning(getattr(b, name)) != meaning(getattr(a, name)))
            assume(not (b.userinfo and b.auth))
            key_a, key_b = a.key(session), b.key(session)
            assert key_a is not None and key_b is not None
            assert key_a != key_b, (name, a, b)

        check()


async def test_calls_that_differ_only_in_what_the_key_ignores_share_a_key() -> None:
    async with aiohttp.ClientSession() as session:

        @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.data())
        def check(data: st.DataObject) -> None:
            a = data.draw(calls(), "a")
            b = a
            if data.draw(st.booleans(), "reorder the query"):
                b = replace(b, query=tuple(data.draw(st.permutations(b.query))))
            if a.port is None and data.draw(st.booleans(), "write the default port"):
                b = replace(b, port=DEFAULT_PORTS[a.scheme])
            if data.draw(st.booleans(), "change the host's case"):
                n = len(a.host)
                upper = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
                host = "".join(c.upper() if u else c for c, u in zip(a.host, upper, strict=True))
                b = replace(b, host=host)
            b = replace(b, fragment=data.draw(st.text(string.ascii_letters, max_size=5)))
            assert a.key(session) == b.key(session), (a, b)

        check()


async def test_the_property_tests_see_real_differences() -> None:
    """The strategies above do make requests that differ on the wire: a few spot checks."""
    async with aiohttp.ClientSession() as session:
        base = Call(query=(("t", "%FF"),))
        assert base.url().raw_query_string == "t=%FF"
        assert Call(query=(("t", "%FE"),)).key(session) != base.key(session)
        assert Call(port=80).key(session) == Call().key(session)
        assert Call(host="EXAMPLE.com").key(session) == Call().key(session)
        assert Call(userinfo=("a", "b")).url().raw_user == "a"
