"""Option checks shared by the policy, both faces, the storages and the command.

Rules of this module:

* One message style: ``"<option> must <be what it must be>, got <value!r>"`` (for an item of a
  collection: ``"<option> must hold only <what>, got <item!r>"``), always a ``ValueError`` that
  names the option the user wrote, never ``TypeError`` or ``OverflowError``: a number too large for
  a float (``10**400``) or for the backends (``2**63`` bytes) is a bad value like any other.
* Every check of an option lives here, once; the modules that take options (the policy, the
  faces, the storages, the command) call these and repeat none of them.
* ``bool`` is never a number here (``True`` is not one second).
* Seconds are a number or a ``datetime.timedelta`` (``Seconds``), whatever the option:
  requests-cache and aiohttp-client-cache users write ``timedelta(hours=1)``. A timedelta is
  its ``total_seconds()``, checked as that number would be (a negative one is refused alike).
* Each check returns the value in the form the caller keeps (``float`` seconds, ``int`` bytes, a
  tuple of lower-case header names), so a caller validates and converts in one line.
* Standard library and ``spec/`` only: a leaf below the core (see ``docs/architecture.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from .spec.fields import TOKEN

__all__ = [
    "MAX_INT64",
    "Seconds",
    "check_callable",
    "check_choice",
    "check_collection",
    "check_count",
    "check_flag",
    "check_header_name",
    "check_header_names",
    "check_seconds",
    "check_seconds_map",
    "check_seconds_or_none",
    "check_string",
    "is_header_name",
    "is_nonempty_string",
    "is_seconds",
    "is_string",
]

MAX_INT64 = 2**63 - 1  # the largest size any backend can represent (SQLite integers, Redis)
Seconds = float | timedelta  # what an option in seconds takes (module rules)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_seconds(value: Any) -> bool:
    """A finite, non-negative number of seconds (``10**400`` and NaN are not)."""
    if not _is_number(value):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an int beyond float's range
        return False


def check_seconds(value: Any, option: str, *, positive: bool = False) -> float:
    """``value`` as float seconds; ``positive`` refuses 0.

    >>> check_seconds(5, "ttl")
    5.0
    >>> check_seconds(timedelta(hours=1), "ttl")
    3600.0
    >>> check_seconds(10**400, "ttl")
    Traceback (most recent call last):
    ...
    ValueError: ttl must be a non-negative number of seconds, got 1000...000
    """
    return _seconds(value, option, positive=positive, none_ok=False)


def check_seconds_or_none(value: Any, option: str, *, positive: bool = False) -> float | None:
    """None, or ``value`` as float seconds (a wait that may be unbounded).

    >>> check_seconds_or_none(0, "wait_timeout", positive=True)
    Traceback (most recent call last):
    ...
    ValueError: wait_timeout must be a positive number of seconds or None, got 0
    """
    if value is None:
        return None
    return _seconds(value, option, positive=positive, none_ok=True)


def _seconds(value: Any, option: str, *, positive: bool, none_ok: bool) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not is_seconds(seconds) or (positive and seconds == 0):
        raise ValueError(_seconds_wanted(option, value, positive=positive, none_ok=none_ok))
    return float(seconds)


def _seconds_wanted(option: str, value: Any, *, positive: bool, none_ok: bool) -> str:
    what = "a positive" if positive else "a non-negative"
    unbounded = " or None" if none_ok else ""
    return f"{option} must be {what} number of seconds{unbounded}, got {_show(value)}"


def check_seconds_map(
    value: Any, option: str, key_ok: Callable[[Any], bool], keys: str
) -> dict[Any, float]:
    """A mapping of ``keys`` (each passing ``key_ok``) to seconds, as a new dict of float
    seconds; a bad value is named by its key (``status_ttl[404]``).

    >>> check_seconds_map({"a/*": 5}, "url_ttl", is_string, "URL patterns")
    {'a/*': 5.0}
    >>> check_seconds_map({404: -1}, "status_ttl", lambda s: isinstance(s, int), "status codes")
    Traceback (most recent call last):
    ...
    ValueError: status_ttl[404] must be a non-negative number of seconds, got -1
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"{option} must map {keys} to seconds, got {_show(value)}")
    checked = check_collection(value, option, key_ok, keys)
    return {key: check_seconds(value[key], f"{option}[{key!r}]") for key in checked}


