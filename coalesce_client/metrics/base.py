"""The metrics protocol: what a face records, and where it goes.

Rules of this module (docs/architecture.md, "Observability"):

* A sink (``Metrics``) is given to a face as ``metrics=``; the face asks it once, when it is built,
  for a ``Recorder`` bound to the face's label (``client``, ``server``, ``client-middleware``).
  Every record on a hot path is then one method call on an object whose label children were made
  ahead: no label lookup, no string formatting, no allocation per call.
* The instruments are the same for every sink (``INSTRUMENTS``: one table, read by each sink to
  name its own): calls by cache status, responses not stored by reason, upstream requests and
  their duration, followers per completed flight, storage errors by storage and operation, stored
  entries and bytes where the storage knows them, and the fleet's lease waits and takeovers.
* ``Fanout`` records to several sinks (``metrics=[a, b]``); ``recorder_of`` builds the one a face
  keeps: None (nothing recorded, nothing imported) when no sink is given.
* Standard library only: a sink's own library (prometheus_client, opentelemetry-api) is imported by
  that sink when it is built, so that without the extra nothing is imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["FACES", "INSTRUMENTS", "Fanout", "Instrument", "Metrics", "Recorder", "recorder_of"]

FACES = ("client", "server", "client-middleware")


@dataclass(frozen=True, slots=True)
class Instrument:
    """One instrument: its Prometheus and OpenTelemetry names, kind, unit and own labels."""

    prometheus: str
    opentelemetry: str
    kind: str  # "counter", "histogram" or "gauge"
    help: str
    labels: tuple[str, ...] = ()
    unit: str = ""


INSTRUMENTS = {
    "calls": Instrument(
        "coalesce_calls_total",
        "coalesce.calls",
        "counter",
        "Finished calls, by cache status.",
        ("status",),
        "{call}",
    ),
    "not_stored": Instrument(
        "coalesce_not_stored_total",
        "coalesce.not_stored",
        "counter",
        "Responses that were not stored (or not served from storage), by reason.",
        ("reason",),
        "{response}",
    ),
    "upstream": Instrument(
        "coalesce_upstream_requests_total",
        "coalesce.upstream.requests",
        "counter",
        "Real requests sent to the origin (or handler runs).",
        (),
        "{request}",
    ),
    "upstream_duration": Instrument(
        "coalesce_upstream_duration_seconds",
        "coalesce.upstream.duration",
        "histogram",
        "Duration of the real requests sent to the origin.",
        (),
        "s",
    ),
    "followers": Instrument(
        "coalesce_flight_followers",
        "coalesce.flight.followers",
        "histogram",
        "Callers that shared each completed flight besides its leader.",
        (),
        "{call}",
    ),
    "storage_errors": Instrument(
        "coalesce_storage_errors_total",
        "coalesce.storage.errors",
        "counter",
        "Storage operations that failed, by storage and operation.",
        ("storage", "operation"),
        "{error}",
    ),
    "stored_entries": Instrument(
        "coalesce_stored_entries",
        "coalesce.stored.entries",
        "gauge",
        "Entries held by the storage, where it knows.",
        (),
        "{entry}",
    ),
    "stored_bytes": Instrument(
        "coalesce_stored_bytes",
        "coalesce.stored.bytes",
        "gauge",
        "Bytes held by the storage, where it knows.",
        (),
        "By",
    ),
    "lease_waits": Instrument(
        "coalesce_fleet_lease_waits_total",
        "coalesce.fleet.lease_waits",
        "counter",
        "Flights that waited on another process's lease (a fleet on Redis).",
        (),
        "{wait}",
    ),
    "takeovers": Instrument(
        "coalesce_fleet_takeovers_total",
        "coalesce.fleet.takeovers",
        "counter",
        "Leases taken over from a holder that went away (a fleet on Redis).",
        (),
        "{takeover}",
    ),
}

# Followers per flight: most flights have none, a stampede hundreds.
FOLLOWER_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


@runtime_checkable
class Recorder(Protocol):
    """What a face records, bound to the face's labels. Every method is cheap and never raises."""

    def call(self, status: str) -> None: ...
    def not_stored(self, reason: str) -> None: ...
    def upstream(self, seconds: float) -> None: ...
    def followers(self, count: int) -> None: ...
    def storage_error(self, storage: str, operation: str) -> None: ...
    def stored(self, entries: int | None, size: int | None) -> None: ...
    def lease_wait(self) -> None: ...
    def takeover(self) -> None: ...


@runtime_checkable
class Metrics(Protocol):
    """A metrics sink: ``PrometheusMetrics``, ``OpenTelemetryMetrics``, or one of yours."""

    def recorder(self, face: str) -> Recorder:
        """A recorder whose records carry ``face`` (one of ``FACES``) and this sink's name."""
        ...


class Fanout:
    """Records to every recorder it holds (``metrics=[a, b]``)."""

    __slots__ = ("_all",)

    def __init__(self, recorders: Iterable[Recorder]) -> None:
        self._all = tuple(recorders)

    def call(self, status: str) -> None:
        for r in self._all:
            r.call(status)

    def not_stored(self, reason: str) -> None:
        for r in self._all:
            r.not_stored(reason)

    def upstream(self, seconds: float) -> None:
        for r in self._all:
            r.upstream(seconds)

    def followers(self, count: int) -> None:
        for r in self._all:
            r.followers(count)

    def storage_error(self, storage: str, operation: str) -> None:
        for r in self._all:
            r.storage_error(storage, operation)

    def stored(self, entries: int | None, size: int | None) -> None:
        for r in self._all:
            r.stored(entries, size)

    def lease_wait(self) -> None:
        for r in self._all:
            r.lease_wait()

    def takeover(self) -> None:
        for r in self._all:
            r.takeover()


def recorder_of(metrics: Metrics | Iterable[Metrics] | None, face: str) -> Recorder | None:
    """The recorder a face keeps for ``metrics=``: None records nothing.

    Raises ``ValueError`` naming ``metrics`` for anything that is not a sink or sinks.
    """
    if metrics is None:
        return None
    sinks = [metrics] if isinstance(metrics, Metrics) else _sinks(metrics)
    recorders = [sink.recorder(face) for sink in sinks]
    return recorders[0] if len(recorders) == 1 else Fanout(recorders)


def _sinks(metrics: object) -> list[Metrics]:
    sinks: list[object] = list(metrics) if isinstance(metrics, Iterable) else [metrics]
    bad = [m for m in sinks if not isinstance(m, Metrics)]
    if bad or not sinks:
        raise ValueError(
            "metrics must be a metrics sink (PrometheusMetrics, OpenTelemetryMetrics, or an "
            f"object with a recorder(face) method) or a list of them, got {metrics!r}"
        )
    return [m for m in sinks if isinstance(m, Metrics)]
