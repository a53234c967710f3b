"""What the client face needs of aiohttp's client beyond its public API, in one place.

Rules of this module (docs/architecture.md, the client face):

* The only module of the client face that reads what aiohttp keeps to itself (an attribute whose
  name starts with ``_``). Each use says which aiohttp versions it was checked on; the suite
  runs on the oldest and the newest supported (3.10.0 and 3.14.5), so a release that changes
  one fails here first, and only this module changes.
* Read once, at import: nothing here is on a call's path.
"""

from __future__ import annotations

import inspect

import aiohttp

__all__ = ["KNOWN_KWARGS"]


def _request_kwargs() -> frozenset[str]:
    """The keyword arguments this aiohttp's ``ClientSession.request`` takes."""
    # Checked on aiohttp 3.10.0 and 3.14.5: the public ClientSession.request(method, url,
    # **kwargs) passes its keyword arguments on to the private ClientSession._request, whose
    # signature names each of them (keyword-only or positional-or-keyword).
    try:
        params = inspect.signature(aiohttp.ClientSession._request).parameters
    except (TypeError, ValueError):  # pragma: no cover - a build without introspection
        return frozenset()
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return frozenset(
        name
        for name, p in params.items()
        if name not in {"self", "method", "str_or_url"} and p.kind in kinds
    )


# What check_call accepts; empty (nothing is refused) if the signature cannot be read.
KNOWN_KWARGS = _request_kwargs()
