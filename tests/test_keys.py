"""keys.py: which requests share a key, which never do, and how header names are checked."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coalesce_client.core.keys import CREDENTIAL_HEADERS, KeyMaker, UrlParts, normalize_headers

HEX64 = re.compile(r"[0-9a-f]{64}")
ROOT = UrlParts("http", "h", None, "/", [])


def make_key(
    km: KeyMaker | None = None,
    *,
    method: str = "GET",
    scheme: str = "http",
    host: str = "example.com",
    port: int | None = None,
    path: str = "/",
    query: Sequence[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    body_digest: bytes | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The key of one request; ``headers`` are looked up by name, case-insensitively."""
    if km is None:
        km = KeyMaker()
    by_name = {name.lower(): value for name, value in (headers or {}).items()}
    url = UrlParts(scheme, host, port, path, list(query))
    return km.request_key(method, url, by_name.get, body_digest=body_digest, extra=extra)


ACCEPT = KeyMaker(key_headers=("accept",))

# (id, KeyMaker, request a, request b): both requests ask for the same resource.
SAME: list[tuple[str, KeyMaker | None, dict[str, Any], dict[str, Any]]] = [
    ("scheme case", None, {"scheme": "http"}, {"scheme": "HTTP"}),
    ("host case", None, {"host": "example.com"}, {"host": "EXAMPLE.Com"}),
    ("http default port", None, {"port": None}, {"port": 80}),
    (
        "https default port",
        None,
        {"scheme": "https", "port": None},
        {"scheme": "https", "port": 443},
    ),
    (
        "https default port with upper-case scheme",
        None,
        {"scheme": "HTTPS", "port": 443},
        {"scheme": "https", "port": None},
    ),
    ("method case", None, {"method": "get"}, {"method": "GET"}),
    ("query order", None, {"query": [("a", "1"), ("b", "2")]}, {"query": [("b", "2"), ("a", "1")]}),
    (
        "ignored param",
        KeyMaker(ignored_params=frozenset({"utm_source"})),
        {"query": [("q", "x")]},
        {"query": [("utm_source", "mail"), ("q", "x")]},
    ),
    (
        "ignored param with another value",
        KeyMaker(ignored_params=frozenset({"utm_source"})),
        {"query": [("q", "x"), ("utm_source", "a")]},
        {"query": [("q", "x"), ("utm_source", "b")]},
    ),
    (
        "header not in key_headers",
        ACCEPT,
        {"headers": {"User-Agent": "a"}},
        {"headers": {"User-Agent": "b"}},
    ),
    (
        "key header name case",
        ACCEPT,
        {"headers": {"Accept": "text/html"}},
        {"headers": {"ACCEPT": "text/html"}},
    ),
    (
        "credential_headers=() opts out",
        KeyMaker(credential_headers=()),
        {"headers": {"Authorization": "Bearer alice", "Cookie": "s=1"}},
        {"headers": {"Authorization": "Bearer bob", "Cookie": "s=2"}},
    ),
    ("same body digest", None, {"body_digest": b"\x01" * 32}, {"body_digest": b"\x01" * 32}),
    ("same extra", None, {"extra": ["acct-1"]}, {"extra": ["acct-1"]}),
]

