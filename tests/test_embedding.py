"""Embedding smrun in Python (issue 15 item 9): ``statemachine.preflight`` with Cluster objects,
``statemachine.SimulatedClusters``, and the runnable example of docs/engine.md, executed here so
that it cannot rot."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import statemachine
from statemachine import ObjectRef, SimulatedClusters, UsageError
from tests.conftest import KUBECTL

ROOT = Path(__file__).resolve().parent.parent
CUSTOM = ROOT / "examples" / "custom"
MARKER = "<!-- executed by tests/test_embedding.py"

# A user who may read everything and change nothing: preflight must list the gaps and rules.
READER = """
  - apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRole
    metadata: {name: reader}
    rules: [{apiGroups: ["*"], resources: ["*"], verbs: [get, list, watch]}]
  - apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRoleBinding
    metadata: {name: reader}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
    subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: reader}]
"""


def docs_example() -> str:
    text = (ROOT / "docs" / "engine.md").read_text(encoding="utf-8")
    found = re.search(re.escape(MARKER) + r"[^\n]*\n```python\n(.*?)```", text, re.S)
    assert found, "docs/engine.md lost its executed example"
    return found.group(1)


def copy_example(tmp_path: Path, *, seed_edit: tuple[str, str] | None = None,
                 extra_source: str = "") -> Path:
    folder = tmp_path / "custom"
    shutil.copytree(CUSTOM, folder)
    seed = folder / "seed.yaml"
    text = seed.read_text()
    if seed_edit:
        text = text.replace(*seed_edit)
    if extra_source:
        text = text.replace("\ntarget:\n", extra_source + "target:\n")
    seed.write_text(text)
    return folder / "plan.yaml"


def test_the_docs_example_runs_a_simulated_plan_from_python(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(docs_example(), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "preflight: passed [] []" in lines
    assert {"shop/web-1 Completed", "shop/db-1 Completed"} <= set(lines)
    assert [ln.split()[-1] for ln in lines if ln.startswith("  shop/web-1 ")] == \
        ["BackUp", "StopVM", "StartVM"]
    backup = [ln for ln in lines if ln.startswith("backup of web-1: ")]
    assert len(backup) == 1 and backup[0].split()[3] == "Always"
    assert re.fullmatch(r"[0-9a-f-]{36}", backup[0].split()[4])


def test_the_docs_example_uses_only_the_facade() -> None:
    imports = re.findall(r"^(?:from|import) (\S+)", docs_example(), re.M)
    assert {m for m in imports if m.startswith("statemachine")} == {"statemachine"}


def test_preflight_with_cluster_objects_returns_the_findings(tmp_path: Path) -> None:
    plan_path = copy_example(tmp_path, seed_edit=("runStrategy: RerunOnFailure", "runStrategy: Halted"))
    plan, itinerary = statemachine.plan_with_itinerary(statemachine.load_plan(plan_path))
    with SimulatedClusters(plan) as clusters:
        findings = statemachine.preflight(plan, itinerary, source=clusters.source,
                                          target=clusters.target, servers=clusters.servers)
        assert isinstance(findings, statemachine.Findings)
        assert findings.blocking
        assert "shop/db-1: VMRunning: VM shop/db-1 is not running: nothing to restart" in findings.problems
        assert not [p for p in findings.problems if "web-1" in p]
        # Only the VMs asked for; an unknown one is a usage error.
        only_web = statemachine.preflight(plan, itinerary, source=clusters.source,
                                          target=clusters.target, vms=["web-1"])
        assert not only_web.blocking and only_web.problems == []
        with pytest.raises(UsageError, match="no VM nope"):
            statemachine.preflight(plan, itinerary, source=clusters.source,
                                   target=clusters.target, vms=["nope"])
        # Nothing was applied: no backup ConfigMap exists.
        assert clusters.source.fetch(ObjectRef("v1", "ConfigMap", "shop", "web-1-backup")) is None


def test_preflight_lists_permission_gaps_of_the_clusters_it_is_given(tmp_path: Path) -> None:
    plan_path = copy_example(tmp_path, extra_source=READER)
    plan, itinerary = statemachine.plan_with_itinerary(statemachine.load_plan(plan_path))
    with SimulatedClusters(plan, cache_dir=tmp_path / "cache") as clusters:
        reader = statemachine.connect(name="source", kubeconfig=clusters.kubeconfig,
                                      context="source-reader", cache_dir=tmp_path / "cache")
        try:
            findings = statemachine.preflight(plan, itinerary, source=reader,
                                              target=clusters.target, servers=clusters.servers)
        finally:
            reader.close()
    assert findings.blocking
    assert sorted(findings.problems) == [
        "source: missing permission: create v1 ConfigMap in namespace shop",
        "source: missing permission: patch kubevirt.io/v1 VirtualMachine in namespace shop"]
    assert findings.rules, "the Role rules that would close the gaps"


@pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed (.ci/run installs it)")
def test_simulated_clusters_serve_kubectl_while_open_and_stop_on_exit(tmp_path: Path) -> None:
    plan = statemachine.load_plan(CUSTOM / "plan.yaml")
    clusters = SimulatedClusters(CUSTOM / "plan.yaml", cache_dir=tmp_path / "cache")
    assert clusters.plan.name == plan.name
    with pytest.raises(UsageError, match="not running"):
        clusters.source  # noqa: B018
    with clusters:
        assert clusters.kubeconfig == tmp_path / "cache" / "sim-kubeconfig"
        assert set(clusters.clusters) == {"source", "target"}
        assert clusters.servers["source"].startswith("https://127.0.0.1:")
        # Settled on entry: the seeded VMs run, as kubectl (another client) sees.
        proc = subprocess.run([KUBECTL, "--kubeconfig", str(clusters.kubeconfig), "--context",
                               "source", "--cache-dir", str(tmp_path / "kc"), "get", "vmi", "-n",
                               "shop", "-o", "json"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        phases = {i["metadata"]["name"]: i["status"]["phase"] for i in json.loads(proc.stdout)["items"]}
        assert phases == {"web-1": "Running", "db-1": "Running"}
        server = clusters.servers["source"]
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(tmp_path / "cache" / "sim-kubeconfig"),
                           "--context", "source", "--request-timeout", "5s", "get", "ns"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and server.split("//")[1] in proc.stderr


def test_a_plan_without_simulation_is_refused() -> None:
    with pytest.raises(UsageError, match="no spec.simulation"):
        SimulatedClusters(ROOT / "tests" / "data" / "plans" / "valid" / "clusters.yaml")


def test_the_embedding_names_do_not_load_the_simulator_until_used() -> None:
    script = ("import sys, statemachine\nstatemachine.SimulatedClusters\nstatemachine.preflight\n"
              "print('\\n'.join(sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/",
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert not {m for m in loaded if m == "statemachine.sim" or m.startswith(("statemachine.sim.", "kubernetes", "transitions"))}
