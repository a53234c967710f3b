"""The pipeline's decisions as data (RFC 9111, RFC 5861): pure functions returning small variants.

Rules of this package:

* Each decision is a function of plain data (a stored ``Snapshot``, ``now``, the caller's
  ``Wanted``, numbers the core computed from its policy) that returns one of a few frozen
  variants; a variant that answers "no" carries a ``reason`` code (``reasons.py``). Nothing here
  awaits, reads a clock or imports the core: the core's driver does the I/O, matches on the
  variant and ends each match with ``assert_never``.
* Each module's header holds its transition table, one row per way through the function, and
  ``tests/test_decisions_*.py`` has one test row per table row (no event loop).
* Variants without data of their own are module constants, so that a decision costs no
  allocation on the paths every call takes (a miss, a hit, a follower that takes the answer).

The decisions: ``reuse.py`` (what is stored, for one call), ``storing.py`` (a response: store
and share, share only, or neither), ``failure.py`` (a failed origin: stale-if-error or the
failure stands), ``followers.py`` (does a follower take its leader's answer).
"""

from __future__ import annotations

from typing import NoReturn

__all__ = ["assert_never"]


def assert_never(value: NoReturn) -> NoReturn:
    """The end of a match over a closed set of variants: ``typing.assert_never`` (Python 3.11+),
    here for 3.10 too. A type checker proves the line unreachable; at run time it names the
    variant that was not handled."""
    raise AssertionError(f"unhandled variant: {value!r}")
