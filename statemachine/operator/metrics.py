"""Prometheus metrics and the health endpoints of ``smrun operator``.

Metrics (``--metrics-port``, ``/metrics``, prometheus-client):

- ``smrun_vms{namespace, plan, phase}``: the VMs of each Plan this replica acts on, by phase
  (collected at scrape time from the reporters, never counted twice);
- ``smrun_plans{phase}``: the Plans this replica acts on or has finished, by phase;
- ``smrun_state_duration_seconds{itinerary, state}``: a histogram of the time a VM spent in each
  state (from entering it to entering the next one, or the VM's end).
- ``smrun_reaction_seconds{itinerary, state}``: a histogram of the engine's reaction time: from
  the arrival of the watch event that ended a state's wait to the engine moving on (the
  ``reaction`` of its ``state_completed`` event; waits that ended on a timer are not counted);
- ``smrun_api_requests_total{cluster, verb, code}`` and ``smrun_api_retries_total{cluster, verb,
  code}``: every request this process's clients sent, by smrun's verb and the HTTP status of its
  answer (``none``: no answer), and every retry by the status that caused it (the observer hook
  of ``statemachine.k8s.client``); ``cluster`` is ``operator`` (Plans, status, Events, journal,
  Leases) or a Plan's ``source``/``target``;
- ``smrun_journal_entries_total`` and ``smrun_journal_writes_total{verb}``: the entries the
  Plans' journals appended, and the write requests the API server accepted that store them
  (``statemachine.operator.counting``; a flush is one patch, so writes stay far below entries).

The counters are counted per thread without a lock (:mod:`statemachine.operator.tally`) and
added up at scrape time: counting sits on every request's path.

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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from statemachine.operator.tally import Tally

_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
_REACTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                     float("inf"))


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


class _Counts(Collector):
    """The tallies as counter families, added up at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[CounterMetricFamily]:
        m = self.metrics
        for name, doc, tally in (
                ("smrun_api_requests", "API requests sent, by cluster, verb and HTTP status "
                 "of the answer (none: no answer)", m.requests),
                ("smrun_api_retries", "API requests sent again, by cluster, verb and the HTTP "
                 "status that caused the retry", m.retries)):
            family = CounterMetricFamily(name, doc, labels=["cluster", "verb", "code"])
            for key, n in sorted(tally.totals().items(), key=str):
                assert isinstance(key, tuple)
                family.add_metric(list(key), n)
            yield family
        journal = m.journal.totals()
        entries = CounterMetricFamily("smrun_journal_entries", "Journal entries appended")
        entries.add_metric([], journal.pop("entries", 0))
        yield entries
        writes = CounterMetricFamily("smrun_journal_writes", "Write requests that stored "
                                     "journal entries in the cluster, by verb", labels=["verb"])
        for verb, n in sorted(journal.items(), key=str):
            writes.add_metric([str(verb)], n)
        yield writes


class Metrics:
    """The operator's metrics registry (one per process)."""

    def __init__(self, snapshot: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Plans(snapshot))
        self.state_seconds = Histogram(
            "smrun_state_duration_seconds", "Time a VM spent in a state",
            ["itinerary", "state"], buckets=_BUCKETS, registry=self.registry)
        self.reaction_seconds = Histogram(
            "smrun_reaction_seconds", "Time from the watch event that ended a wait to the "
            "engine moving on", ["itinerary", "state"], buckets=_REACTION_BUCKETS,
            registry=self.registry)
        self.requests = Tally()
        self.retries = Tally()
        self.journal = Tally()
        self.registry.register(_Counts(self))

    def request(self, cluster: str, verb: str, status: int | None, retry: bool) -> None:
        """The observer of ``statemachine.k8s.client.observe_requests``."""
        (self.retries if retry else self.requests).add(
            (cluster, verb, str(status) if status else "none"))

    def journal_write(self, kind: str, n: int) -> None:
        """A :data:`~statemachine.operator.counting.JournalCounter`."""
        self.journal.add(kind, n)

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
