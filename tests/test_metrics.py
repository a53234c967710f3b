"""The metrics sinks (coalesce_client.metrics, issue 22): what each records, read back its own way.

Prometheus: the text a registry exposes, parsed back by prometheus_client's own parser.
OpenTelemetry: an SDK ``MeterProvider`` with an in-memory reader. Neither library is imported by
``import coalesce_client.metrics`` (a fresh interpreter says so), and a sink without its library
says which extra to install.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from coalesce_client.metrics import (
    INSTRUMENTS,
    OpenTelemetryMetrics,
    PrometheusMetrics,
    Recorder,
    recorder_of,
)


def record_a_burst(recorder: Recorder) -> None:
    """What a burst of 5 callers on one key, then 2 hits and an uncacheable miss, records."""
    recorder.call("miss")
    for _ in range(4):
        recorder.call("coalesced")
    recorder.followers(4)
    recorder.upstream(0.05)
    recorder.call("hit")
    recorder.call("hit")
    recorder.call("miss")
    recorder.not_stored("no-store")
    recorder.upstream(0.2)
    recorder.followers(0)
    recorder.storage_error("DiskStorage", "set")
    recorder.stored(3, 4096)
    recorder.lease_wait()
    recorder.takeover()


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**more: str) -> frozenset[tuple[str, str]]:
    return frozenset({"face": "client", "name": "default", **more}.items())


def test_prometheus_records_every_instrument_under_its_prometheus_name() -> None:
    registry = CollectorRegistry()
    record_a_burst(PrometheusMetrics(registry).recorder("client"))
    got = samples(registry)
    assert got[("coalesce_calls_total", labels(status="miss"))] == 2
    assert got[("coalesce_calls_total", labels(status="coalesced"))] == 4
    assert got[("coalesce_calls_total", labels(status="hit"))] == 2
    assert got[("coalesce_not_stored_total", labels(reason="no-store"))] == 1
    assert got[("coalesce_upstream_requests_total", labels())] == 2
    assert got[("coalesce_upstream_duration_seconds_count", labels())] == 2
    assert got[("coalesce_upstream_duration_seconds_sum", labels())] == pytest.approx(0.25)
    assert got[("coalesce_flight_followers_count", labels())] == 2
    assert got[("coalesce_flight_followers_sum", labels())] == 4
    errors = labels(storage="DiskStorage", operation="set")
    assert got[("coalesce_storage_errors_total", errors)] == 1
    assert got[("coalesce_stored_entries", labels())] == 3
    assert got[("coalesce_stored_bytes", labels())] == 4096
    assert got[("coalesce_fleet_lease_waits_total", labels())] == 1
    assert got[("coalesce_fleet_takeovers_total", labels())] == 1


def test_prometheus_sinks_on_one_registry_share_its_collectors_apart_by_name_and_face() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry, name="api").recorder("client").call("hit")
    PrometheusMetrics(registry, name="web").recorder("server").call("hit")
    PrometheusMetrics(registry, name="web").recorder("server").call("hit")
    got = samples(registry)
    assert (
        got[
            (
                "coalesce_calls_total",
                frozenset({"face": "client", "name": "api", "status": "hit"}.items()),
            )
        ]
        == 1
    )
    assert (
        got[
            (
                "coalesce_calls_total",
                frozenset({"face": "server", "name": "web", "status": "hit"}.items()),
            )
        ]
        == 2
    )


def otel_points(reader: InMemoryMetricReader) -> dict[tuple[str, frozenset[Any]], Any]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[tuple[str, frozenset[Any]], Any] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    found[(metric.name, frozenset(point.attributes.items()))] = point
    return found


def test_opentelemetry_records_every_instrument_under_its_semantic_name() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    record_a_burst(OpenTelemetryMetrics(provider).recorder("client"))
    got = otel_points(reader)
    assert got[("coalesce.calls", labels(status="miss"))].value == 2
    assert got[("coalesce.calls", labels(status="coalesced"))].value == 4
    assert got[("coalesce.not_stored", labels(reason="no-store"))].value == 1
    assert got[("coalesce.upstream.requests", labels())].value == 2
    assert got[("coalesce.upstream.duration", labels())].count == 2
    assert got[("coalesce.flight.followers", labels())].sum == 4
    errors = labels(storage="DiskStorage", operation="set")
    assert got[("coalesce.storage.errors", errors)].value == 1
    assert got[("coalesce.stored.bytes", labels())].value == 4096
    assert got[("coalesce.fleet.takeovers", labels())].value == 1
    names = {name for name, _ in got}
    assert names == {i.opentelemetry for i in INSTRUMENTS.values()}


def test_recorder_of_none_is_none_and_a_list_records_to_each() -> None:
    assert recorder_of(None, "client") is None
    one, two = CollectorRegistry(), CollectorRegistry()
    fanout = recorder_of([PrometheusMetrics(one), PrometheusMetrics(two)], "server")
    assert fanout is not None
    fanout.call("hit")
    key = (
        "coalesce_calls_total",
        frozenset({"face": "server", "name": "default", "status": "hit"}.items()),
    )
    assert samples(one)[key] == samples(two)[key] == 1


@pytest.mark.parametrize("wrong", ["prometheus", 1, [object()], [], object()])
def test_anything_but_sinks_is_a_value_error_naming_metrics(wrong: object) -> None:
    with pytest.raises(ValueError, match="metrics must be"):
        recorder_of(wrong, "client")  # type: ignore[arg-type]


CHECK = """
import json, sys
for blocked in sys.argv[1:]:
    sys.modules[blocked] = None  # as if not installed
import coalesce_client.metrics as m
loaded = sorted(
    k for k, v in sys.modules.items()
    if v is not None and k.startswith(("prometheus_client", "opentelemetry"))
)
errors = []
for sink in (m.PrometheusMetrics, m.OpenTelemetryMetrics):
    try:
        sink()
    except ImportError as exc:
        errors.append(str(exc))
print(json.dumps({"loaded": loaded, "errors": errors}))
"""


def test_importing_metrics_imports_neither_library_and_a_missing_one_names_its_extra() -> None:
    installed = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, check=True)
    assert json.loads(installed.stdout) == {"loaded": [], "errors": []}
    argv = [sys.executable, "-c", CHECK, "prometheus_client", "opentelemetry"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert len(result["errors"]) == 2
    assert "pip install 'coalesce_client[prometheus]'" in result["errors"][0]
    assert "pip install 'coalesce_client[otel]'" in result["errors"][1]
