"""connect_plan connects a plan's two clusters at the same time (issue 17: preflight round trips)
and still reports what the sequential version did: the source's error first, then the target's,
and the cluster that did connect is closed."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from statemachine.clusters import connect_plan
from statemachine.errors import ClusterError
from statemachine.k8s import ObjectRef
from statemachine.k8s.retry import RetryPolicy
from statemachine.plan import load_plan
from statemachine.sim.cluster import SimulatedClusters


def _plan(tmp_path: Path, kubeconfig: Path, source: str, target: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "smrun.io/v1alpha1", "kind": "Plan", "metadata": {"name": "connect"},
        "spec": {"type": "live",
                 "source": {"kubeconfig": str(kubeconfig), "context": source},
                 "target": {"kubeconfig": str(kubeconfig), "context": target},
                 "vms": [{"name": "web-1", "namespace": "shop"}]}}))
    return path


def _with_dead_context(sim: SimulatedClusters, tmp_path: Path) -> Path:
    """The simulator's kubeconfig plus a context ``dead`` whose server refuses connections."""
    config = yaml.safe_load(sim.kubeconfig_path.read_text())
    live = config["contexts"][0]["context"]
    cluster = next(c for c in config["clusters"] if c["name"] == live["cluster"])
    config["clusters"].append({"name": "dead", "cluster": {**cluster["cluster"],
                                                           "server": "https://127.0.0.1:1"}})
    config["contexts"].append({"name": "dead", "context": {**live, "cluster": "dead"}})
    path = tmp_path / "kubeconfig-dead"
    path.write_text(yaml.safe_dump(config))
    return path


ONCE = RetryPolicy(attempts=1)


def test_both_clusters_are_connected_and_answer(sim: SimulatedClusters, tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, sim.kubeconfig_path, "source", "target"))
    with connect_plan(plan, cache_dir=tmp_path / "cache") as conn:
        ref = ObjectRef("v1", "Namespace", "", "kube-system")
        assert conn.source.get(ref) is not None and conn.target.get(ref) is not None
        assert conn.source is not conn.target


@pytest.mark.parametrize("source, target, named", [
    ("source", "dead", "target"), ("dead", "target", "source"), ("dead", "dead", "source")])
def test_the_error_reported_is_the_sequential_one(sim: SimulatedClusters, tmp_path: Path,
                                                  source: str, target: str, named: str) -> None:
    plan = load_plan(_plan(tmp_path, _with_dead_context(sim, tmp_path), source, target))
    with pytest.raises(ClusterError) as err:
        connect_plan(plan, cache_dir=tmp_path / "cache", retry_policy=ONCE)
    assert named in str(err.value)
    assert ("target" if named == "source" else "source") not in str(err.value)
