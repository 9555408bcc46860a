"""`smrun operator` end to end (issue 12, items 2 and 9): a subprocess reconciles Plan objects
on the simulated clusters.

The operator runs against the target cluster (where the Plan CRD is installed) with the real
kubeconfig and kopf's own client; the Plan's spec is the live example's, pointing at the simulated
source and target. The test waits for the Plan's phase through kubectl, then checks the VMs moved
(the same checks as `smrun run`'s end-to-end test), the status and the Events. Bad Plans end
Invalid or Refused with the CLI's one-line message and a Warning Event, and nothing is applied.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from polling import record_values, wait_for
from tests.conftest import run_kubectl
from statemachine.operator.crd import plan_crd
from statemachine.sim.cluster import SimulatedClusters
from tests.live.conftest import EXAMPLE_PLAN, load_yaml
from tests.live.test_live_e2e import Reader, _assert_full_success, _assert_rolled_back

pytestmark = pytest.mark.slow

SMRUN = [sys.executable, "-m", "statemachine"]
NS = "migrations"


class Operator:
    """An `smrun operator` subprocess and kubectl against the operator's (target) cluster."""

    def __init__(self, sim: SimulatedClusters, tmp_path: Path) -> None:
        self.sim, self.tmp = sim, tmp_path
        self.cache = tmp_path / "kubectl-cache"
        self.cache.mkdir(exist_ok=True)
        self.procs: list[subprocess.Popen[str]] = []

    def kubectl(self, *args: str, context: str = "target", **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.sim, self.cache, *args, context=context, **kw)

    def apply(self, doc: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))

    def start(self, ident: str, *extra: str, state_dir: str = "") -> subprocess.Popen[str]:
        log = open(self.tmp / f"operator-{ident}.log", "w", encoding="utf-8")
        proc = subprocess.Popen(
            [*SMRUN, "operator", "--kubeconfig", str(self.sim.kubeconfig_path), "--context",
             "target", "--namespace", NS, "--id", ident, "--state-dir",
             str(self.tmp / (state_dir or f"state-{ident}")), *extra],
            stdout=log, stderr=subprocess.STDOUT, text=True, cwd=self.tmp,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.procs.append(proc)
        return proc

    def plan(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.kubectl("get", "plan", name, "-n", NS, "-o",
                                                      "json").stdout)
        return out

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] = {}
        while time.monotonic() < deadline:
            obj = self.plan(name)
            if (obj.get("status") or {}).get("phase") in phases:
                return obj
            if all(p.poll() is not None for p in self.procs):
                break  # no replica left to finish it
            time.sleep(0.5)
        logs = "\n".join(p.read_text()[-4000:] for p in self.tmp.glob("operator-*.log"))
        raise AssertionError(f"plan {name}: phase {(obj.get('status') or {}).get('phase')!r}, "
                             f"wanted {phases}\n{json.dumps(obj.get('status'))[:2000]}\n{logs}")

    def events(self, context: str = "target", namespace: str = NS) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.kubectl(
            "get", "events", "-n", namespace, "-o", "json", context=context).stdout)["items"]
        return items

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def make_operator(make_sim: Callable[..., SimulatedClusters],
                  tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    made: list[Operator] = []

    def make(tick: float = 0.02, request_log: Path | None = None) -> Operator:
        sim = make_sim(seed=EXAMPLE_PLAN.parent / "seed.yaml", tick=tick, request_log=request_log)
        op = Operator(sim, tmp_path)
        made.append(op)
        op.apply(plan_crd())
        op.kubectl("wait", "--for=condition=Established", "crd/plans.smrun.io", "--timeout=10s")
        op.kubectl("create", "namespace", NS)
        return op
    try:
        yield make
    finally:
        for op in made:
            op.stop()


@pytest.fixture
def operator(make_operator: Callable[..., Operator]) -> Operator:
    return make_operator()


def plan_object(kubeconfig: Path, name: str = "live-demo") -> dict[str, Any]:
    """The live example as a Plan object aimed at the simulated clusters of ``kubeconfig``."""
    plan = load_yaml(EXAMPLE_PLAN)
    plan["metadata"] = {"name": name, "namespace": NS}
    del plan["spec"]["simulation"]
    plan["spec"]["source"] = {"kubeconfig": str(kubeconfig), "context": "source"}
    plan["spec"]["target"] = {"kubeconfig": str(kubeconfig), "context": "target"}
    for hook in plan["spec"]["hooks"]:
        hook["playbook"] = str((EXAMPLE_PLAN.parent / hook["playbook"]).resolve())
    return dict(plan)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_operator_migrates_a_live_plan(operator: Operator) -> None:
    operator.apply(plan_object(operator.sim.kubeconfig_path))
    metrics, health = free_port(), free_port()
    operator.start("replica-a", "--metrics-port", str(metrics), "--health-port", str(health))
    obj = operator.wait_phase("live-demo", ("Succeeded", "Failed", "Invalid", "Refused"))
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    assert status["operator"] == "replica-a"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert (status["progress"], status["completed"], status["failed"]) == ("3/3", 3, 0)
    assert sorted(r["vm"] for r in status["vms"]) == ["shop/db-1", "shop/web-1", "shop/web-2"]
    assert all(r["phase"] == "Completed" and r["state"] == "Completed" for r in status["vms"])
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    assert conds == {"Ready": "True", "Succeeded": "True", "Failed": "False"}
    _assert_full_success(Reader.of_sim(operator.sim))
    # kubectl shows the columns from the status
    row = operator.kubectl("get", "plans", "-n", NS).stdout.splitlines()[1].split()
    assert row[:5] == ["live-demo", "live", "Succeeded", "3/3", "0"]
    # Events on the Plan: reason = the state, message = the one-line wait; then the outcome.
    on_plan = [e for e in operator.events() if e["involvedObject"]["kind"] == "Plan"]
    waits = [e for e in on_plan if e["reason"] == "WaitForStateTransfer"]
    assert waits and all(e["message"].split(": ", 1)[1].startswith("waiting for ")
                         for e in waits), waits
    assert {e["involvedObject"]["uid"] for e in on_plan} == {obj["metadata"]["uid"]}
    assert any(e["reason"] == "Succeeded" and e["type"] == "Normal" for e in on_plan)
    # ... and on each source VM
    on_vms = [e for e in operator.events(context="source", namespace="shop")
              if e["involvedObject"]["kind"] == "VirtualMachine"
              and e.get("reportingComponent") == "smrun.io/smrun-operator"]
    assert {e["involvedObject"]["name"] for e in on_vms} == {"web-1", "web-2", "db-1"}
    assert any(e["reason"] == "WaitForStateTransfer" for e in on_vms)
    # Health and metrics
    assert http_get(health, "/healthz") == (200, "ok\n")
    assert http_get(health, "/readyz") == (200, "ready\n")
    code, text = http_get(metrics, "/metrics")
    assert code == 200
    assert 'smrun_vms{namespace="migrations",phase="Completed",plan="live-demo"} 3.0' in text
    assert 'smrun_plans{phase="Succeeded"} 1.0' in text
    counts = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines()
              if line.startswith("smrun_state_duration_seconds_count{")}
    assert counts['itinerary="live",state="WaitForStateTransfer"'] == 3, counts
    assert counts['itinerary="live",state="PreHook"'] == 1, counts


