"""``smrun status|cancel|cutover --cluster CONTEXT PLAN_NAME`` on Plan objects (issue 12 item 6).

The real command (a subprocess) against the simulated clusters with the Plan CRD installed;
what it writes is read back with kubectl. No operator runs here: the status the operator would
write is put on the object with kubectl (status subresource), and the operator's side of
cancel and cutover is tested end to end in test_operator_e2e.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.operator.crd import plan_crd
from statemachine.sim.cluster import SimulatedClusters
from tests.conftest import run_kubectl

SMRUN = [sys.executable, "-m", "statemachine"]
NS = "migrations"


class Env:
    def __init__(self, sim: SimulatedClusters, tmp: Path) -> None:
        self.sim, self.tmp = sim, tmp
        self.cache = tmp / "kubectl-cache"
        self.cache.mkdir(exist_ok=True)

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.sim, self.cache, *args, context="target", **kw)

    def smrun(self, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd, rest = args[0], args[1:]
        return subprocess.run(
            [*SMRUN, cmd, "--kubeconfig", str(kubeconfig or self.sim.kubeconfig_path), *rest],
            capture_output=True, text=True, timeout=120, cwd=self.tmp,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def plan(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.kubectl("get", "plan", name, "-n", NS, "-o",
                                                      "json").stdout)
        return out


@pytest.fixture
def env(sim: SimulatedClusters, tmp_path: Path) -> Env:
    e = Env(sim, tmp_path)
    e.kubectl("apply", "-f", "-", input=yaml.safe_dump(plan_crd()))
    e.kubectl("wait", "--for=condition=Established", "crd/plans.smrun.io", "--timeout=10s")
    e.kubectl("create", "namespace", NS)
    for name, kind in (("live-demo", "live"), ("warm-demo", "warm")):
        e.kubectl("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "smrun.io/v1alpha1", "kind": "Plan",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"type": kind, "source": {"context": "source"},
                     "target": {"context": "target"},
                     "vms": [{"name": "web-1", "namespace": "shop"},
                             {"name": "web-2", "namespace": "shop"}]}}))
    return e


def test_status_reads_the_plan_objects_status(env: Env) -> None:
    before = env.smrun("status", "--cluster", "target", "-n", NS, "live-demo", "--output", "json")
    assert before.returncode == 0, before.stderr
    rows = [json.loads(line) for line in before.stdout.splitlines()]
    # The shape of `smrun status PLAN --output json` for a plan file.
    assert rows == [{"vm": "shop/web-1", "phase": "Pending", "state": "", "message": "",
                     "outputs": {}, "run": None},
                    {"vm": "shop/web-2", "phase": "Pending", "state": "", "message": "",
                     "outputs": {}, "run": None}]
    env.kubectl("patch", "plan", "live-demo", "-n", NS, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"phase": "Running", "run": "20261204-abc", "vms": [
                    {"vm": "shop/web-1", "phase": "Completed", "state": "Completed",
                     "message": ""},
                    {"vm": "shop/web-2", "phase": "Running", "state": "WaitForStateTransfer",
                     "step": "Synchronization", "message": "waiting for migration"}]}}))
    after = env.smrun("status", "--cluster", "target", "-n", NS, "live-demo", "--output", "json")
    rows = [json.loads(line) for line in after.stdout.splitlines()]
    assert [(r["vm"], r["phase"], r["state"], r["message"], r["run"]) for r in rows] == [
        ("shop/web-1", "Completed", "Completed", "", "20261204-abc"),
        ("shop/web-2", "Running", "WaitForStateTransfer", "waiting for migration",
         "20261204-abc")]
    table = env.smrun("status", "--cluster", "target", "--namespace", NS, "live-demo")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["VM", "PHASE", "STATE", "MESSAGE", "RUN"]
    assert lines[2].split()[:3] == ["shop/web-2", "Running", "WaitForStateTransfer"]


def test_cancel_sets_spec_cancel(env: Env) -> None:
    done = env.smrun("cancel", "--cluster", "target", "-n", NS, "live-demo")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cancel requested for Plan {NS}/live-demo")
    obj = env.plan("live-demo")
    assert obj["spec"]["cancel"] is True
    assert obj["spec"]["vms"] == [{"name": "web-1", "namespace": "shop"},
                                  {"name": "web-2", "namespace": "shop"}]  # merge patch: kept
    # Per VM is for plan files; a finished Plan is left alone.
    per_vm = env.smrun("cancel", "--cluster", "target", "-n", NS, "warm-demo", "--vm", "web-1")
    assert per_vm.returncode == 2 and len(per_vm.stderr.splitlines()) == 1, per_vm.stderr
    env.kubectl("patch", "plan", "warm-demo", "-n", NS, "--subresource=status", "--type=merge",
                "-p", '{"status": {"phase": "Succeeded"}}')
    ended = env.smrun("cancel", "--cluster", "target", "-n", NS, "warm-demo")
    assert ended.returncode == 0 and "has ended (Succeeded); nothing to cancel" in ended.stdout
    assert "cancel" not in env.plan("warm-demo")["spec"]


def test_cutover_sets_spec_cutover(env: Env) -> None:
    done = env.smrun("cutover", "--cluster", "target", "-n", NS, "warm-demo",
                     "--at", "2031-01-02T03:04:05+01:00")
    assert done.returncode == 0, done.stderr
    assert env.plan("warm-demo")["spec"]["cutover"] == "2031-01-02T02:04:05Z"
    one = env.smrun("cutover", "--cluster", "target", "-n", NS, "warm-demo", "--at",
                    "2031-01-01T00:00:00Z", "--vm", "web-2")
    assert one.returncode == 0, one.stderr
    spec = env.plan("warm-demo")["spec"]
    assert spec["vms"] == [{"name": "web-1", "namespace": "shop"},
                           {"name": "web-2", "namespace": "shop",
                            "cutover": "2031-01-01T00:00:00Z"}]
    assert spec["cutover"] == "2031-01-02T02:04:05Z"
    live = env.smrun("cutover", "--cluster", "target", "-n", NS, "live-demo", "--at", "now")
    assert live.returncode == 2
    assert live.stderr.strip() == (f"Plan {NS}/live-demo is a live migration: only warm "
                                   "migrations have a cutover")
    ghost = env.smrun("cutover", "--cluster", "target", "-n", NS, "warm-demo", "--at", "now",
                      "--vm", "ghost")
    assert ghost.returncode == 2 and "--vm ghost: no such VM" in ghost.stderr


def test_bad_input_is_one_line_with_the_exit_code(env: Env, tmp_path: Path) -> None:
    def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
        assert result.returncode == code, (result.returncode, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
        return result.stderr.strip()

    for command in (("status",), ("cancel",), ("cutover", "--at", "now")):
        missing = env.smrun(command[0], "--cluster", "target", "-n", NS, "nope", *command[1:])
        assert one_line(missing, 2) == f"cluster target: no Plan {NS}/nope"
    # The source cluster has no Plan CRD: the operator is not installed there.
    no_crd = env.smrun("status", "--cluster", "source", "-n", NS, "live-demo")
    assert "Plans (plans.smrun.io) are not served there" in one_line(no_crd, 3)
    no_context = env.smrun("status", "--cluster", "nowhere", "-n", NS, "live-demo")
    assert "nowhere" in one_line(no_context, 2)
    # A cluster that does not answer: the kubeconfig's target server on a closed port.
    config = yaml.safe_load(env.sim.kubeconfig_path.read_text())
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    unreachable = env.smrun("status", "--cluster", "target", "-n", NS, "live-demo",
                            kubeconfig=dead)
    one_line(unreachable, 3)
    bad_name = env.smrun("status", "--cluster", "target", "-n", NS, "Not_A_Name")
    assert "is not a Plan name" in one_line(bad_name, 2)
    # --kubeconfig / --namespace without --cluster are a usage error, not ignored.
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("x: 1\n")
    without = subprocess.run([*SMRUN, "status", str(plan_file), "-n", NS], capture_output=True,
                             text=True, timeout=60)
    assert "go with --cluster" in one_line(without, 2)
