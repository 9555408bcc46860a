"""A later live plan between clusters that already trust each other's KubeVirt CA.

After a first plan, each cluster's ``kubevirt-ca`` holds both CAs (virt-operator adds the
certificates a bundle lacks, in its own order). The setup states must see the peer as trusted
certificate by certificate: comparing whole bundles made every later plan between the same
clusters wait in ``TrustSourceCAOnTarget`` until its 5 minute timeout (found by the operator
example's cancel-then-run-again walk).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from statemachine.sim.cluster import SimulatedClusters
from tests.live.test_live_e2e import Reader, _assert_migrated, _events, _plan_against, _seed, _smrun


def test_a_second_plan_between_the_same_clusters_does_not_wait_for_trust(
        make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    sim = make_sim(seed=_seed(tmp_path=tmp_path), tick=0.02)
    first = _smrun("run", str(_plan_against(sim.kubeconfig_path, tmp_path)), "--vm", "web-1",
                   "--output", "json", "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    bundles = {c: Reader.of_sim(sim).get(c, "ConfigMap", "kubevirt", "kubevirt-ca")["data"]["ca-bundle"]
               for c in ("source", "target")}
    assert all(b.count("BEGIN CERTIFICATE") == 2 for b in bundles.values()), bundles
    # Another plan (another name: its own journal), the next VM.
    plan = yaml.safe_load(_plan_against(sim.kubeconfig_path, tmp_path).read_text())
    plan["metadata"]["name"] = "live-later"
    later = tmp_path / "later.yaml"
    later.write_text(yaml.safe_dump(plan), encoding="utf-8")
    started_at = time.monotonic()
    second = _smrun("run", str(later), "--vm", "web-2", "--output", "json", "--state-dir",
                    str(tmp_path / "state"), cwd=tmp_path)
    took = time.monotonic() - started_at
    assert second.returncode == 0, second.stderr[-3000:]
    setup = [e for e in _events(second.stdout) if e["event"] == "state_completed" and not e.get("vm")]
    assert {e["state"] for e in setup} == {"TrustSourceCAOnTarget", "TrustTargetCAOnSource"}, \
        json.dumps(setup)
    assert took < 120, took
    _assert_migrated(Reader.of_sim(sim), "web-2")
    # Nothing was appended again: both bundles still hold the two CAs once.
    after = {c: Reader.of_sim(sim).get(c, "ConfigMap", "kubevirt", "kubevirt-ca")["data"]["ca-bundle"]
             for c in ("source", "target")}
    assert after == bundles
