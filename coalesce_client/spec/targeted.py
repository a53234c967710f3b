"""Targeted cache-control fields (RFC 9213), and which response directives a cache obeys.

Rules of this module (pure functions, standard library only):

* A targeted field (``CDN-Cache-Control``, or any name a policy lists) is a Structured Fields
  Dictionary (RFC 8941 §3.2). A field that is not one is ignored as a whole, as if absent; a
  member whose value has the wrong type is ignored alone (RFC 9213 §2.1).
* A shared cache obeys the first valid targeted field it was told to read, and then ignores
  ``Cache-Control`` and ``Expires`` (§2.2); a private cache, and a shared one without a valid
  targeted field, obeys ``Cache-Control`` with ``Expires``. That choice is made here once
  (``effective_directives``), for every rule that reads directives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .cache_control import (
    ResponseDirectives,
    field_values,
    members,
    parse_response_cache_control,
)

__all__ = [
    "DIRECTIVE_FIELDS",
    "EffectiveDirectives",
    "directive_fields",
    "directives_of",
    "effective_directives",
    "parse_targeted_cache_control",
]

DIRECTIVE_FIELDS = frozenset({"cache-control", "expires"})
"""The fields ``directives_of`` reads, besides the targeted ones."""

# RFC 9213 §2.1: a targeted field is a Structured Fields Dictionary (RFC 8941 §3.2): lower-case
# keys, and bare items: integers, decimals, strings, tokens, byte sequences, booleans.
_SF_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_SF_ITEM = re.compile(
    r"-?[0-9]{1,15}(\.[0-9]{1,3})?"  # an integer or a decimal
    r'|"(?:[ !#-\[\]-~]|\\["\\])*"'  # a string
    r"|[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*"  # a token
    r"|:[A-Za-z0-9+/=]*:|\?[01]"  # a byte sequence, a boolean
)
_SF_INTEGER = re.compile(r"-?[0-9]{1,15}")
# Directives whose value must be an Integer in a targeted field (RFC 9213 §2.1).
_SF_INTEGER_DIRECTIVES = frozenset(
    {"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"}
)


def parse_targeted_cache_control(value: str | None) -> ResponseDirectives | None:
    """The directives of a targeted cache-control field such as ``CDN-Cache-Control``
    (RFC 9213), or None when it is absent, empty or not a valid Structured Fields Dictionary: the
    cache then uses ``Cache-Control`` as if it were not there (§2.2). A member whose value is of
    the wrong type (``max-age="60"``) is ignored. Parameters are ignored.

    >>> parse_targeted_cache_control("max-age=3600, foobar").max_age
    3600
    >>> parse_targeted_cache_control('max-age="3600"').max_age is None
    True
    >>> parse_targeted_cache_control("max-age =100") is None
    True
    """
    if value is None or not value.strip(" \t"):
        return None
    kept = []
    for member in members(value):
        member = member.strip(" \t")
        key, eq, rest = member.partition("=")
        item = rest.partition(";")[0]
        key = key.partition(";")[0] if not eq else key
        if not _SF_KEY.fullmatch(key.lower()) or (eq and not _SF_ITEM.fullmatch(item)):
            return None  # not a Dictionary: the whole field is ignored
        name = key.lower()
        if name in _SF_INTEGER_DIRECTIVES and not (eq and _SF_INTEGER.fullmatch(item)):
            continue  # the wrong type: this directive is ignored
        if not eq or item in ("?1", "?0"):
            if item != "?0":
                kept.append(name)
            continue
        kept.append(f"{name}={item}")
    return parse_response_cache_control(", ".join(kept))


class EffectiveDirectives(NamedTuple):
    """The response directives a cache obeys, and the ``Expires`` value that counts beside them
    (None: absent, or ignored beside a targeted field)."""

    directives: ResponseDirectives
    expires: str | None


_NONE = EffectiveDirectives(parse_response_cache_control(None), None)


def effective_directives(
    headers: Sequence[tuple[str, str]], targeted: Sequence[str], *, shared: bool
) -> EffectiveDirectives:
    """The origin's directives for this cache: in a ``shared`` cache, those of the first field
    of ``targeted`` (lower-case names, such as ``cdn-cache-control``) that is valid, and then
    ``Cache-Control`` and ``Expires`` are ignored (RFC 9213 §2.2); else ``Cache-Control``.

    >>> h = [("Cache-Control", "max-age=5"), ("CDN-Cache-Control", "no-store")]
    >>> effective_directives(h, ("cdn-cache-control",), shared=True).directives.no_store
    True
    >>> effective_directives(h, ("cdn-cache-control",), shared=False).directives.max_age
    5
    """
    return directives_of(
        field_values(headers, directive_fields(DIRECTIVE_FIELDS, targeted, shared=shared)),
        targeted,
        shared=shared,
    )


def directive_fields(
    names: frozenset[str], targeted: Sequence[str], *, shared: bool
) -> frozenset[str]:
    """``names`` and the targeted fields a ``shared`` cache reads: the fields to gather for
    ``directives_of`` (and for the caller's other rules, ``names``)."""
    return names.union(targeted) if shared and targeted else names


def directives_of(
    values: Mapping[str, str], targeted: Sequence[str], *, shared: bool
) -> EffectiveDirectives:
    """``effective_directives`` of a response's fields gathered once (``field_values`` of
    ``directive_fields``): lower-case names to values."""
    if shared:
        for name in targeted:
            targeted_directives = parse_targeted_cache_control(values.get(name))
            if targeted_directives is not None:
                return EffectiveDirectives(targeted_directives, None)
    cache_control, expires = values.get("cache-control"), values.get("expires")
    if cache_control is None and expires is None:
        return _NONE  # the common case, without a new record
    return EffectiveDirectives(parse_response_cache_control(cache_control), expires)
