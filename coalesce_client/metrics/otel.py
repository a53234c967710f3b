"""Metrics for OpenTelemetry, through opentelemetry-api (the ``[otel]`` extra).

Rules of this module:

* The instruments are ``base.INSTRUMENTS``, named in the semantic-convention style
  (``coalesce.calls``, ``coalesce.upstream.duration`` in ``s``), made once per meter provider by
  the meter ``coalesce_client``; every record carries the attributes ``face`` and ``name`` and the
  instrument's own.
* A recorder keeps its attribute dictionaries, made once per value: a record is a look-up and an
  ``add``, ``record`` or ``set``. Which SDK (if any) exports them is the application's choice: with
  no SDK configured, the API's no-op instruments record nothing, at almost no cost.
* opentelemetry-api is imported when a sink is built, never when this package is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import FOLLOWER_BUCKETS, INSTRUMENTS, Instrument, Recorder

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["OpenTelemetryMetrics"]

_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
Attributes = dict[str, str]


def _api() -> Any:
    try:
        from opentelemetry import metrics
    except ImportError:
        raise ImportError(
            "OpenTelemetryMetrics needs opentelemetry-api: pip install 'coalesce_client[otel]'"
        ) from None
    return metrics


def _instrument(meter: Any, instrument: Instrument) -> Any:
    name, unit, about = instrument.opentelemetry, instrument.unit, instrument.help
    if instrument.kind == "counter":
        return meter.create_counter(name, unit=unit, description=about)
    if instrument.kind == "gauge":
        return meter.create_gauge(name, unit=unit, description=about)
    buckets = _DURATION_BUCKETS if unit == "s" else FOLLOWER_BUCKETS
    return meter.create_histogram(
        name, unit=unit, description=about, explicit_bucket_boundaries_advisory=buckets
    )


class OpenTelemetryMetrics:
    """A metrics sink for OpenTelemetry: pass it as ``metrics=`` to any face.

    Parameters:
        meter_provider: the ``MeterProvider`` to get the meter ``coalesce_client`` from; the
            global one (``opentelemetry.metrics.set_meter_provider``) when None.
        name: the ``name`` attribute of everything this sink records, to tell several sessions or
            middlewares apart.

    Raises:
        ImportError: opentelemetry-api is not installed (the ``[otel]`` extra).
        ValueError: ``name`` is not a string.
    """

    __slots__ = ("_instruments", "name")

    def __init__(self, meter_provider: MeterProvider | None = None, name: str = "default") -> None:
        if not isinstance(name, str):
            raise ValueError(f"name must be a string, got {name!r}")
        api = _api()
        meter = api.get_meter("coalesce_client", meter_provider=meter_provider)
        self.name = name
        self._instruments = {key: _instrument(meter, i) for key, i in INSTRUMENTS.items()}

    def recorder(self, face: str) -> Recorder:
        """A recorder whose records carry ``face`` and this sink's ``name``."""
        return _OpenTelemetryRecorder(self._instruments, {"face": face, "name": self.name})

    def __repr__(self) -> str:
        return f"<OpenTelemetryMetrics name={self.name!r}>"


class _OpenTelemetryRecorder:
    __slots__ = ("_by", "_fixed", "_i")

    def __init__(self, instruments: dict[str, Any], fixed: Attributes) -> None:
        self._i = instruments
        self._fixed = fixed
        self._by: dict[tuple[str, ...], Attributes] = {}

    def _attributes(self, key: str, *values: str) -> Attributes:
        at = (key, *values)
        found = self._by.get(at)
        if found is None:
            own = dict(zip(INSTRUMENTS[key].labels, values, strict=True))
            found = self._by[at] = {**self._fixed, **own}
        return found

    def call(self, status: str) -> None:
        self._i["calls"].add(1, self._attributes("calls", status))

    def not_stored(self, reason: str) -> None:
        self._i["not_stored"].add(1, self._attributes("not_stored", reason))

    def upstream(self, seconds: float) -> None:
        self._i["upstream"].add(1, self._fixed)
        self._i["upstream_duration"].record(seconds, self._fixed)

    def followers(self, count: int) -> None:
        self._i["followers"].record(count, self._fixed)

    def storage_error(self, storage: str, operation: str) -> None:
        self._i["storage_errors"].add(1, self._attributes("storage_errors", storage, operation))

    def stored(self, entries: int | None, size: int | None) -> None:
        if entries is not None:
            self._i["stored_entries"].set(entries, self._fixed)
        if size is not None:
            self._i["stored_bytes"].set(size, self._fixed)

    def lease_wait(self) -> None:
        self._i["lease_waits"].add(1, self._fixed)

    def takeover(self) -> None:
        self._i["takeovers"].add(1, self._fixed)
