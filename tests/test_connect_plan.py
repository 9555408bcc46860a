"""connect_plan connects a plan's two clusters at the same time (issue 17: preflight round trips)
and still reports what the sequential version did: the source's error first, then the target's,
and the cluster that did connect is closed."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from statemachine.clusters import connect_ahead, connect_plan
from statemachine.engine.journal import Journal
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


# -- connect_ahead: connecting while the caller goes on (issue 17 item 1) -------------------------


def test_a_connection_made_ahead_is_the_same_connection(sim: SimulatedClusters,
                                                        tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, sim.kubeconfig_path, "source", "target"))
    pending = connect_ahead(plan, cache_dir=tmp_path / "cache")
    with pending.result() as conn:
        ref = ObjectRef("v1", "Namespace", "", "kube-system")
        assert conn.source.get(ref) is not None and conn.target.get(ref) is not None
        pending.abandon()  # taken: abandoning it now changes nothing
        assert conn.source.get(ref) is not None


def test_connecting_ahead_reports_its_error_where_the_connection_is_taken(
        sim: SimulatedClusters, tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, _with_dead_context(sim, tmp_path), "source", "dead"))
    pending = connect_ahead(plan, cache_dir=tmp_path / "cache", retry_policy=ONCE)
    with pytest.raises(ClusterError) as err:
        pending.result()
    assert "target" in str(err.value)


def test_an_abandoned_connection_is_closed_when_it_arrives(sim: SimulatedClusters,
                                                           tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, sim.kubeconfig_path, "source", "target"))
    pending = connect_ahead(plan, cache_dir=tmp_path / "cache")
    pending.abandon()  # most likely before the helper is done
    pending._thread.join(timeout=30)
    assert "connection" not in pending._outcome  # closed by the helper (or by abandon)


def test_a_simulated_plan_is_never_connected_ahead() -> None:
    plan = load_plan(Path(__file__).parent / "data" / "plans" / "valid" / "sim-live.yaml")
    with pytest.raises(ValueError):
        connect_ahead(plan)


def test_a_bad_itinerary_is_reported_before_an_unreachable_cluster(
        sim: SimulatedClusters, tmp_path: Path) -> None:
    # validate and run connect while the itinerary loads; its error still comes first (exit 2),
    # at once (not after the connection's retries), and run leaves its journal unlocked.
    kubeconfig = _with_dead_context(sim, tmp_path)
    path = _plan(tmp_path, kubeconfig, "dead", "dead")
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["itinerary"] = str(tmp_path / "missing-itinerary.yaml")
    path.write_text(yaml.safe_dump(doc))
    for argv in (["validate", str(path)], ["run", str(path), "--state-dir", str(tmp_path / "s")]):
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "statemachine", *argv], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "missing-itinerary.yaml" in proc.stderr and "127.0.0.1:1" not in proc.stderr
        assert time.monotonic() - started < 10
    journal = Journal.for_plan(tmp_path / "s", "connect")
    journal.lock()  # not held by anyone
    journal.close()
