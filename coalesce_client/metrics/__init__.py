"""Metrics of every face, for Prometheus and OpenTelemetry (extras ``[prometheus]``, ``[otel]``).

``metrics=PrometheusMetrics()`` (or ``OpenTelemetryMetrics()``, or a list of sinks) given to a
face records calls by cache status, responses not stored by reason, upstream requests and their
duration, followers per flight, storage errors, stored entries and bytes, and a fleet's lease
waits and takeovers (``base.INSTRUMENTS``). Importing this package imports neither library: each
sink imports its own when it is built.
"""

from __future__ import annotations

from .base import INSTRUMENTS, Metrics, Recorder, recorder_of
from .otel import OpenTelemetryMetrics
from .prometheus import PrometheusMetrics

__all__ = [
    "INSTRUMENTS",
    "Metrics",
    "OpenTelemetryMetrics",
    "PrometheusMetrics",
    "Recorder",
    "recorder_of",
]