# (id, KeyMaker, request a, request b): different resources, or different users.
DIFFERENT: list[tuple[str, KeyMaker | None, dict[str, Any], dict[str, Any]]] = [
    ("host", None, {"host": "a.example"}, {"host": "b.example"}),
    ("scheme", None, {"scheme": "http"}, {"scheme": "https"}),
    ("explicit non-default port", None, {"port": None}, {"port": 8080}),
    ("https port 80 is not default", None, {"scheme": "https"}, {"scheme": "https", "port": 80}),
    ("two non-default ports", None, {"port": 8080}, {"port": 8081}),
    ("path case", None, {"path": "/A"}, {"path": "/a"}),
    ("path", None, {"path": "/a"}, {"path": "/a/"}),
    ("query value", None, {"query": [("a", "1")]}, {"query": [("a", "2")]}),
    ("query absent vs empty value", None, {"query": []}, {"query": [("a", "")]}),
    (
        "repeated names keep their order",
        None,
        {"query": [("a", "1"), ("a", "2")]},
        {"query": [("a", "2"), ("a", "1")]},
    ),
    (
        "repeated names keep their order among others",
        None,
        {"query": [("b", "0"), ("a", "1"), ("a", "2")]},
        {"query": [("a", "2"), ("b", "0"), ("a", "1")]},
    ),
    (
        "sort_query=False keeps order significant",
        KeyMaker(sort_query=False),
        {"query": [("a", "1"), ("b", "2")]},
        {"query": [("b", "2"), ("a", "1")]},
    ),
    (
        "a param that is not ignored",
        KeyMaker(ignored_params=frozenset({"utm_source"})),
        {"query": [("q", "x")]},
        {"query": [("q", "x"), ("utm_medium", "mail")]},
    ),
    ("GET vs HEAD", None, {"method": "GET"}, {"method": "HEAD"}),
    ("GET vs POST", None, {"method": "GET"}, {"method": "POST"}),
    ("HEAD vs POST", None, {"method": "HEAD"}, {"method": "POST"}),
    (
        "key header value",
        ACCEPT,
        {"headers": {"Accept": "text/html"}},
        {"headers": {"Accept": "application/json"}},
    ),
    ("key header absent vs empty", ACCEPT, {"headers": {}}, {"headers": {"Accept": ""}}),
    ("key header absent vs present", ACCEPT, {"headers": {}}, {"headers": {"Accept": "*/*"}}),
    (
        "authorization without key_headers",
        None,
        {"headers": {"Authorization": "Bearer alice"}},
        {"headers": {"Authorization": "Bearer bob"}},
    ),
    (
        "cookie without key_headers",
        None,
        {"headers": {"Cookie": "session=alice"}},
        {"headers": {"Cookie": "session=bob"}},
    ),
    (
        "proxy-authorization without key_headers",
        None,
        {"headers": {"Proxy-Authorization": "Basic YQ=="}},
        {"headers": {"Proxy-Authorization": "Basic Yg=="}},
    ),
    (
        "anonymous vs authorized",
        None,
        {"headers": {}},
        {"headers": {"Authorization": "Bearer alice"}},
    ),
    ("credential absent vs empty", None, {"headers": {}}, {"headers": {"Cookie": ""}}),
    (
        "credential header also listed in key_headers",
        KeyMaker(key_headers=("authorization", "accept")),
        {"headers": {"Authorization": "Bearer alice"}},
        {"headers": {"Authorization": "Bearer bob"}},
    ),
    (
        "custom credential header",
        KeyMaker(credential_headers=("x-api-key",)),
        {"headers": {"X-Api-Key": "alice"}},
        {"headers": {"X-Api-Key": "bob"}},
    ),
    ("body digest None vs empty", None, {"body_digest": None}, {"body_digest": b""}),
    ("body digest", None, {"body_digest": b"\x01" * 32}, {"body_digest": b"\x02" * 32}),
    ("namespace", KeyMaker(namespace="a"), {}, {"__km__": KeyMaker(namespace="b")}),
    ("empty namespace vs some", None, {}, {"__km__": KeyMaker(namespace="x")}),
    ("extra absent vs present", None, {"extra": []}, {"extra": ["acct-1"]}),
    ("extra value", None, {"extra": ["acct-1"]}, {"extra": ["acct-2"]}),
    ("extra empty string vs none", None, {"extra": []}, {"extra": [""]}),
]


def _key_of(km: KeyMaker | None, request: dict[str, Any]) -> str:
    request = dict(request)
    km = request.pop("__km__", km)
    return make_key(km, **request)


@pytest.mark.parametrize(
    ("km", "a", "b"), [case[1:] for case in SAME], ids=[case[0] for case in SAME]
)
def test_same_resource_shares_a_key(
    km: KeyMaker | None, a: dict[str, Any], b: dict[str, Any]
) -> None:
    assert _key_of(km, a) == _key_of(km, b)