def test_bad_plans_end_invalid_or_refused(operator: Operator) -> None:
    kubeconfig = operator.sim.kubeconfig_path
    invalid = plan_object(kubeconfig, "unknown-hook")
    invalid["spec"]["vms"][0]["hooks"] = [{"step": "PreHook", "hook": "nope"}]
    refused = plan_object(kubeconfig, "ghost-vm")
    refused["spec"]["vms"] = [{"name": "ghost", "namespace": "shop"}]
    operator.apply(invalid)
    operator.apply(refused)
    operator.start("replica-a")
    bad = operator.wait_phase("unknown-hook", ("Invalid",))["status"]
    assert bad["message"] == (f"Plan {NS}/unknown-hook: spec.vms[0].hooks[0].hook: unknown hook "
                              "'nope' (known: quiesce)")
    conds = {c["type"]: c["status"] for c in bad["conditions"]}
    assert conds["Failed"] == "True" and conds["Ready"] == "False"
    gone = operator.wait_phase("ghost-vm", ("Refused",))["status"]
    assert gone["message"].startswith("preflight refused the plan; nothing was applied: "
                                      "shop/ghost: ")
    assert "\n" not in gone["message"]
    # The CLI gives the same words for the same spec.
    plan_file = operator.tmp / "ghost.yaml"
    doc = dict(refused, metadata={"name": "ghost-vm"})
    plan_file.write_text(yaml.safe_dump(doc), encoding="utf-8")
    cli = subprocess.run([*SMRUN, "validate", str(plan_file)], capture_output=True, text=True,
                         timeout=120, cwd=operator.tmp)
    assert cli.returncode == 3
    problems = [line.strip()[2:] for line in cli.stderr.splitlines() if line.startswith("  - ")]
    assert gone["message"] == ("preflight refused the plan; nothing was applied: "
                               + "; ".join(problems))
    warnings = {e["involvedObject"]["name"]: e for e in operator.events()
                if e["type"] == "Warning"}
    assert warnings["unknown-hook"]["reason"] == "Invalid"
    assert warnings["unknown-hook"]["message"] == bad["message"]
    assert warnings["ghost-vm"]["reason"] == "Refused"
    # Nothing applied: no object of the plans anywhere.
    r = Reader.of_sim(operator.sim)
    for cluster in ("source", "target"):
        for kind in ("VirtualMachine", "DataVolume", "PersistentVolumeClaim", "Secret", "ConfigMap"):
            ours = [o for o in r.list(cluster, kind, "shop")
                    if "smrun.io/plan" in (o["metadata"].get("labels") or {})]
            assert ours == [], (cluster, kind)


