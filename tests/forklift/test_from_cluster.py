"""``smrun import forklift --from-cluster``: the Forklift objects are read from a (simulated) cluster.

The simulated target cluster plays the cluster Forklift runs in: the test installs minimal
Forklift CRDs (tests/data/forklift/crds.yaml, written for the tests) with kubectl, creates a
Plan, its Providers, Secret, maps and Hook there, and imports the Plan over HTTPS through smrun's
cluster layer. The source Provider is remote: its URL, token and CA are those of the simulated
source cluster, so the VM the Plan names only by id is resolved on that cluster, and the imported
plan then runs against the two simulated clusters.
"""
from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.sim.cluster import SimulatedClusters
from polling import wait_for
from tests.forklift.conftest import DATA, EXAMPLES, load, run_import, validate_offline

pytestmark = pytest.mark.slow

NS = "openshift-mtv"
PLAYBOOK = "- hosts: localhost\n  tasks: [{ansible.builtin.debug: {msg: quiesce}}]\n"


def _kubeconfig_parts(sim: SimulatedClusters, cluster: str) -> tuple[str, str, str]:
    """(server URL, CA PEM, admin token) of one simulated cluster, from its kubeconfig."""
    config = load(sim.kubeconfig_path)
    context = next(c["context"] for c in config["contexts"] if c["name"] == cluster)
    server = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    ca = base64.b64decode(server["certificate-authority-data"]).decode()
    return server["server"], ca, user["token"]


def _forklift_objects(sim: SimulatedClusters, vm_uid: str) -> list[dict[str, Any]]:
    url, ca, token = _kubeconfig_parts(sim, "source")
    pair = {"source": {"name": "east", "namespace": NS}, "destination": {"name": "host", "namespace": NS}}

    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "forklift.konveyor.io/v1beta1", "kind": kind,
                "metadata": {"name": name, "namespace": NS}, "spec": spec}
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "east-credentials", "namespace": NS},
         "type": "Opaque", "stringData": {"token": token, "ca.crt": ca, "insecureSkipVerify": "false"}},
        obj("Provider", "east", {"type": "openshift", "url": url,
                                 "secret": {"name": "east-credentials", "namespace": NS}}),
        obj("Provider", "host", {"type": "openshift", "url": "", "secret": {}}),
        obj("NetworkMap", "shop-networks", {"provider": pair, "map": [
            {"source": {"type": "pod"}, "destination": {"type": "pod"}},
            {"source": {"type": "multus", "name": "backend", "namespace": "shop"},
             "destination": {"type": "multus", "name": "backend", "namespace": "shop"}}]}),
        obj("StorageMap", "shop-storage", {"provider": pair, "map": [
            {"source": {"name": "shared"}, "destination": {"storageClass": "fast-rwx",
                                                            "accessMode": "ReadWriteMany", "volumeMode": "Block"}},
            {"source": {"name": "bulk"}, "destination": {"storageClass": "fast-rwx",
                                                          "accessMode": "ReadWriteMany"}}]}),
        obj("Hook", "quiesce-db", {"image": "quay.io/konveyor/hook-runner",
                                   "playbook": base64.b64encode(PLAYBOOK.encode()).decode()}),
        obj("Plan", "shop-live", {
            "type": "live", "provider": pair, "targetNamespace": "shop",
            "transferNetwork": {"name": "transfer", "namespace": NS},
            "map": {"network": {"name": "shop-networks", "namespace": NS},
                    "storage": {"name": "shop-storage", "namespace": NS}},
            "vms": [{"id": vm_uid},
                    {"name": "db-1", "namespace": "shop",
                     "hooks": [{"step": "PreHook", "hook": {"name": "quiesce-db", "namespace": NS}}]}]}),
        # Found by listing (a Migration names its Plan); a live plan has no cutover: a warning.
        obj("Migration", "shop-live-run", {"plan": {"name": "shop-live", "namespace": NS},
                                           "cutover": "2026-12-01T02:00:00Z"}),
    ]


