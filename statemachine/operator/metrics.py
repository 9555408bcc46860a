"""Prometheus metrics and the health endpoints of ``smrun operator``.

Metrics (``--metrics-port``, ``/metrics``, prometheus-client):

- ``smrun_vms{namespace, plan, phase}``: the VMs of each Plan this replica acts on, by phase
  (collected at scrape time from the reporters, never counted twice);
- ``smrun_plans{phase}``: the Plans this replica acts on or has finished, by phase;
- ``smrun_state_duration_seconds{itinerary, state}``: a histogram of the time a VM spent in each
  state (from entering it to entering the next one, or the VM's end).

Health (``--health-port``): ``/healthz`` answers 200 while the process serves; ``/readyz``
answers 200 once kopf has started and the operator's own client is connected, 503 before.

This module owns the registry and the two servers; it knows nothing about kopf.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))


class _Plans(Collector):
    def __init__(self, snapshot: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        vms = GaugeMetricFamily("smrun_vms", "VMs of the Plans this replica acts on, by phase",
                                labels=["namespace", "plan", "phase"])
        plans = GaugeMetricFamily("smrun_plans", "Plans this replica acted on, by phase",
                                  labels=["phase"])
        by_phase: dict[str, int] = {}
        for status in self.snapshot():
            counts: dict[str, int] = {}
            for row in status.get("vms") or []:
                counts[str(row.get("phase"))] = counts.get(str(row.get("phase")), 0) + 1
            for phase, n in sorted(counts.items()):
                vms.add_metric([str(status.get("namespace")), str(status.get("plan")), phase], n)
            by_phase[str(status.get("phase"))] = by_phase.get(str(status.get("phase")), 0) + 1
        for phase, n in sorted(by_phase.items()):
            plans.add_metric([phase], n)
        yield vms
        yield plans


class Metrics:
    """The operator's metrics registry (one per process)."""

    def __init__(self, snapshot: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Plans(snapshot))
        self.state_seconds = Histogram(
            "smrun_state_duration_seconds", "Time a VM spent in a state",
            ["itinerary", "state"], buckets=_BUCKETS, registry=self.registry)

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)


class _Health(BaseHTTPRequestHandler):
    ready: Callable[[], bool] = staticmethod(lambda: False)

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        if self.path == "/healthz":
            code, text = 200, "ok\n"
        elif self.path == "/readyz":
            code, text = (200, "ready\n") if type(self).ready() else (503, "starting\n")
        else:
            code, text = 404, "not found\n"
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # probes every few seconds: not worth a line
        pass


def serve_health(port: int, ready: Callable[[], bool]) -> ThreadingHTTPServer:
    handler = type("Health", (_Health,), {"ready": staticmethod(ready)})
    server = ThreadingHTTPServer(("0.0.0.0", port), handler)
    threading.Thread(target=server.serve_forever, name="smrun-health", daemon=True).start()
    return server
