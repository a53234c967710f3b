"""Option checks shared by the policy, both faces, the storages and the command.

Rules of this module:

* One message style: ``"<option> must be <what>, got <value!r>"``, always a ``ValueError`` that
  names the option the user wrote, never ``TypeError`` or ``OverflowError``: a number too large for
  a float (``10**400``) or for the backends (``2**63`` bytes) is a bad value like any other.
* ``bool`` is never a number here (``True`` is not one second).
* Each check returns the value in the form the caller keeps (``float`` seconds, ``int`` bytes, a
  tuple of lower-case header names), so a caller validates and converts in one line.
* Standard library only: this is part of the framework-free core.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .spec.fields import TOKEN

__all__ = [
    "MAX_INT64",
    "check_callable",
    "check_collection",
    "check_count",
    "check_flag",
    "check_header_name",
    "check_header_names",
    "check_seconds",
    "check_seconds_or_none",
    "check_string",
    "is_seconds",
]

MAX_INT64 = 2**63 - 1  # the largest size any backend can represent (SQLite integers, Redis)


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
    >>> check_seconds(10**400, "ttl")
    Traceback (most recent call last):
    ...
    ValueError: ttl must be a non-negative number of seconds, got 1000...000
    """
    if not is_seconds(value) or (positive and value == 0):
        what = "a positive" if positive else "a non-negative"
        raise ValueError(f"{option} must be {what} number of seconds, got {_show(value)}")
    return float(value)


def check_seconds_or_none(value: Any, option: str, *, positive: bool = False) -> float | None:
    """None, or ``value`` as float seconds (a wait that may be unbounded)."""
    if value is None:
        return None
    try:
        return check_seconds(value, option, positive=positive)
    except ValueError as exc:
        raise ValueError(f"{exc.args[0].replace(' seconds,', ' seconds or None,', 1)}") from None


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


def check_collection(value: Any, option: str, item_ok: Any, what: str) -> tuple[Any, ...]:
    """The items of a collection (not a single string), each passing ``item_ok``.

    ``None``, a number or a string where a collection belongs is a ``ValueError`` naming the
    option, as is any item that ``item_ok`` refuses.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{option} must be a collection of {what}, got {_show(value)}")
    items = tuple(value)
    for item in items:
        if not item_ok(item):
            raise ValueError(f"{option}: {item!r} is not one of {what}")
    return items


def check_header_name(value: Any, option: str) -> str:
    """One header name, an RFC 9110 token (``"X Cache"`` and ``"X-A:"`` are not)."""
    if not isinstance(value, str) or not TOKEN.fullmatch(value):
        raise ValueError(f"{option} must be a header name (an RFC 9110 token), got {_show(value)}")
    return value


def check_header_names(names: Any, option: str) -> tuple[str, ...]:
    """Lower-case header names from any iterable of strings, repeats dropped, order kept.

    >>> check_header_names({"Accept"}, "key_headers")
    ('accept',)
    >>> check_header_names("Accept", "key_headers")
    Traceback (most recent call last):
    ...
    ValueError: key_headers must be a collection of header names, not a single string
    """
    if isinstance(names, (str, bytes)):
        raise ValueError(f"{option} must be a collection of header names, not a single string")
    if not isinstance(names, Iterable):
        raise ValueError(f"{option} must be a collection of header names, got {_show(names)}")
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or not TOKEN.fullmatch(name):
            raise ValueError(f"{option}: {name!r} is not a valid header name")
        low = name.lower()
        if low not in out:
            out.append(low)
    return tuple(out)


def _show(value: Any) -> str:
    """``repr`` kept short: a 400-digit number is shown by its ends."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:4]}...{text[-3:]}"