EARLY = {"Started", "PreHook", "CreateEmptyDataVolumes", "CreateEmptyPersistentVolumeClaims",
         "EnsureResources", "CreateStandbyVM", "SetOwnerReferences", "WaitForTargetVMI"}


def _wait_for_an_early_state(operator: Operator) -> dict[str, Any]:
    """The live-demo Plan once some VM is in a state before the hand-off (at most 120 s)."""
    deadline = time.monotonic() + 120
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = operator.plan("live-demo")
        if any(r.get("state") in EARLY for r in (obj.get("status") or {}).get("vms") or []):
            break
        time.sleep(0.05)
    return obj


def test_spec_cancel_undoes_the_run(make_operator: Callable[..., Operator]) -> None:
    """`spec.cancel: true` on the live object: the running VMs are undone (before the hand-off
    the target side is removed and the source keeps running), the Plan ends Canceled."""
    operator = make_operator(tick=0.2)
    operator.apply(plan_object(operator.sim.kubeconfig_path))
    operator.start("replica-a")
    _wait_for_an_early_state(operator)
    operator.kubectl("patch", "plan", "live-demo", "-n", NS, "--type=merge", "-p",
                     '{"spec": {"cancel": true}}')
    status = operator.wait_phase("live-demo", ("Succeeded", "Failed", "Canceled"))["status"]
    assert status["phase"] == "Canceled", status
    canceled = [r["vm"].split("/")[1] for r in status["vms"] if r["phase"] == "Canceled"]
    assert canceled, status["vms"]
    r = Reader.of_sim(operator.sim)
    disks = {"web-1": ("web-1-root",), "web-2": ("web-2-root",), "db-1": ("db-1-root", "db-1-data")}
    for name in canceled:
        _assert_rolled_back(r, name, disks[name])
    assert any(e["reason"] == "Canceled" and e["type"] == "Warning" for e in operator.events())


MIDDLE = ("WaitForTargetVMI", "CreateTargetMigration", "WaitForTargetMigration",
          "CreateSourceMigration", "WaitForStateTransfer")


def _wait_for_the_middle(operator: Operator) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = (operator.plan("live-demo").get("status") or {}).get("vms") or []
        if any(r.get("state") in MIDDLE for r in rows):
            return
        time.sleep(0.05)
    raise AssertionError("the migration never reached its middle")


