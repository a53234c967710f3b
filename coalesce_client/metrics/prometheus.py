"""Metrics for Prometheus, through prometheus_client (the ``[prometheus]`` extra).

Rules of this module:

* The instruments are ``base.INSTRUMENTS``, named as Prometheus names them (``_total`` on
  counters, ``_seconds`` on durations), each labelled ``face`` and ``name`` before its own labels.
* One set of collectors per registry, whatever the number of sinks: two ``PrometheusMetrics`` on one
  registry (two sessions told apart by ``name``) share them, as a registry refuses a name twice.
* A recorder holds its label children, made once per label value and kept: a record is a dict
  look-up and an ``inc`` or ``observe``.
* prometheus_client is imported when a sink is built, never when this package is imported.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from .base import FOLLOWER_BUCKETS, INSTRUMENTS, Instrument, Recorder

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PrometheusMetrics"]

_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_collectors: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(
            "PrometheusMetrics needs prometheus_client: pip install 'coalesce_client[prometheus]'"
        ) from None
    return prometheus_client


def _collector(client: Any, registry: Any, instrument: Instrument) -> Any:
    labels = ("face", "name", *instrument.labels)
    name = instrument.prometheus
    if instrument.kind == "counter":
        return client.Counter(
            name.removesuffix("_total"), instrument.help, labels, registry=registry
        )
    if instrument.kind == "gauge":
        return client.Gauge(name, instrument.help, labels, registry=registry)
    buckets = _DURATION_BUCKETS if name.endswith("_seconds") else FOLLOWER_BUCKETS
    return client.Histogram(name, instrument.help, labels, registry=registry, buckets=buckets)


def _collectors_of(registry: Any) -> dict[str, Any]:
    with _lock:
        found = _collectors.get(registry)
        if found is None:
            client = _client()
            found = {key: _collector(client, registry, i) for key, i in INSTRUMENTS.items()}
            _collectors[registry] = found
        return found


class PrometheusMetrics:
    """A metrics sink for Prometheus: pass it as ``metrics=`` to any face.

    Parameters:
        registry: the ``prometheus_client.CollectorRegistry`` to register the collectors in;
            prometheus_client's default registry (the one ``start_http_server`` and
            ``generate_latest()`` read) when None.
        name: the ``name`` label of everything this sink records, to tell several sessions or
            middlewares apart on one registry.

    Raises:
        ImportError: prometheus_client is not installed (the ``[prometheus]`` extra).
        ValueError: ``name`` is not a string.
    """

    __slots__ = ("_collectors", "name")

    def __init__(self, registry: CollectorRegistry | None = None, name: str = "default") -> None:
        if not isinstance(name, str):
            raise ValueError(f"name must be a string, got {name!r}")
        client = _client()
        self.name = name
        self._collectors = _collectors_of(client.REGISTRY if registry is None else registry)

    def recorder(self, face: str) -> Recorder:
        """A recorder whose records carry ``face`` and this sink's ``name``."""
        return _PrometheusRecorder(self._collectors, face, self.name)

    def __repr__(self) -> str:
        return f"<PrometheusMetrics name={self.name!r}>"


class _PrometheusRecorder:
    __slots__ = ("_by", "_c", "_fixed", "_plain")

    def __init__(self, collectors: dict[str, Any], face: str, name: str) -> None:
        self._c = collectors
        self._fixed = (face, name)
        # The children without labels of their own, made now; the others on first use.
        self._plain = {
            key: collectors[key].labels(face, name)
            for key, instrument in INSTRUMENTS.items()
            if not instrument.labels
        }
        self._by: dict[tuple[str, ...], Any] = {}

    def _child(self, key: str, *values: str) -> Any:
        at = (key, *values)
        found = self._by.get(at)
        if found is None:
            found = self._by[at] = self._c[key].labels(*self._fixed, *values)
        return found

    def call(self, status: str) -> None:
        self._child("calls", status).inc()

    def not_stored(self, reason: str) -> None:
        self._child("not_stored", reason).inc()

    def upstream(self, seconds: float) -> None:
        self._plain["upstream"].inc()
        self._plain["upstream_duration"].observe(seconds)

    def followers(self, count: int) -> None:
        self._plain["followers"].observe(count)

    def storage_error(self, storage: str, operation: str) -> None:
        self._child("storage_errors", storage, operation).inc()

    def stored(self, entries: int | None, size: int | None) -> None:
        if entries is not None:
            self._plain["stored_entries"].set(entries)
        if size is not None:
            self._plain["stored_bytes"].set(size)

    def lease_wait(self) -> None:
        self._plain["lease_waits"].inc()

    def takeover(self) -> None:
        self._plain["takeovers"].inc()