@pytest.mark.parametrize(
    ("km", "a", "b"), [case[1:] for case in DIFFERENT], ids=[case[0] for case in DIFFERENT]
)
def test_different_requests_get_different_keys(
    km: KeyMaker | None, a: dict[str, Any], b: dict[str, Any]
) -> None:
    assert _key_of(km, a) != _key_of(km, b)


def test_key_headers_given_in_any_case_split_the_key_once_normalized() -> None:
    upper = KeyMaker(key_headers=normalize_headers(["ACCEPT"], "key_headers"))
    request: dict[str, Any] = {"headers": {"Accept": "text/html"}}
    assert make_key(upper, **request) == make_key(ACCEPT, **request)
    assert make_key(upper, **request) != make_key(upper, headers={"Accept": "text/plain"})


def test_key_is_64_lowercase_hex() -> None:
    key = make_key(
        KeyMaker(namespace="ns", key_headers=("accept",)),
        method="POST",
        host="Example.COM",
        path="/Upper/Case",
        query=[("Q", "Value")],
        headers={"Accept": "TEXT/HTML", "Authorization": "Bearer ABCDEF"},
        body_digest=b"\xff" * 32,
        extra=["EXTRA"],
    )
    assert HEX64.fullmatch(key)


def test_key_is_deterministic_across_key_makers() -> None:
    request: dict[str, Any] = {"path": "/x", "query": [("a", "1")], "headers": {"Cookie": "c"}}
    assert make_key(KeyMaker(), **request) == make_key(KeyMaker(), **request)


@pytest.mark.parametrize("header", ["Authorization", "Cookie", "Proxy-Authorization"])
def test_credential_value_never_appears_in_the_key(header: str) -> None:
    # Hex-looking secrets: the only way they could show up in a hex key is by being copied in.
    secret = "0123456789abcdef0123"
    key = make_key(headers={header: secret})
    assert secret not in key
    assert secret[:8] not in key
    assert HEX64.fullmatch(key)


def test_header_lookup_uses_lower_case_names() -> None:
    asked: list[str] = []

    def header(name: str) -> str | None:
        asked.append(name)
        return None

    KeyMaker(key_headers=("accept",)).request_key("GET", ROOT, header)
    assert asked == [*CREDENTIAL_HEADERS, "accept"]


def test_credential_listed_in_key_headers_is_looked_up_once() -> None:
    asked: list[str] = []

    def header(name: str) -> str | None:
        asked.append(name)
        return None

    km = KeyMaker(key_headers=("cookie", "accept"))
    km.request_key("GET", ROOT, header)
    assert asked.count("cookie") == 1


# -- go-chi/stampede traps: each is a way a real coalescer has served the wrong response ----------


def test_stampede_trap_query_is_part_of_the_key() -> None:
    # stampede keyed on the path only: every search returned the first search's results.
    assert make_key(path="/search", query=[("q", "a")]) != make_key(
        path="/search", query=[("q", "b")]
    )


def test_stampede_trap_method_is_part_of_the_key() -> None:
    # A POST must never be answered with a GET's response (nor the other way round).
    assert make_key(method="GET", path="/items") != make_key(method="POST", path="/items")


def test_stampede_trap_path_case_is_kept() -> None:
    # Paths are case-sensitive (RFC 3986 §6.2.2.1): /Users and /users are different resources.
    assert make_key(path="/Users") != make_key(path="/users")


