"""Vary (RFC 9110 §12.5.5, RFC 9111 §4.1): one URL, several stored responses.

Rules of this module (pure functions over plain data, no framework):

* A response with ``Vary`` is stored under a *variant key*: the request's key plus the names it
  varies on and the request's values of those headers (trimmed; an absent header differs from an
  empty one), length-prefixed and hashed like every key. It serves only requests whose values
  are the same.
* Under the request's own key, storage keeps a *Vary pointer*, a record of its own that names
  the varying headers and the variant keys stored so far (``storage/records.py``): never a
  response, and not this module's.
* ``Vary: *`` (any name ``*``) means the response is a variant of something no request header
  tells: it is never stored nor shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = [
    "ANY",
    "Header",
    "values_of",
    "vary_names",
]

Header = Callable[[str], "str | None"]
"""The request's value of a lower-case header name (repeats joined by ", "), or None."""

ANY: tuple[str, ...] = ("*",)


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
