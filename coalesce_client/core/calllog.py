"""One DEBUG record per finished call, on the ``coalesce_client`` logger.

Rules of this module (docs/architecture.md, "Observability"):

* A face calls ``log_answer`` once per call it answers, every way out, and only behind the guard
  ``calllog.on is not False and calllog.debugging()``: with DEBUG off, a call pays one module
  attribute read, and nothing is built or formatted. ``on`` is logging's own answer, kept until
  logging changes a level: it clears its loggers' caches then, and the cache of ours does it by
  setting ``on`` back to None (unknown), so that the next call asks logging again.
* The record's message names the status, the reason, the method, the URL without its query, the
  key's first 12 hex digits and the wait and upstream seconds; the same fields are attributes of
  the record (``extra=``) for structured handlers: ``cache_status``, ``cache_reason``, ``method``,
  ``url``, ``key``, ``wait_seconds``, ``upstream_seconds`` (None without a request of its own).
"""

from __future__ import annotations

import logging
from logging import DEBUG
from typing import NamedTuple

from ..spec.snapshot import Snapshot
from .records import Answer

__all__ = ["CallRecord", "debugging", "log_answer", "log_call", "on", "upstream_of"]

log = logging.getLogger("coalesce_client")
on: bool | None = None  # logging's isEnabledFor(DEBUG), or None: ask it (module rules)


class _Cache(dict[int, bool]):
    """The logger's cache of ``isEnabledFor`` by level; cleared by logging on every level change
    (``Manager._clear_cache``), which makes ``on`` unknown again."""

    def clear(self) -> None:
        global on
        on = None
        super().clear()


if isinstance(getattr(log, "_cache", None), dict):  # else: on stays None, logging decides
    log._cache = _Cache(log._cache)  # type: ignore[attr-defined]  # logging's own, typed nowhere

_FROM_A_REQUEST = frozenset({"miss", "coalesced", "bypass", "revalidated"})


class CallRecord(NamedTuple):
    """What the DEBUG record of one call says (module rules)."""

    cache_status: str
    cache_reason: str | None
    method: str
    url: str  # without its query
    key: str | None  # the first 12 hex digits, or None: the call had no key
    wait_seconds: float
    upstream_seconds: float | None


def debugging() -> bool:
    """Whether the DEBUG record is wanted: logging's own answer, kept in ``on``."""
    global on
    enabled = log.isEnabledFor(DEBUG)
    if isinstance(log.__dict__.get("_cache"), _Cache):  # ours, which says when it changes
        on = enabled
    return enabled


def upstream_of(status: str, snap: Snapshot | None) -> float | None:
    """The seconds of the real request behind a response (the leader's for a follower), or None
    for a response from storage."""
    if snap is None or status not in _FROM_A_REQUEST or not snap.response_time:
        return None
    return max(0.0, snap.response_time - snap.request_time)


def log_answer(answer: Answer, method: str, url: str, key: str | None, wait: float) -> None:
    """Log one call answered ``answer`` at DEBUG: ``url`` without its query, ``wait`` seconds."""
    status = answer.status
    record = CallRecord(
        status,
        answer.reason,
        method,
        url,
        None if key is None else key[:12],
        max(0.0, wait),
        upstream_of(status, answer.snapshot),
    )
    log_call(record)


def log_call(record: CallRecord) -> None:
    """Log one finished call at DEBUG (module rules)."""
    log.debug(
        "%s%s %s %s key=%s wait=%.6fs upstream=%s",
        record.cache_status,
        "" if record.cache_reason is None else f" ({record.cache_reason})",
        record.method,
        record.url,
        record.key,
        record.wait_seconds,
        "-" if record.upstream_seconds is None else f"{record.upstream_seconds:.6f}s",
        extra=record._asdict(),
    )