BOUNDARY_SHIFTS: list[tuple[str, KeyMaker | None, dict[str, Any], dict[str, Any]]] = [
    (
        "path into query name",
        None,
        {"path": "/ab", "query": [("c", "d")]},
        {"path": "/a", "query": [("bc", "d")]},
    ),
    (
        "query name into value",
        None,
        {"query": [("a", "bc")]},
        {"query": [("ab", "c")]},
    ),
    (
        "query pair split in two",
        None,
        {"query": [("a", "b=c")]},
        {"query": [("a", "b"), ("c", "")]},
    ),
    (
        "query value into next pair",
        KeyMaker(sort_query=False),
        {"query": [("a", "1b"), ("", "2")]},
        {"query": [("a", "1"), ("b", "2")]},
    ),
    (
        "value shifted between two key headers",
        KeyMaker(key_headers=("x-a", "x-b")),
        {"headers": {"X-A": "12", "X-B": "3"}},
        {"headers": {"X-A": "1", "X-B": "23"}},
    ),
    (
        "value shifted between two credential headers",
        None,
        {"headers": {"Authorization": "ab", "Cookie": "c"}},
        {"headers": {"Authorization": "a", "Cookie": "bc"}},
    ),
    (
        "host into port",
        None,
        {"host": "example.com1", "port": 8},
        {"host": "example.com", "port": 18},
    ),
    (
        "host into path",
        None,
        {"host": "example.com", "path": "/x/y"},
        {"host": "example.com/x", "path": "/y"},
    ),
    (
        "namespace into method",
        None,
        {"__km__": KeyMaker(namespace="G"), "method": "ET"},
        {"__km__": KeyMaker(namespace=""), "method": "GET"},
    ),
    (
        "extra items",
        None,
        {"extra": ["ab", "c"]},
        {"extra": ["a", "bc"]},
    ),
    (
        "last query value into extra",
        None,
        {"query": [("a", "bc")], "extra": []},
        {"query": [("a", "b")], "extra": ["c"]},
    ),
    (
        "last header value into body digest",
        KeyMaker(key_headers=("x-a",)),
        {"headers": {"X-A": "ab"}, "body_digest": b"c"},
        {"headers": {"X-A": "a"}, "body_digest": b"bc"},
    ),
]


@pytest.mark.parametrize(
    ("km", "a", "b"),
    [case[1:] for case in BOUNDARY_SHIFTS],
    ids=[case[0] for case in BOUNDARY_SHIFTS],
)
def test_stampede_trap_field_boundaries_cannot_be_shifted(
    km: KeyMaker | None, a: dict[str, Any], b: dict[str, Any]
) -> None:
    # stampede summed per-field hashes and other coalescers concatenate fields: moving text from
    # one field into the next then gives the same key. Length-prefixed fields cannot collide.
    assert _key_of(km, a) != _key_of(km, b)


# -- properties -----------------------------------------------------------------------------------

small_text = st.text(max_size=6)
distinct_pairs = st.lists(st.tuples(small_text, small_text), max_size=6, unique_by=lambda kv: kv[0])


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_permutation_of_distinct_query_names_gives_the_same_key(data: st.DataObject) -> None:
    query = data.draw(distinct_pairs)
    shuffled = data.draw(st.permutations(query))
    assert make_key(query=query) == make_key(query=shuffled)


# A tiny alphabet with the separators in it makes equal and near-equal structures common.
tiny = st.text(alphabet="ab=&/?", max_size=3)
structure = st.tuples(tiny, st.lists(st.tuples(tiny, tiny), max_size=3))


def _normalized(path: str, query: list[tuple[str, str]], sort_query: bool) -> object:
    return (path, tuple(sorted(query, key=lambda kv: kv[0]) if sort_query else query))


@pytest.mark.parametrize("sort_query", [True, False])
@settings(max_examples=150, deadline=None)
@given(a=structure, b=structure)
def test_keys_are_equal_exactly_when_normalized_path_and_query_are_equal(
    sort_query: bool, a: tuple[str, list[tuple[str, str]]], b: tuple[str, list[tuple[str, str]]]
) -> None:
    km = KeyMaker(sort_query=sort_query)
    same_structure = _normalized(*a, sort_query) == _normalized(*b, sort_query)
    same_key = make_key(km, path=a[0], query=a[1]) == make_key(km, path=b[0], query=b[1])
    assert same_key == same_structure


# -- normalize_headers ----------------------------------------------------------------------------


def test_normalize_headers_lower_cases_dedups_and_keeps_order() -> None:
    names = ["X-Trace", "Accept", "accept", "ACCEPT-Language", "x-trace", "Accept"]
    assert normalize_headers(names, "key_headers") == ("x-trace", "accept", "accept-language")


