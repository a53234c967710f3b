"""Failure: what a flight answers when the origin failed (RFC 5861 §4, RFC 9111 §4.2.4).

Rules of this module (pure; ``now`` and the stale-if-error window are parameters):

* A failure is an exception of the request (a connection error, a timeout) or an answer of
  ``ERROR_STATUSES`` (500, 502, 503, 504, RFC 5861 §4); an exception that carries another status
  is the origin's answer (a face's raised 404), not a failure.
* Within its stale-if-error window past its freshness, the flight's prior (what is stored for
  its key) answers instead, and every caller of the flight gets it, ``"stale"``; else the
  failure stands: the exception is raised to every caller, an error response is what they get.
* The window is the policy's reading of the stored response (0 when the origin forbids stale,
  §4.2.4: ``must-revalidate``, ``no-cache``; in a shared cache ``proxy-revalidate``, ``s-maxage``).

Transition table (the first row that matches)::

    prior   status of the failure          window           -> variant         reason
    none    -                              -                -> FailureStands   not stored
    some    a status not in ERROR_STATUSES -                -> FailureStands   not an error
    some    none (an exception), or 5xx    0                -> FailureStands   no stale-if-error
    some    none, or 5xx                   stale for longer -> FailureStands   past stale-if-error
    some    none, or 5xx                   within it        -> StaleIfError (the prior)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from ..snapshot import Snapshot
from .reasons import NotSavedReason

__all__ = ["ERROR_STATUSES", "Failure", "FailureStands", "StaleIfError", "on_failure"]

# Answers of the origin that stale-if-error covers (RFC 5861 §4), besides a failed request.
ERROR_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class StaleIfError:
    """The stored response answers the flight, stale."""

    stored: Snapshot


@dataclass(frozen=True, slots=True)
class FailureStands:
    """The failure is the flight's answer (raised, or the error response shared as any other)."""

    reason: NotSavedReason


Failure = StaleIfError | FailureStands

_STANDS = {reason: FailureStands(reason) for reason in get_args(NotSavedReason)}


def on_failure(prior: Snapshot | None, status: object, now: float, window: float) -> Failure:
    """The flight's answer when the origin failed (the module's table). ``status``: the error
    response's, or an exception's ``status`` attribute (None without one); ``window``: the
    prior's stale-if-error seconds (``StaleWindows.if_error``).

    >>> prior = Snapshot(200, "OK", (), "http://x/", "GET", b"", expires_at=100.0)
    >>> on_failure(prior, 503, 130.0, 60.0) == StaleIfError(prior)
    True
    >>> on_failure(prior, 404, 130.0, 60.0)
    FailureStands(reason='not an error')
    """
    if prior is None:
        return _STANDS["not stored"]
    if status is not None and status not in ERROR_STATUSES:
        return _STANDS["not an error"]
    if window <= 0:
        return _STANDS["no stale-if-error"]
    if now - prior.expires_at > window:
        return _STANDS["past stale-if-error"]
    return StaleIfError(prior)
