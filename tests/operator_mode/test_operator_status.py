"""What a Plan object's status shows while it runs and when a VM fails (issue 12, items 1 and 2).

The live example with web-2's decentralized migration failing (the simulator's fault annotation
on its source VM): while it runs, the status's VM rows carry the state, its step, what it waits
for and the progress; at the end the failed VM's row carries KubeVirt's reason, the counts and
conditions say Failed, the same reason is a Warning Event on the Plan and on the source VM, and
`smrun status --cluster` prints the same rows, outputs included (as the run's journal recorded
them).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from statemachine.itinerary import load_itinerary
from tests.operator_mode import test_operator_e2e as e2e
from tests.operator_mode.test_operator_e2e import NS, Operator, plan_object

make_operator = e2e.make_operator  # the fixture: the live example's clusters, the Plan CRD

pytestmark = pytest.mark.slow

pytest.importorskip("kopf")


def test_status_shows_step_progress_and_the_reason_of_a_failure(
        make_operator: Callable[..., Operator]) -> None:
    operator = make_operator(tick=0.05)
    operator.kubectl("annotate", "vm", "web-2", "-n", "shop",
                     "sim.smrun.io/fail-migration-at=Running", context="source")
    operator.apply(plan_object(operator.sim.kubeconfig_path))
    operator.start("replica-a")
    steps = {s.name: s.step for s in load_itinerary("live").states}
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 240
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = operator.plan("live-demo")
        status = obj.get("status") or {}
        seen += [dict(r) for r in status.get("vms") or [] if r.get("phase") == "Running"]
        if status.get("phase") in ("Succeeded", "Failed", "Canceled"):
            break
        time.sleep(0.1)
    status = obj["status"]
    # While running: every row names its state's step; waits say what and how far.
    assert seen, "no row was ever seen running"
    assert all(r["step"] == (steps[r["state"]] or "") for r in seen if r.get("state")), seen
    waits = [r for r in seen if r.get("waitingFor")]
    assert waits and all(r["message"].startswith("waiting for ") for r in waits), waits
    assert any(r["progress"] for r in waits), waits
    # The end: web-2 failed with KubeVirt's reason; the others completed.
    assert status["phase"] == "Failed", status
    rows = {r["vm"]: r for r in status["vms"]}
    assert [v for v, r in rows.items() if r["phase"] == "Failed"] == ["shop/web-2"]
    reason = rows["shop/web-2"]["message"]
    assert "injected failure at phase Running" in reason, rows["shop/web-2"]
    assert rows["shop/web-2"]["state"] and rows["shop/web-2"]["state"] != "Completed"
    assert (status["completed"], status["failed"], status["progress"]) == (2, 1, "2/3")
    conds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    # Ready: the Plan was accepted (validated and preflighted) and ran.
    assert conds == {"Ready": ("True", "Failed"), "Succeeded": ("False", "Failed"),
                     "Failed": ("True", "Failed")}
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    # The reason is a Warning Event on the Plan (the VM in front) and on the source VM.
    on_plan = [e for e in operator.events() if e["type"] == "Warning"
               and e["involvedObject"]["kind"] == "Plan"]
    assert any(e["message"] == f"shop/web-2: {reason}" for e in on_plan), on_plan
    on_vm = [e for e in operator.events(context="source", namespace="shop")
             if e["type"] == "Warning" and e["involvedObject"]["name"] == "web-2"]
    assert any(e["message"] == reason for e in on_vm), on_vm
    # Each VM's outputs, as the run's journal (the Plan's ConfigMaps) recorded them: what
    # `smrun status --output json` shows for a plan file's journal.
    journal: dict[str, dict[str, Any]] = {}
    maps = json.loads(operator.kubectl("get", "cm", "-n", NS, "-l", "smrun.io/journal", "-o",
                                       "json").stdout)["items"]
    for cm in sorted(maps, key=lambda m: m["metadata"]["name"]):
        for key in sorted(cm.get("data") or {}):
            for line in cm["data"][key].splitlines():
                entry = json.loads(line)
                if entry.get("type") == "vm_started":
                    journal[entry["vm"]] = {}
                elif entry.get("type") == "outputs":
                    journal[entry["vm"]].update(entry["values"])
    assert {v: r["outputs"] for v, r in rows.items()} == {v: journal[v] for v in rows}
    assert rows["shop/web-1"]["outputs"]["connectURL"] and rows["shop/web-1"]["outputs"]["migrationID"]
    # `smrun status --cluster` prints those rows.
    proc = subprocess.run([sys.executable, "-m", "statemachine", "status", "--cluster", "target",
                           "--kubeconfig", str(operator.sim.kubeconfig_path), "-n", NS,
                           "live-demo", "--output", "json"],
                          capture_output=True, text=True, timeout=60, cwd=operator.tmp)
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    by_vm = {r["vm"]: r for r in printed}
    assert by_vm["shop/web-2"]["phase"] == "Failed" and by_vm["shop/web-2"]["message"] == reason
    assert {v: r["outputs"] for v, r in by_vm.items()} == {v: r["outputs"] for v, r in rows.items()}


def test_a_spec_the_plan_schema_refuses_is_invalid_with_the_clis_line(
        make_operator: Callable[..., Operator]) -> None:
    """Item 9 for the schema: a value the CRD lets through (a duration is int-or-string there;
    its pattern is the operator's to check) but the plan schema refuses. The Plan ends Invalid
    with `smrun validate`'s words for the same spec as a file (located at the object instead of
    file:line), a Warning Event says it, and nothing is applied on either cluster."""
    operator = make_operator()
    plan = plan_object(operator.sim.kubeconfig_path, "slow-typo")
    plan["spec"]["settings"]["stepTimeout"] = "soon"
    operator.apply(plan)  # the API server accepts it
    operator.start("replica-a")
    status = operator.wait_phase("slow-typo", ("Invalid", "Refused", "Running", "Succeeded"),
                                 timeout=60)["status"]
    file = operator.tmp / "slow-typo.yaml"
    file.write_text(json.dumps({**plan, "metadata": {"name": "slow-typo"}}), encoding="utf-8")
    cli = subprocess.run([sys.executable, "-m", "statemachine", "validate", str(file)],
                         capture_output=True, text=True, timeout=60, cwd=operator.tmp)
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    where, _, words = cli.stderr.strip().partition(": ")
    assert where.startswith(str(file)) and words.startswith("spec.settings.stepTimeout: ")
    assert status["phase"] == "Invalid", status
    assert status["message"] == f"Plan {NS}/slow-typo: {words}"
    warnings = [e for e in operator.events() if e["type"] == "Warning"
                and e["involvedObject"]["name"] == "slow-typo"]
    assert [(e["reason"], e["message"]) for e in warnings] == [("Invalid", status["message"])]
    for cluster in ("source", "target"):
        for kind in ("vm", "dv", "pvc", "secret", "configmap", "vmim"):
            listed = operator.kubectl("get", kind, "-A", "-l", "smrun.io/plan", "-o", "name",
                                      context=cluster).stdout.strip()
            assert listed == "", (cluster, kind, listed)


def test_a_secret_that_is_no_kubeconfig_or_names_a_dead_cluster_is_refused(
        make_operator: Callable[..., Operator]) -> None:
    """Item 3's preflight: the Secret must hold a kubeconfig, and the cluster it names must
    answer. Each failing Plan ends Refused with one line naming the Secret or the cluster (not
    the Secret's content), a Warning Event, and nothing is applied."""
    import socket

    operator = make_operator()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "east",
        "clusters": [{"name": "east", "cluster": {"server": f"https://127.0.0.1:{dead_port}",
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "sekrit-token-value"}}],
        "contexts": [{"name": "east", "context": {"cluster": "east", "user": "u"}}]})
    operator.kubectl("create", "secret", "generic", "dead", "-n", NS, f"--from-literal=kubeconfig={dead}")
    operator.kubectl("create", "secret", "generic", "junk", "-n", NS,
                     "--from-literal=kubeconfig=sekrit: [not, a, kubeconfig")
    plans = {}
    for name, secret in (("dead-cluster", "dead"), ("junk-secret", "junk")):
        plan = plan_object(operator.sim.kubeconfig_path, name)
        plan["spec"]["source"] = {"kubeconfigSecret": {"name": secret, "context": "east"}}
        operator.apply(plan)
        plans[name] = plan
    operator.start("replica-a")
    statuses = {n: operator.wait_phase(n, ("Refused", "Invalid", "Running", "Succeeded"),
                                       timeout=120)["status"] for n in plans}
    for name, status in statuses.items():
        assert status["phase"] == "Refused", (name, status)
        assert "\n" not in status["message"] and "sekrit" not in status["message"], status
    assert statuses["junk-secret"]["message"] == (
        "preflight refused the plan; nothing was applied: spec.source.kubeconfigSecret: key "
        f"'kubeconfig' of Secret {NS}/junk is not a kubeconfig")
    dead_said = statuses["dead-cluster"]["message"]
    assert dead_said == ("cluster source: cannot reach the API server at "
                         f"https://127.0.0.1:{dead_port}: connection refused"), dead_said
    events = operator.events()
    for name in plans:
        assert any(e["involvedObject"]["name"] == name and e["type"] == "Warning"
                   and e["reason"] == "Refused" for e in events), name
    assert not any("sekrit" in json.dumps(e) for e in events)
    for cluster in ("source", "target"):
        listed = operator.kubectl("get", "vm,dv,pvc,vmim", "-A", "-l", "smrun.io/plan", "-o",
                                  "name", context=cluster).stdout.strip()
        assert listed == "", (cluster, listed)
