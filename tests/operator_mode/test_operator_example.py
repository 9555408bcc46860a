"""examples/operator/README.md, walked on the simulated clusters: install from `smrun operator
manifests`, the credentials Secret, `kubectl apply -f examples/operator/live-demo.yaml`, the
operator, watching it to Succeeded, then uninstall (issue 12, item 8)."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from statemachine.sim.cluster import SimulatedClusters
from tests.live.test_live_e2e import Reader, _assert_full_success
from tests.operator_mode.test_operator_e2e import NS, Operator

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMRUN = [sys.executable, "-m", "statemachine"]


def test_operator_example_walk(make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    sim = make_sim(seed=REPO / "examples" / "live" / "seed.yaml", tick=0.02)
    op = Operator(sim, tmp_path)
    try:
        printed = subprocess.run([*SMRUN, "operator", "manifests"], capture_output=True, text=True,
                                 timeout=120, cwd=REPO, check=True).stdout
        # The simulator serves no apps/v1 or policy/v1: the rest of the install is applied.
        docs = [d for d in yaml.safe_load_all(printed)
                if d and d["kind"] not in ("Deployment", "PodDisruptionBudget")]
        install = tmp_path / "install.yaml"
        install.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
        op.kubectl("apply", "-f", str(install))
        op.kubectl("wait", "--for=condition=Established", "crd/plans.smrun.io", "--timeout=10s")
        op.kubectl("create", "namespace", NS)
        op.kubectl("create", "secret", "generic", "clusters", "-n", NS,
                   f"--from-file=kubeconfig={sim.kubeconfig_path}")
        op.kubectl("apply", "-f", str(REPO / "examples" / "operator" / "live-demo.yaml"))
        proc = subprocess.Popen(
            [*SMRUN, "operator", "--kubeconfig", str(sim.kubeconfig_path), "--context", "target",
             "--namespace", NS, "--state-dir", str(tmp_path / "state")],
            stdout=open(tmp_path / "operator-example.log", "w"), stderr=subprocess.STDOUT,
            cwd=REPO)
        op.procs.append(proc)
        obj = op.wait_phase("live-demo", ("Succeeded", "Failed", "Invalid", "Refused"))
        assert obj["status"]["phase"] == "Succeeded", obj["status"]
        _assert_full_success(Reader.of_sim(sim))
        rows = op.kubectl("get", "plans", "-n", NS).stdout.splitlines()
        assert rows[1].split()[:5] == ["live-demo", "live", "Succeeded", "3/3", "0"]
        reasons = {e["reason"] for e in op.events()}
        assert {"Running", "WaitForStateTransfer", "Succeeded"} <= reasons
        # uninstall
        op.kubectl("delete", "plan", "live-demo", "-n", NS, "--timeout=60s")
        op.kubectl("delete", "-f", str(install), "--ignore-not-found", "--timeout=60s")
        crds = json.loads(op.kubectl("get", "crd", "-o", "json").stdout)["items"]
        assert "plans.smrun.io" not in {c["metadata"]["name"] for c in crds}
    finally:
        op.stop()
