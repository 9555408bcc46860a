"""`smrun operator --metrics-port`: the metrics of issue 12 item 7 scraped over HTTP during and
after a real run of the live example on the simulated clusters, with faults injected into the
source cluster's API server so that retries happen.

Each metric is checked against what can be counted independently: the objects the run left on
the target, the journal ConfigMaps in the cluster (their lines and keys), the faults only the
source answers with, and the waits of the live itinerary.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from polling import wait_for
from statemachine.operator.crd import plan_crd
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.faults import FaultInjector
from tests.live.conftest import EXAMPLE_PLAN
from tests.operator_mode.test_operator_e2e import (NS, Operator, free_port, http_get,
                                                   plan_object)

pytestmark = pytest.mark.slow

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(port: int) -> Samples:
    code, text = http_get(port, "/metrics")
    assert code == 200
    out: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


def by(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """``name``'s samples keyed by the values of ``labels``."""
    return {tuple(dict(k)[label] for label in labels): v for k, v in samples[name].items()}


@pytest.fixture
def operator(make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> Iterator[Operator]:
    # Slow controllers (0.2 s a step): the run lasts long enough to be scraped while it runs.
    sim = make_sim(seed=EXAMPLE_PLAN.parent / "seed.yaml", tick=0.2)
    op = Operator(sim, tmp_path)
    op.apply(plan_crd())
    op.kubectl("wait", "--for=condition=Established", "crd/plans.smrun.io", "--timeout=10s")
    op.kubectl("create", "namespace", NS)
    try:
        yield op
    finally:
        op.stop()


def test_metrics_count_requests_retries_journal_and_reactions(operator: Operator) -> None:
    # Only the source answers some requests with 500, 429 or a dropped connection.
    operator.sim.servers["source"].faults = FaultInjector(0.04, seed=12)
    operator.apply(plan_object(operator.sim.kubeconfig_path))
    port = free_port()
    operator.start("replica-a", "--metrics-port", str(port))

    # During the run: the operator's status writes and the migration's requests are counted.
    deadline = time.monotonic() + 120
    during: Samples = {}
    while time.monotonic() < deadline:
        phase = (operator.plan("live-demo").get("status") or {}).get("phase")
        if phase not in ("Pending", "Running", None):
            break
        if phase == "Running":
            try:
                during = scrape(port)
            except OSError:
                during = {}
            if by(during, "smrun_api_requests_total", "cluster", "verb").get(("source", "get")):
                break
        time.sleep(0.2)
    assert during, "no scrape while the Plan ran"
    early = by(during, "smrun_api_requests_total", "cluster", "verb", "code")
    assert early.get(("operator", "patch", "200"), 0) >= 1, early  # status and journal

    obj = operator.wait_phase("live-demo", ("Succeeded", "Failed", "Canceled"))
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    uid = obj["metadata"]["uid"]
    store = operator.sim.store("target")

    def journal_maps() -> list[dict[str, Any]]:
        return store.list("ConfigMap", NS, label_selector=f"smrun.io/journal=smrun-journal-{uid}")

    def flushed() -> Samples | None:
        """A scrape taken once the journal's last flush is in the cluster (every entry counted is
        a line there). A fixed second was not always enough under load."""
        samples = scrape(port)
        lines = sum(len(v.splitlines()) for m in journal_maps()
                    for v in (m.get("data") or {}).values())
        counted = samples.get("smrun_journal_entries_total", {}).get((), 0)
        return samples if counted and counted == lines else None
    after = wait_for(flushed, timeout=30, what="the journal's last flush")
    requests = by(after, "smrun_api_requests_total", "cluster", "verb", "code")
    retries = by(after, "smrun_api_retries_total", "cluster", "verb", "code")

    # Counters only grow.
    for key, n in early.items():
        assert requests[key] >= n, key
    # Creates answered 201 on the target: at least the three VMs and four DataVolumes left there.
    assert requests[("target", "create", "201")] >= 7, requests
    assert requests.get(("target", "watch", "200"), 0) >= 1
    # The faults: only the source answers 500/429/none, and each retry follows such an answer
    # of the same verb (a retry is caused by an answer counted as a request).
    faulted = {k: v for k, v in requests.items() if k[2] in ("500", "429", "none")}
    assert faulted and {k[0] for k in faulted} == {"source"}, faulted
    assert retries and sum(retries.values()) >= 1
    for (cluster, verb, code), n in retries.items():
        assert cluster == "source" and code in ("500", "429", "none"), (cluster, verb, code)
        assert requests[(cluster, verb, code)] >= n, (cluster, verb, code)

    # Journal: every entry this replica appended is a line in the Plan's journal ConfigMaps, and
    # the writes that stored them (one patch per flush) are far fewer than the entries.
    maps = json.loads(operator.kubectl("get", "configmaps", "-n", NS, "-l",
                                       f"smrun.io/journal=smrun-journal-{uid}", "-o",
                                       "json").stdout)["items"]
    assert maps
    lines = sum(len(v.splitlines()) for m in maps for v in (m.get("data") or {}).values())
    keys = sum(len(m.get("data") or {}) for m in maps)
    entries = after["smrun_journal_entries_total"][()]
    assert entries == lines, (entries, lines)
    writes = by(after, "smrun_journal_writes_total", "verb")
    assert keys <= writes[("patch",)] <= keys + 2 * len(maps) + 2, (keys, writes)
    assert writes[("patch",)] < entries / 2, (writes, entries)
    assert writes.get(("create",), 0) >= 1  # the first journal object
    assert requests[("operator", "patch", "200")] >= writes[("patch",)]

    # Reaction: the VMs' WaitForStateTransfer waits ended on watch events (one per VM at most;
    # a wait already satisfied at its first look has no event to react to); the times are
    # plausible: above zero, and under a second on average even on a loaded machine (the
    # engine's loop wakes within milliseconds of an event).
    count = by(after, "smrun_reaction_seconds_count", "itinerary", "state")
    total = by(after, "smrun_reaction_seconds_sum", "itinerary", "state")
    waits = count[("live", "WaitForStateTransfer")]
    assert 1 <= waits <= 3, count
    assert 0 < total[("live", "WaitForStateTransfer")] < waits * 1.0, total
    buckets = by(after, "smrun_reaction_seconds_bucket", "itinerary", "state", "le")
    assert buckets[("live", "WaitForStateTransfer", "+Inf")] == waits
    assert sum(count.values()) >= 3 * 3, count  # several waits per VM
    assert all(dict(k)["itinerary"] == "live" for k in after["smrun_reaction_seconds_count"])