def test_normalize_headers_accepts_any_iterable() -> None:
    assert normalize_headers(iter(["A", "b"]), "key_headers") == ("a", "b")
    assert normalize_headers((), "key_headers") == ()


@pytest.mark.parametrize(
    "names",
    [
        pytest.param("Accept", id="bare string"),
        pytest.param(b"Accept", id="bare bytes"),
        pytest.param([""], id="empty name"),
        pytest.param(["Accept", "x:y"], id="colon"),
        pytest.param(["Accept:"], id="trailing colon"),
        pytest.param(["Accépt"], id="non-ascii"),
        pytest.param([" Accept"], id="leading space"),
        pytest.param(["Accept "], id="trailing space"),
        pytest.param(["   "], id="only spaces"),
        pytest.param([b"accept"], id="bytes name"),
        pytest.param([None], id="None name"),
    ],
)
def test_normalize_headers_rejects_bad_names_naming_the_option(names: Any) -> None:
    with pytest.raises(ValueError, match="my_option"):
        normalize_headers(names, "my_option")


def test_digests_stay_those_of_earlier_versions() -> None:
    """A key is where a stored entry is found again: a new encoding would orphan every entry
    (and leave the old URL indexes unread by an invalidation). Issue 20 remembers encoded parts;
    the bytes, so the digests, stay those computed before it."""
    km = KeyMaker(namespace="ns", key_headers=("accept",))
    url = UrlParts("HTTPS", "Example.com", 8443, "/p%20q", [("b", "=2"), ("a", "")])
    headers = {"authorization": "Bearer t", "accept": "*/*"}
    assert (
        km.request_key("get", url, headers.get, body_digest=b"d", extra=("x:1",))
        == "d63b00ab078b4c2521f1a041ea6e58296ef67ca310c8df7c5befbbb50464774a"
    )
    assert km.url_key_of(url) == "21433a12f80ca54c097761bab85d80916b6d09ada370676d1a185d11e21d2cac"
    assert (
        KeyMaker().request_key("GET", ROOT._replace(host="h"), {}.get)
        == "40b2deeeff1c371c80fb0bc621a33528377421bbc1c7fc2bb5d173ad7838a9af"
    )


request_parts = st.tuples(
    st.sampled_from(["GET", "get", "HEAD"]),
    st.sampled_from(["http", "HTTPS"]),
    st.sampled_from(["h", "H", "x.example"]),
    st.sampled_from([None, 80, 443, 8080]),
    st.sampled_from(["/", "/a", "/A"]),
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "utm"]), st.sampled_from(["", "=1"])), max_size=3
    ),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(request_parts, min_size=1, max_size=8))
def test_a_key_maker_used_many_times_gives_the_keys_of_a_fresh_one(
    requests: list[tuple[Any, ...]],
) -> None:
    """Issue 20's remembered parts (origin, the last path and query) never leak from one
    request into the next, also when a caller changes its query list afterwards."""

    def fresh() -> KeyMaker:
        return KeyMaker(namespace="n", ignored_params=frozenset({"utm"}))

    shared = fresh()
    for method, scheme, host, port, path, query in requests:
        url = UrlParts(scheme, host, port, path, list(query))
        assert shared.request_key(method, url, {}.get) == fresh().request_key(method, url, {}.get)
        assert shared.url_key_of(url) == fresh().url_key_of(url)
        url.query.append(("b", "=changed"))  # the list it was built from, changed afterwards
        assert shared.url_key_of(url) == fresh().url_key_of(url)


def test_a_request_without_headers_has_the_key_of_one_whose_headers_are_all_absent() -> None:
    # header=None (client/call.py: a call that sends no header at all) writes every header
    # field absent at once: the same bytes, so the same key, as a header() answering None.
    km = KeyMaker(namespace="n", key_headers=("accept", "x-extra"))
    url = UrlParts("https", "example.com", None, "/a", [("q", "1")])
    assert km.request_key("GET", url, None) == km.request_key("GET", url, lambda name: None)
    assert km.request_key("GET", url, None) != km.request_key("GET", url, {"accept": ""}.get)