def test_import_from_cluster_then_run(make_sim: Callable[..., SimulatedClusters],
                                      kubectl_for: Callable[..., Any], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    sim = make_sim(seed=EXAMPLES / "live" / "seed.yaml")
    kubectl = kubectl_for(sim)
    kubectl("apply", "-f", str(DATA / "crds.yaml"), context="target")
    wait_for(lambda: kubectl("get", "plans.forklift.konveyor.io", "-A", context="target",
                             check=False).returncode == 0, 20)
    kubectl("apply", "-f", "-", context="target",
            input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
    vm_uid = kubectl("get", "vm", "web-2", "-n", "shop", "-o", "jsonpath={.metadata.uid}").stdout
    assert vm_uid
    objects = _forklift_objects(sim, vm_uid)
    kubectl("apply", "-f", "-", context="target", input=yaml.safe_dump_all(objects))

    out = tmp_path / "imported" / "plan.yaml"
    code, stdout, stderr = run_import(capsys, "--from-cluster", "target", "--kubeconfig",
                                      str(sim.kubeconfig_path), "--namespace", NS, "--plan", "shop-live",
                                      "-o", str(out))
    assert code == 0, stderr
    token = _kubeconfig_parts(sim, "source")[2]
    assert token not in stdout and token not in stderr
    assert stderr.splitlines() == [
        f"cluster target: Plan {NS}/shop-live: spec.transferNetwork: no smrun equivalent; ignored",
        f"cluster target: Migration {NS}/shop-live-run: spec.cutover: ignored: only warm migrations "
        "have a cutover"]
    plan = load(out)
    spec = plan["spec"]
    # The VM given by id, resolved on the source Provider's cluster through its URL and token.
    assert spec["vms"] == [{"name": "web-2", "namespace": "shop"},
                           {"name": "db-1", "namespace": "shop",
                            "hooks": [{"step": "PreHook", "hook": "quiesce-db"}]}]
    assert spec["target"] == {"kubeconfig": str(sim.kubeconfig_path), "context": "target"}
    assert spec["source"] == {"kubeconfig": "./plan-east.kubeconfig", "context": "east"}
    kubeconfig = out.parent / "plan-east.kubeconfig"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert (out.parent / "plan-hook-quiesce-db.yml").read_text() == PLAYBOOK
    code, _, err = validate_offline(capsys, out)
    assert code == 0, err

    # The imported plan moves the VMs between the simulated clusters.
    proc = subprocess.run([sys.executable, "-m", "statemachine", "run", str(out), "--output", "json",
                           "--state-dir", str(tmp_path / "state")], capture_output=True, text=True,
                          timeout=240, cwd=tmp_path, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {e["vm"] for e in events if e["event"] == "vm_succeeded" and e["vm"]} == {"shop/web-2", "shop/db-1"}


def test_cluster_without_forklift(sim: SimulatedClusters, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A cluster that does not serve Forklift's kinds: exit 3, one line, nothing written."""
    out = tmp_path / "plan.yaml"
    code, stdout, stderr = run_import(capsys, "--from-cluster", "target", "--kubeconfig",
                                      str(sim.kubeconfig_path), "--namespace", NS, "--plan", "p", "-o", str(out))
    assert code == 3
    assert stdout == ""
    assert stderr.splitlines() == ["cluster target: Plan (forklift.konveyor.io/v1beta1) is not served: "
                                   "is Forklift installed there?"]
    assert not out.exists()


def test_unknown_context(sim: SimulatedClusters, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run_import(capsys, "--from-cluster", "nowhere", "--kubeconfig", str(sim.kubeconfig_path),
                                 "--namespace", NS, "--plan", "p", "-o", str(tmp_path / "plan.yaml"))
    assert code == 2
    assert len(stderr.splitlines()) == 1 and "nowhere" in stderr and "Traceback" not in stderr