def check_count(value: Any, option: str, *, minimum: int = 0, unit: str = "bytes") -> int:
    """A whole number from ``minimum`` to 2**63 - 1 (bytes, entries, variants)."""
    if not (isinstance(value, int) and not isinstance(value, bool)) or not (
        minimum <= value <= MAX_INT64
    ):
        raise ValueError(
            f"{option} must be a whole number of {unit} from {minimum} to 2**63 - 1, "
            f"got {_show(value)}"
        )
    return value


def check_flag(value: Any, option: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{option} must be True or False, got {_show(value)}")
    return value


def check_callable(value: Any, option: str, *, none_ok: bool = False) -> Any:
    if (value is None and none_ok) or callable(value):
        return value
    raise ValueError(
        f"{option} must be callable{' or None' if none_ok else ''}, got {_show(value)}"
    )


def check_string(value: Any, option: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{option} must be a string, got {_show(value)}")
    return value


def check_choice(value: Any, option: str, choices: tuple[str, ...]) -> str:
    """One of a few fixed strings.

    >>> check_choice("rfc", "freshness", ("ttl", "http"))
    Traceback (most recent call last):
    ...
    ValueError: freshness must be "ttl" or "http", got 'rfc'
    """
    if value not in choices:
        wanted = " or ".join(f'"{choice}"' for choice in choices)
        raise ValueError(f"{option} must be {wanted}, got {_show(value)}")
    return str(value)


def check_collection(value: Any, option: str, item_ok: Any, what: str) -> tuple[Any, ...]:
    """The items of a collection (not a single string), each passing ``item_ok``.

    ``None``, a number or a string where a collection belongs is a ``ValueError`` naming the
    option, as is any item that ``item_ok`` refuses.

    >>> check_collection(["GET", ""], "methods", is_nonempty_string, "HTTP method names")
    Traceback (most recent call last):
    ...
    ValueError: methods must hold only HTTP method names, got ''
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{option} must be a collection of {what}, got {_show(value)}")
    items = tuple(value)
    for item in items:
        if not item_ok(item):
            raise ValueError(f"{option} must hold only {what}, got {_show(item)}")
    return items


def is_string(value: Any) -> bool:
    return isinstance(value, str)


def is_nonempty_string(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def is_header_name(value: Any) -> bool:
    """An RFC 9110 token (``"X Cache"`` and ``"X-A:"`` are not)."""
    return isinstance(value, str) and TOKEN.fullmatch(value) is not None


_HEADER_NAMES = "header names (RFC 9110 tokens)"


def check_header_name(value: Any, option: str) -> str:
    """One header name, an RFC 9110 token (``"X Cache"`` and ``"X-A:"`` are not)."""
    if not is_header_name(value):
        raise ValueError(f"{option} must be a header name (an RFC 9110 token), got {_show(value)}")
    return str(value)


def check_header_names(names: Any, option: str) -> tuple[str, ...]:
    """Lower-case header names from any iterable of strings, repeats dropped, order kept.

    >>> check_header_names({"Accept"}, "key_headers")
    ('accept',)
    >>> check_header_names("Accept", "key_headers")
    Traceback (most recent call last):
    ...
    ValueError: key_headers must be a collection of header names (RFC 9110 tokens), got 'Accept'
    """
    checked = check_collection(names, option, is_header_name, _HEADER_NAMES)
    return tuple(dict.fromkeys(name.lower() for name in checked))


def _show(value: Any) -> str:
    """``repr`` kept short: a 400-digit number is shown by its ends."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:4]}...{text[-3:]}"
