"""examples/operator/README.md, walked on the simulated clusters: install from `smrun operator
manifests`, the credentials Secret, `kubectl apply -f examples/operator/live-demo.yaml`, the
operator, watching it, canceling that run (`smrun cancel --cluster`: the VMs are rolled back),
running it again (delete and apply) and watching it to Succeeded, then uninstall (issue 12,
item 8). The simulated clusters tick slowly enough (0.2 s) for the cancel to land before any
hand-off."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from statemachine.sim.cluster import SimulatedClusters
from tests.live.test_live_e2e import Reader, _assert_full_success, _assert_rolled_back
from tests.operator_mode.test_operator_e2e import NS, Operator, _wait_for_an_early_state

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMRUN = [sys.executable, "-m", "statemachine"]


def test_operator_example_walk(make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    sim = make_sim(seed=REPO / "examples" / "live" / "seed.yaml", tick=0.2)
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
        # watch it, then cancel the run before the hand-off: every VM is rolled back
        _wait_for_an_early_state(op)
        canceled = subprocess.run(
            [*SMRUN, "cancel", "--cluster", "target", "--kubeconfig", str(sim.kubeconfig_path),
             "-n", NS, "live-demo"], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert canceled.returncode == 0, canceled.stderr
        status = op.wait_phase("live-demo", ("Succeeded", "Failed", "Canceled"))["status"]
        assert status["phase"] == "Canceled", status
        assert [r["phase"] for r in status["vms"]] == ["Canceled"] * 3, status["vms"]
        r = Reader.of_sim(sim)
        for name, disks in (("web-1", ("web-1-root",)), ("web-2", ("web-2-root",)),
                            ("db-1", ("db-1-root", "db-1-data"))):
            _assert_rolled_back(r, name, disks)
        assert any(e["reason"] == "Canceled" and e["type"] == "Warning" for e in op.events())
        # run it again: a new Plan object of the same name
        op.kubectl("delete", "plan", "live-demo", "-n", NS, "--timeout=60s")
        op.kubectl("apply", "-f", str(REPO / "examples" / "operator" / "live-demo.yaml"))
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
