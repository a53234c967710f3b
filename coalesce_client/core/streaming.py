"""The streamed responses a late caller may still join: ``Streaming`` (issue 24).

Rules of this module (part of the framework-free core: the standard library only):

* A flight whose shared response streams (``Snapshot.stream``, a ``core/spool.py`` spool) ends
  as soon as the head has arrived; a caller of its key that comes after that, while the body is
  still arriving, would send a second request for the same body. When the storage does not take
  the stream (the writer's pending map answers the late callers otherwise), the leader keeps the
  response here, under the flight's key, until its body ends: a later call of the key takes it
  as a follower of that flight would (``pipeline.py``: the follower rules, the caller's own
  directives; a refresh skips it), with status "coalesced" and the flight's reason.
* An entry never holds its spool alive: it holds the spool by a weak reference only, and the
  response without its stream. A spool that nobody else holds (no caller's response, no reader)
  is gone, and its entry with it (the weak reference's callback), so that the face's producer
  still stops when nobody wants the body (``client/pump.py``); the entries are as many as the
  spools alive, and each holds no body.
* A body that ended, complete or failed, is never handed out: ``take`` checks its spool first
  and drops the entry (a complete body is not stored: a new caller makes its own request). No
  timer, no task: the entry goes at its first lookup after the end, or with its spool.
* Invalidations drop the entries of their keys (``forget``, ``forget_url``) and ``clear`` all.

See ``docs/architecture.md``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

from ..spec.snapshot import StreamedBody
from .records import FlightResult

__all__ = ["Streaming"]


@dataclass(frozen=True, slots=True)
class _Entry:
    """A streamed response kept for late callers: everything of it but its stream."""

    result: FlightResult  # its shared response without its stream (module rules)
    stream: weakref.ref[StreamedBody]
    url_key: str | None


class Streaming:
    """The streamed responses of ended flights whose bodies still arrive (module rules)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}  # by flight key; the pipeline reads it directly

    def keep(self, fkey: str, result: FlightResult, url_key: str | None) -> None:
        """Keep ``result`` for the late callers of ``fkey`` while its shared body arrives."""
        shared = result.shared
        stream = None if shared is None else shared.stream
        if shared is None or stream is None or getattr(stream, "done", True):
            return
        entries = self.entries

        def gone(_: object) -> None:  # the spool is gone: so is its entry, if still its own
            # (maybe in another thread, one that dropped the last reference: a pop, never a del)
            if entries.get(fkey) is entry:
                entries.pop(fkey, None)

        try:
            ref = weakref.ref(stream, gone)
        except TypeError:  # a stream without weak references (not a spool): not kept
            return
        bare = replace(shared, stream=None)
        entry = _Entry(FlightResult(None, bare, result.variant, reason=result.reason), ref, url_key)
        entries[fkey] = entry

    def take(self, fkey: str) -> FlightResult | None:
        """The flight result kept for ``fkey`` while its body still arrives, else None."""
        entry = self.entries.get(fkey)
        if entry is None:
            return None
        stream = entry.stream()
        if stream is None or getattr(stream, "done", True):  # ended: never handed out again
            del self.entries[fkey]
            return None
        result = entry.result
        assert result.shared is not None  # keep() keeps shared responses only
        return result._replace(shared=replace(result.shared, stream=stream))

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)

    def forget_url(self, url_key: str) -> None:
        """Drop the entries of the URL whose URL key this is (an invalidation)."""
        for key in [k for k, e in self.entries.items() if e.url_key == url_key]:
            del self.entries[key]

    def clear(self) -> None:
        self.entries.clear()
