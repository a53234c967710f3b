"""Reason codes: why a response was not stored, not shared or not served from storage.

Rules of this module:

* One table of codes (``docs/architecture.md``, Observability): a code, once published, keeps
  its meaning; a new code is added here and to that table.
* Codes are plain strings a person can read in a log line and a program can match on; each
  decision's "no" carries one (``Literal`` types, so a misspelt code is a type error).
* ``CacheReason`` is what a caller sees (``CachedResponse.cache_reason``, ``X-Cache-Reason``, the
  log record, the not-stored metric): why its response was not stored nor served from storage.
  ``CACHE_REASONS`` lists them in the documented order (a test checks the guide's table).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "CACHE_REASONS",
    "BypassReason",
    "CacheReason",
    "NotReusedReason",
    "NotSavedReason",
    "NotSharedReason",
    "NotTakenReason",
    "OwnRequestReason",
    "Reason",
    "ShareOnlyReason",
]

NotSharedReason = Literal[
    "streamed",  # the face could not hand the response over as bytes (a streamed body)
    "vary *",  # Vary: * (RFC 9110 §12.5.5): no request header tells which variant it is
    "set-cookie",  # a shared cache, and a response that sets a cookie
    "private",  # Cache-Control: private in a shared cache (RFC 9111 §5.2.2.7)
    "no-store",  # Cache-Control: no-store in a shared cache (RFC 9111 §5.2.2.5)
    "unkeyed input",  # audit="strict": its handler read an input neither keyed nor in Vary
]
"""Why a response reaches no caller but its own (``storing.sharing``)."""

ShareOnlyReason = Literal[
    "should_store veto",  # the policy's should_store filter said no
    "request no-store",  # the caller's own Cache-Control: no-store (the faces: a bypass)
    # The policy's lifetime (spec/lifetime.py's NotStoredReason, every one of them: a type
    # checker proves it where storing.storing hands them on).
    "ttl 0",  # the configured lifetime is 0 (ttl, cache_ttl, status_ttl, url_ttl)
    "no-store",
    "private",
    "status not cacheable",  # a status the policy does not store, or RFC 9111 §3 forbids
    "stale on arrival",  # older than its lifetime when it arrived, no validator to revalidate
    # A body over the policy's max_stored_size, or over what the storage takes of a stream.
    "body over max_stored_size",
    "storage takes no streams",  # a body streamed (over max_body_size); the storage keeps bytes
]
"""Why a response that its flight's callers share is not stored (``storing.storing``)."""

NotReusedReason = Literal[
    "not stored",  # nothing usable stored for this request
    "request no-cache",  # the caller's no-cache (or max-age=0, Pragma: no-cache, refresh=True)
    "stale",  # past its freshness, and nothing allows serving it stale
    "max-age",  # fresh, but older than the caller's max-age (RFC 9111 §5.2.1.1)
    "min-fresh",  # fresh, but not for the caller's min-fresh (RFC 9111 §5.2.1.3)
]
"""Why a stored response does not answer a call as it is (``reuse.reuse``)."""

NotSavedReason = Literal[
    "not stored",  # nothing stored to fall back on
    "not an error",  # the exception is an answer of the origin's (a 404 raised), not a failure
    "no stale-if-error",  # no window: none configured, or the origin forbids stale (§4.2.4)
    "past stale-if-error",  # stale for longer than its window (RFC 5861 §4)
]
"""Why a failure of the origin stands instead of a stale response (``failure.on_failure``)."""

NotTakenReason = Literal[
    "not shared",  # the leader's response was for its caller alone (streamed, private, ...)
    "other variant",  # it varies, and this caller's values differ, in its own variant's round
]
"""Why a follower sends its own request instead of taking its leader's answer."""

Reason = NotSharedReason | ShareOnlyReason | NotReusedReason | NotSavedReason | NotTakenReason
"""Every code (one table)."""

BypassReason = Literal[
    "method not cached",  # a method outside CachePolicy.methods
    "cache=False",  # the caller asked for a pass-through
    "credential header",  # the middleware: a credential header not in key_headers
    "range request",  # Range, If-Range: a partial answer (RFC 9110 §14.2)
    "conditional request",  # a precondition a cache does not evaluate (RFC 9110 §13.1)
    "request body",  # a body that cannot be keyed (a stream, a file; the middleware: any)
    "per-call middlewares",  # a session call's own middlewares= (they may change anything)
    "malformed request",  # a header that is no header (RFC 9110 §5.1, §5.5)
    "pass-through key",  # the key is remembered as not shareable (hit-for-pass, passes.py)
]
"""Why a call takes no part: no lookup, no flight, nothing stored."""

OwnRequestReason = Literal[
    "other variant",  # a follower whose flight answered another Vary variant, twice
    "wait timeout",  # a follower that stopped waiting for its leader (wait_timeout)
    "only-if-cached",  # the caller's only-if-cached, and nothing usable stored (a 504)
    "storage error",  # the storage failed; the call went on without it
]
"""Why a call's own answer, in a flight or after it, is not stored."""

CacheReason = ShareOnlyReason | NotSharedReason | BypassReason | OwnRequestReason
"""What a caller sees: why its response was not stored nor served from storage (module rules)."""


def _codes(union: object) -> tuple[str, ...]:
    """The codes of a union of ``Literal`` types, first seen first."""
    codes: list[str] = []
    for part in get_args(union):
        codes.extend(_codes(part) if get_args(part) and not isinstance(part, str) else [part])
    return tuple(dict.fromkeys(codes))


CACHE_REASONS: tuple[str, ...] = _codes(CacheReason)
"""Every ``CacheReason``, in the documented order."""
