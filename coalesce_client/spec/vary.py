"""Vary (RFC 9110 §12.5.5, RFC 9111 §4.1): one URL, several stored responses.

Rules of this module (pure functions over plain data, no framework):

* A response with ``Vary`` is stored under a *variant key*: the request's key plus the names it
  varies on and the request's values of those headers (trimmed; an absent header differs from an
  empty one), length-prefixed and hashed like every key. It serves only requests whose values
  are the same.
* Under the request's own key sits a *pointer*: a record that names the varying headers and the
  variant keys stored so far, oldest first, so that a lookup knows which variant to read and an
  invalidation which ones to drop. A pointer is never a response: it is told apart by
  ``POINTER_METHOD``, which no request can have (it is not an HTTP token), and no code path
  replays it.
* ``Vary: *`` (any name ``*``) means the response is a variant of something no request header
  tells: it is never stored nor shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .snapshot import Snapshot

__all__ = [
    "ANY",
    "POINTER_METHOD",
    "Header",
    "pointer",
    "read_pointer",
    "values_of",
    "vary_names",
]

Header = Callable[[str], "str | None"]
"""The request's value of a lower-case header name (repeats joined by ", "), or None."""

ANY: tuple[str, ...] = ("*",)
POINTER_METHOD = "VARY POINTER"  # a space: no HTTP method can be it (RFC 9110 §9.1, a token)


def vary_names(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The header names a response varies on, lower-case, sorted, once each; ``ANY`` for ``*``.

    >>> vary_names([("Vary", "Accept-Language, accept"), ("vary", "Accept")])
    ('accept', 'accept-language')
    >>> vary_names([("Vary", "Accept, *")])
    ('*',)
    """
    names: set[str] = set()
    for name, value in headers:
        if name.lower() != "vary":
            continue
        for part in value.split(","):
            part = part.strip().lower()
            if part == "*":
                return ANY
            if part:
                names.add(part)
    return tuple(sorted(names))


def values_of(names: tuple[str, ...], header: Header) -> tuple[str | None, ...]:
    """The request's values of ``names``, trimmed (RFC 9111 §4.1); None where absent."""
    out: list[str | None] = []
    for name in names:
        value = header(name)
        out.append(None if value is None else value.strip())
    return tuple(out)


def pointer(
    names: tuple[str, ...], variants: tuple[str, ...], url: str, stored_at: float, expires_at: float
) -> Snapshot:
    """The record kept under a URL's own key: the names it varies on, its variants, oldest first."""
    return Snapshot(
        status=200,
        reason="",
        headers=(("Vary", ", ".join(names)),),
        url=url,
        method=POINTER_METHOD,
        body="\n".join(variants).encode(),
        stored_at=stored_at,
        expires_at=expires_at,
    )


def read_pointer(snap: Snapshot) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(names, variant keys) of a pointer; None for an ordinary response."""
    if snap.method != POINTER_METHOD:
        return None
    names = vary_names(snap.headers)
    variants = tuple(snap.body.decode("ascii", "replace").split("\n")) if snap.body else ()
    return names, variants