def _requests(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _assert_nothing_twice_nothing_left(operator: Operator, log: Path) -> None:
    """Every object created once (the simulator's request log: one 201 per name, Events
    aside), and on the target exactly what one uninterrupted run leaves, counted by the smrun
    labels; on the source, nothing of smrun's left but what a run leaves there."""
    created: dict[tuple[str, str, str], int] = {}
    for r in _requests(log):
        if r["method"] == "POST" and r["status"] == 201 and r["name"] and \
                not r["path"].endswith("/events"):
            key = (r["cluster"], r["path"], r["name"])
            created[key] = created.get(key, 0) + 1
    twice = {k: n for k, n in created.items() if n > 1}
    assert not twice, twice
    assert any("virtualmachines" in k[1] for k in created)  # the log did see the creates
    r = Reader.of_sim(operator.sim)
    labelled = {kind: sorted(o["metadata"]["name"] for o in r.list("target", kind, "shop")
                             if (o["metadata"].get("labels") or {}).get("smrun.io/plan"))
                for kind in ("VirtualMachine", "DataVolume", "PersistentVolumeClaim",
                             "VirtualMachineInstanceMigration")}
    assert labelled["VirtualMachine"] == ["db-1", "web-1", "web-2"]
    assert labelled["VirtualMachineInstanceMigration"] == []
    assert len(labelled["DataVolume"]) == len(set(labelled["DataVolume"]))
    source_left = [o["metadata"]["name"] for o in r.list("source", "VirtualMachineInstanceMigration",
                                                          "shop")
                   if (o["metadata"].get("labels") or {}).get("smrun.io/plan")]
    assert source_left == []


def _journal_objects(operator: Operator, uid: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(operator.kubectl(
        "get", "configmaps", "-n", NS, "-l", f"smrun.io/journal=smrun-journal-{uid}", "-o",
        "json").stdout)["items"]
    return items


def test_second_replica_takes_over_after_kill_9(make_operator: Callable[..., Operator],
                                               tmp_path: Path) -> None:
    """Two replicas, one Lease per Plan, each with its own state directory (the journal is in
    the cluster): replica-a acts (status.operator), replica-b waits; kill -9 replica-a
    mid-migration; replica-b takes the Lease once it expires, resumes from the cluster journal
    and finishes; the VMs end as after an uninterrupted run, nothing was created twice and
    nothing is left behind."""
    log = tmp_path / "requests.jsonl"
    operator = make_operator(tick=0.2, request_log=log)
    operator.apply(plan_object(operator.sim.kubeconfig_path))
    a = operator.start("replica-a", "--lease-seconds", "3")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = operator.plan("live-demo").get("status") or {}
        if status.get("operator") == "replica-a" and status.get("phase") == "Running":
            break
        time.sleep(0.1)
    uid = operator.plan("live-demo")["metadata"]["uid"]
    lease = f"smrun-{uid}"
    # Every version of the Lease, from the simulator's store: who renewed or took it, and when.
    lease_specs = record_values(operator.sim.store("target"), "Lease", NS, lease,
                                lambda o: dict(o.get("spec") or {}))
    b = operator.start("replica-b", "--lease-seconds", "3")
    _wait_for_the_middle(operator)
    holder = json.loads(operator.kubectl("get", "lease", lease, "-n", NS, "-o", "json").stdout)
    assert holder["spec"]["holderIdentity"] == "replica-a"
    assert (operator.plan("live-demo")["status"]["phase"]) == "Running"
    run_before = operator.plan("live-demo")["status"]["run"]
    assert run_before
    journal = _journal_objects(operator, uid)
    assert journal and journal[-1]["metadata"]["annotations"]["smrun.io/journal-writer"] \
        .startswith("replica-a/")
    a.kill()  # SIGKILL: no clean-up, the Lease is simply not renewed any more
    a.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (operator.plan("live-demo").get("status") or {}).get("operator") == "replica-b":
            break
        time.sleep(0.1)
    # How long the Plan went without a holder, from the Lease itself: replica-a's last renewal
    # to replica-b's acquisition, the lease time plus one look of replica-b. (Measured before
    # from the kill to the status that kubectl showed, which also counted replica-b's first
    # status write and the kubectl processes' latency: over the bound by 0.02 s under load.)
    def stamp(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    last_a = max(stamp(sp["renewTime"]) for sp in lease_specs
                 if sp.get("holderIdentity") == "replica-a")
    first_b = min(stamp(sp["acquireTime"]) for sp in lease_specs
                  if sp.get("holderIdentity") == "replica-b")
    took_over = (first_b - last_a).total_seconds()
    assert 3 <= took_over < 3 + 3, took_over
    obj = operator.wait_phase("live-demo", ("Succeeded", "Failed", "Canceled"))
    assert b.poll() is None
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    assert status["operator"] == "replica-b"
    assert (status["completed"], status["failed"]) == (3, 0)
    _assert_full_success(Reader.of_sim(operator.sim))
    _assert_nothing_twice_nothing_left(operator, log)
    # One run across both replicas: replica-b resumed replica-a's run id from the cluster's
    # journal, so every name it created (VMIMs carry the run id) is the one replica-a would
    # have created or adopted.
    assert status["run"] == run_before
    assert not list((tmp_path / "state-replica-b").rglob("journal.jsonl"))
    journal = _journal_objects(operator, uid)
    assert journal and all(o["metadata"]["ownerReferences"][0]["uid"] == uid for o in journal)
    # The Lease is released when the Plan is finished.
    gone = operator.kubectl("get", "lease", lease, "-n", NS, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_a_replica_whose_lease_is_taken_stops_acting(make_operator: Callable[..., Operator],
                                                     tmp_path: Path) -> None:
    """Mid-migration, another holder appears on the Plan's Lease (as after a partition longer
    than the lease time): the acting replica stops within one renewal period: no write to any
    cluster from it any more (the simulator's request log), no journal write, no status. When
    that holder's Lease expires unrenewed, the replica takes it again, resumes from the
    cluster's journal and finishes as an uninterrupted run would."""
    log = tmp_path / "requests.jsonl"
    operator = make_operator(tick=0.2, request_log=log)
    operator.apply(plan_object(operator.sim.kubeconfig_path))
    operator.start("replica-a", "--lease-seconds", "3")
    _wait_for_the_middle(operator)
    uid = operator.plan("live-demo")["metadata"]["uid"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    operator.kubectl("patch", "lease", f"smrun-{uid}", "-n", NS, "--type=merge", "-p", json.dumps(
        {"spec": {"holderIdentity": "intruder", "renewTime": now, "acquireTime": now,
                  "leaseDurationSeconds": 12}}))
    taken = time.time()
    # One renewal period (1 s) finds the intruder; then nothing more is sent. 3 s from the
    # patch, or from when replica-a says it lost the Lease if that came later (under load).
    logs_path = tmp_path / "operator-replica-a.log"
    wait_for(lambda: "lease lost (another replica holds it)" in logs_path.read_text(),
             timeout=9, what="replica-a to notice the intruder")
    time.sleep(max(1.0, taken + 3 - time.time()))
    quiet_from = time.time()
    # Read from the simulator's store, not with kubectl: the window must stay within the
    # intruder's 12 s, and four kubectl processes took seconds of it under load.
    store = operator.sim.store("target")

    def journal_versions() -> list[str]:
        return [o["metadata"]["resourceVersion"] for o in store.list(
            "ConfigMap", NS, label_selector=f"smrun.io/journal=smrun-journal-{uid}")]
    journal_before = journal_versions()
    status_before = store.get("Plan", NS, "live-demo")["status"]
    time.sleep(3)
    writes = [r for r in _requests(log)
              if quiet_from <= r["ts"] and r["method"] in ("POST", "PUT", "PATCH", "DELETE")
              and "/leases/" not in r["path"] and "/selfsubject" not in r["path"]
              and not (r["path"].split("/")[-2:-1] == ["plans"])]  # kopf's own annotations
    assert writes == [], writes
    assert journal_versions() == journal_before
    assert store.get("Plan", NS, "live-demo")["status"] == status_before
    assert status_before["phase"] == "Running"
    assert time.time() - taken < 12  # all of it while the intruder held the Lease
    obj = operator.wait_phase("live-demo", ("Succeeded", "Failed", "Canceled"))
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    _assert_full_success(Reader.of_sim(operator.sim))
    _assert_nothing_twice_nothing_left(operator, log)
    # The journal is written once per flush of the engine's group commit, not once per entry.
    entries = sum(len(v.splitlines()) for o in _journal_objects(operator, uid)
                  for v in (o.get("data") or {}).values())
    writes = [r for r in _requests(log) if r["method"] == "PATCH"
              and f"/configmaps/smrun-journal-{uid}-" in r["path"]]
    # (3 VMs a few states apart: ~3 entries a write; a burst of VMs shares more per write)
    assert entries > 100 and len(writes) < entries / 2, (entries, len(writes))


def test_credentials_from_a_secret_never_leak(operator: Operator) -> None:
    """`spec.source.kubeconfigSecret`: the source cluster is reached through a kubeconfig held
    in a Secret; `spec.target` omitted is the operator's own cluster. The kubeconfig's token
    appears nowhere: not in the status, the Events, the operator's log or its state directory
    after the run. A Plan naming a missing Secret is Refused, nothing applied."""
    kubeconfig_text = operator.sim.kubeconfig_path.read_text()
    tokens = [u["user"]["token"] for u in yaml.safe_load(kubeconfig_text)["users"]
              if u["user"].get("token")]
    assert tokens
    operator.kubectl("create", "secret", "generic", "clusters", "-n", NS,
                     f"--from-file=config={operator.sim.kubeconfig_path}")
    plan = plan_object(operator.sim.kubeconfig_path)
    plan["spec"]["source"] = {"kubeconfigSecret": {"name": "clusters", "key": "config",
                                                   "context": "source"}}
    del plan["spec"]["target"]
    operator.apply(plan)
    missing = plan_object(operator.sim.kubeconfig_path, "no-secret")
    missing["spec"]["source"] = {"kubeconfigSecret": {"name": "nope", "context": "source"}}
    operator.apply(missing)
    operator.start("replica-a")
    status = operator.wait_phase("live-demo", ("Succeeded", "Failed", "Invalid", "Refused"))["status"]
    assert status["phase"] == "Succeeded", status
    _assert_full_success(Reader.of_sim(operator.sim))
    refused = operator.wait_phase("no-secret", ("Refused",))["status"]
    assert refused["message"] == ("preflight refused the plan; nothing was applied: "
                                  f"spec.source.kubeconfigSecret: Secret {NS}/nope not found")
    operator.stop()
    seen = [json.dumps(operator.plan(n)) for n in ("live-demo", "no-secret")]
    seen.append(json.dumps(operator.events()))
    seen += [p.read_text(errors="replace") for p in operator.tmp.glob("operator-*.log")]
    seen += [p.read_text(errors="replace") for p in (operator.tmp / "state-replica-a").rglob("*")
             if p.is_file()]
    for token in tokens:
        assert not any(token in text for text in seen)
    assert not list((operator.tmp / "state-replica-a").rglob("*.kubeconfig"))


def test_deleting_a_plan_undoes_before_the_finalizer_goes(
        make_operator: Callable[..., Operator]) -> None:
    """`kubectl delete plan` during a run: the object stays (finalizer smrun.io/finalizer) while
    the run is canceled and undone, then goes; the VMs not handed over are rolled back."""
    operator = make_operator(tick=0.2)
    operator.apply(plan_object(operator.sim.kubeconfig_path))
    operator.start("replica-a")
    obj = _wait_for_an_early_state(operator)
    assert "smrun.io/finalizer" in obj["metadata"].get("finalizers", [])
    assert _journal_objects(operator, obj["metadata"]["uid"])  # the run's journal, in the cluster
    # Watch the Plan: its DELETED event carries the object as it was when it went away.
    env = dict(os.environ, KUBECACHEDIR=str(operator.cache), HOME=str(operator.cache))
    watch = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(operator.sim.kubeconfig_path), "--context", "target",
         "--cache-dir", str(operator.cache), "get", "plan", "live-demo", "-n", NS, "--watch",
         "--output-watch-events", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    time.sleep(1)
    operator.kubectl("delete", "plan", "live-demo", "-n", NS, "--wait=false")
    last: dict[str, Any] = {}
    text, decoder = "", json.JSONDecoder()
    assert watch.stdout is not None
    guard = threading.Timer(120, watch.kill)  # a Plan never removed ends the watch, and the test
    guard.start()
    try:
        for line in watch.stdout:
            text += line
            try:
                event, end = decoder.raw_decode(text.lstrip())
            except ValueError:
                continue
            text = text.lstrip()[end:]
            if event.get("type") == "DELETED":
                last = event["object"]
                break
    finally:
        guard.cancel()
        watch.kill()
        watch.wait()
    assert last, "the Plan was not removed within 120 s"
    # Its last status was Canceled: the undo ran before the finalizer was removed.
    assert (last.get("status") or {}).get("phase") == "Canceled", last.get("status")
    canceled = [r["vm"].split("/")[1] for r in last["status"]["vms"] if r["phase"] == "Canceled"]
    assert canceled
    r = Reader.of_sim(operator.sim)
    disks = {"web-1": ("web-1-root",), "web-2": ("web-2-root",), "db-1": ("db-1-root", "db-1-data")}
    for name in canceled:
        _assert_rolled_back(r, name, disks[name])
    assert operator.kubectl("get", "lease", "-n", NS, "-o", "name").stdout.strip() == ""
    # The Plan's journal (ConfigMaps it owns) goes with it: the garbage collector removes it.
    uid = obj["metadata"]["uid"]
    deadline = time.monotonic() + 20
    while _journal_objects(operator, uid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _journal_objects(operator, uid) == []
