"""The live itinerary end to end: ``smrun run`` (a subprocess, the real client) against the simulator.

Most tests start the simulated clusters in the test process (``make_sim``, from the example's
seed, validating every write against the upstream OpenAPI documents) so that their state can be
inspected afterwards; the plan is the example's with ``spec.source``/``spec.target`` pointing at
the simulator's kubeconfig. One test runs the example plan itself (its simulator lives inside
``smrun``), one runs ``smrun sim serve`` and ``smrun run`` as two processes and inspects the
clusters through the kubeconfig, as against a real cluster.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.clusters import connect_plan
from statemachine.engine import Engine, EngineSettings, Journal
from statemachine.engine.journal import read_entries, request_cancel
from statemachine.plan import load_plan
from statemachine.providers import itinerary_for_plan
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.controllers.conditions import HOLD_MIGRATION_AT
from polling import wait_for
from processes import kill_at_event

from tests.live.conftest import EXAMPLE_PLAN, find, load_yaml

pytestmark = pytest.mark.slow

SMRUN = [sys.executable, "-m", "statemachine"]
RUN_TIMEOUT = 180
VMS = ("web-1", "web-2", "db-1")
PLAN_NAME = "live-demo"
CRASHRUN = Path(__file__).resolve().parents[1] / "crashrun.py"



def _wait_for(check: Callable[[], Any], timeout: float = 20) -> Any:
    """``polling.wait_for`` with these end-to-end tests' 20 s (a whole migration may run first)."""
    return wait_for(check, timeout)

def _seed(edit: Callable[[dict[str, Any]], None] | None = None, *, tmp_path: Path) -> Path:
    seed = load_yaml(EXAMPLE_PLAN.parent / "seed.yaml")
    if edit is None:
        return EXAMPLE_PLAN.parent / "seed.yaml"
    edit(seed)
    out = tmp_path / "seed.yaml"
    out.write_text(yaml.safe_dump(seed), encoding="utf-8")
    return out


def _plan_against(kubeconfig: Path, tmp_path: Path) -> Path:
    """The example plan aimed at the clusters of ``kubeconfig`` instead of its own seed."""
    plan = load_yaml(EXAMPLE_PLAN)
    del plan["spec"]["simulation"]
    plan["spec"]["source"] = {"kubeconfig": str(kubeconfig), "context": "source"}
    plan["spec"]["target"] = {"kubeconfig": str(kubeconfig), "context": "target"}
    for hook in plan["spec"]["hooks"]:
        hook["playbook"] = str((EXAMPLE_PLAN.parent / hook["playbook"]).resolve())
    out = tmp_path / "plan.yaml"
    out.write_text(yaml.safe_dump(plan), encoding="utf-8")
    return out


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", **extra)


def _smrun(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SMRUN, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=cwd, env=_env(**env))


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _vms(events: list[dict[str, Any]], kind: str) -> list[str]:
    """The VMs (not the plan's setup, reported with an empty ``vm``) that had event ``kind``."""
    return sorted(e["vm"] for e in events if e["event"] == kind and e.get("vm"))


class Reader:
    """Reads objects from the simulated clusters (the store in process, or a real client)."""

    def __init__(self, get: Callable[[str, str, str, str], Any],
                 list_: Callable[[str, str, str], list[Any]]) -> None:
        self.get, self.list = get, list_

    @classmethod
    def of_sim(cls, sim: SimulatedClusters) -> Reader:
        def get(cluster: str, kind: str, ns: str, name: str) -> Any:
            return sim.store(cluster).try_get(kind, ns, name)

        def list_(cluster: str, kind: str, ns: str) -> list[Any]:
            return list(sim.store(cluster).list(kind, ns))
        return cls(get, list_)


_API = {"VirtualMachine": "kubevirt.io/v1", "VirtualMachineInstance": "kubevirt.io/v1",
        "VirtualMachineInstanceMigration": "kubevirt.io/v1", "DataVolume": "cdi.kubevirt.io/v1beta1",
        "PersistentVolumeClaim": "v1", "Secret": "v1", "ConfigMap": "v1",
        "VirtualMachineInstancetype": "instancetype.kubevirt.io/v1beta1"}


def _status(obj: Any) -> dict[str, Any]:
    return dict((obj or {}).get("status") or {})


def _assert_migrated(r: Reader, name: str) -> None:
    """The VM runs on the target with the source's run strategy; the source is Halted, no VMI."""
    target = r.get("target", "VirtualMachine", "shop", name)
    assert target is not None, name
    assert target["spec"]["runStrategy"] == "Always", name
    assert _wait_for(lambda: _status(r.get("target", "VirtualMachineInstance", "shop", name))
                     .get("phase") == "Running"), name
    source = r.get("source", "VirtualMachine", "shop", name)
    assert source["spec"]["runStrategy"] == "Halted", name
    assert r.get("source", "VirtualMachineInstance", "shop", name) is None, name


def _assert_rolled_back(r: Reader, name: str, disks: tuple[str, ...]) -> None:
    """Nothing of the VM is left on the target; the source still runs."""
    assert _wait_for(lambda: r.get("target", "VirtualMachine", "shop", name) is None), name
    for disk in disks:
        assert _wait_for(lambda: r.get("target", "DataVolume", "shop", disk) is None), disk
        assert _wait_for(lambda: r.get("target", "PersistentVolumeClaim", "shop", disk) is None), disk
    source = r.get("source", "VirtualMachine", "shop", name)
    assert source["spec"]["runStrategy"] == "Always"
    assert _status(r.get("source", "VirtualMachineInstance", "shop", name)).get("phase") == "Running"


def _no_migrations_left(r: Reader) -> None:
    for cluster in ("source", "target"):
        assert _wait_for(lambda: not r.list(cluster, "VirtualMachineInstanceMigration", "shop")), cluster


def _assert_full_success(r: Reader) -> None:
    for name in VMS:
        _assert_migrated(r, name)
    seed = load_yaml(EXAMPLE_PLAN.parent / "seed.yaml")["source"]
    for kind, name in (("Secret", "web-tls"), ("ConfigMap", "web-config"), ("Secret", "db-1-cloudinit")):
        copies = [o for o in r.list("target", kind, "shop") if o["metadata"]["name"] == name]
        assert len(copies) == 1, name
        assert copies[0]["data"] == find(seed, kind, name)["data"], name
        if kind == "Secret":
            assert copies[0]["type"] == find(seed, kind, name)["type"], name
    assert r.get("target", "VirtualMachineInstancetype", "shop", "web-medium") is not None
    # The disks belong to the target VM (deleting it removes them).
    vm = r.get("target", "VirtualMachine", "shop", "db-1")
    for kind, disk in (("DataVolume", "db-1-root"), ("PersistentVolumeClaim", "db-1-data")):
        owners = r.get("target", kind, "shop", disk)["metadata"].get("ownerReferences") or []
        assert [o["uid"] for o in owners] == [vm["metadata"]["uid"]], disk
    _no_migrations_left(r)


@pytest.fixture
def started(make_sim: Callable[..., SimulatedClusters]) -> Callable[..., SimulatedClusters]:
    def start(seed: Path, tick: float = 0.02) -> SimulatedClusters:
        return make_sim(seed=seed, tick=tick)
    return start


def test_example_plan_runs_to_completion(tmp_path: Path) -> None:
    proc = _smrun("run", str(EXAMPLE_PLAN), "--output", "json", "--state-dir",
                  str(tmp_path / "state"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = _events(proc.stdout)
    assert _vms(events, "vm_succeeded") == ["shop/db-1", "shop/web-1", "shop/web-2"]
    # Only db-1 has a hook; the migration's phases are reported while waiting.
    assert {e["vm"] for e in events
            if e.get("state") == "PreHook" and e["event"] != "state_skipped"} == {"shop/db-1"}
    assert {e["vm"] for e in events
            if e["event"] == "state_skipped" and e["state"] == "PreHook"} == {"shop/web-1", "shop/web-2"}
    progress = {e.get("progress") for e in events
                if e["event"] == "state_waiting" and e.get("state") == "WaitForStateTransfer"}
    assert any(p and p.startswith("migration ") for p in progress), progress


def test_live_migration_end_state(started: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    sim = started(_seed(tmp_path=tmp_path))
    plan = _plan_against(sim.kubeconfig_path, tmp_path)
    proc = _smrun("run", str(plan), "--output", "json", "--state-dir", str(tmp_path / "state"),
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = Reader.of_sim(sim)
    _assert_full_success(r)
    # The journal keeps what the migrations used: the target cluster's sync address (from the
    # target VMIM's status) and one migration ID per VM, carrying the run id.
    status = _smrun("status", str(plan), "--output", "json", "--state-dir", str(tmp_path / "state"),
                    cwd=tmp_path)
    rows = [json.loads(line) for line in status.stdout.splitlines() if line.startswith("{")]
    address = r.get("target", "KubeVirt", "kubevirt", "kubevirt")["status"]["synchronizationAddresses"][0]
    assert sorted(row["vm"] for row in rows) == ["shop/db-1", "shop/web-1", "shop/web-2"]
    for row in rows:
        assert row["outputs"]["connectURL"] == address
        assert row["outputs"]["migrationID"] == f"{row['vm'].replace('/', '-')}-{row['run']}"
        assert row["outputs"]["restoreRunStrategy"] == "Always"


def test_two_processes_through_a_kubeconfig(tmp_path: Path) -> None:
    """``smrun sim serve`` in one process, ``smrun run`` in another: the path a real cluster takes."""
    from statemachine.k8s.client import connect

    kubeconfig = tmp_path / "kubeconfig"
    server = subprocess.Popen(
        [*SMRUN, "sim", "serve", "--seed", str(EXAMPLE_PLAN.parent / "seed.yaml"), "--tick", "0.02",
         "--kubeconfig-out", str(kubeconfig)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env())
    clusters: dict[str, Any] = {}
    try:
        assert _wait_for(lambda: kubeconfig.exists() and kubeconfig.stat().st_size > 0, 30), \
            "smrun sim serve wrote no kubeconfig"
        proc = _smrun("run", str(_plan_against(kubeconfig, tmp_path)), "--output", "json",
                      "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        for name in ("source", "target"):
            clusters[name] = connect(name=name, kubeconfig=kubeconfig, context=name,
                                     cache_dir=tmp_path / "cache")
        from statemachine.k8s import ObjectRef

        def get(cluster: str, kind: str, ns: str, name: str) -> Any:
            return clusters[cluster].get(ObjectRef(_API[kind], kind, ns, name))

        def list_(cluster: str, kind: str, ns: str) -> list[Any]:
            return list(clusters[cluster].list(_API[kind], kind, namespace=ns))
        _assert_full_success(Reader(get, list_))
    finally:
        for c in clusters.values():
            c.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_failed_migration_rolls_back_that_vm_only(started: Callable[..., SimulatedClusters],
                                                  tmp_path: Path) -> None:
    def fail_web2(seed: dict[str, Any]) -> None:
        vm = find(seed["source"], "VirtualMachine", "web-2")
        vm["metadata"].setdefault("annotations", {})["sim.smrun.io/fail-migration-at"] = "Running"
    sim = started(_seed(fail_web2, tmp_path=tmp_path))
    proc = _smrun("run", str(_plan_against(sim.kubeconfig_path, tmp_path)), "--output", "json",
                  "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = _events(proc.stdout)
    failed = [e for e in events if e["event"] == "vm_failed" and e.get("vm")]
    assert [e["vm"] for e in failed] == ["shop/web-2"]
    # KubeVirt's reason (the target VMIM's migrationState.failureReason) is in the message.
    assert "injected failure at phase Running" in failed[0]["message"]
    assert _vms(events, "vm_succeeded") == ["shop/db-1", "shop/web-1"]
    r = Reader.of_sim(sim)
    _assert_rolled_back(r, "web-2", ("web-2-root",))
    for name in ("web-1", "db-1"):
        _assert_migrated(r, name)
    # The shared resources web-1 still uses stay.
    assert r.get("target", "Secret", "shop", "web-tls") is not None
    _no_migrations_left(r)


def _run_and_cancel(sim: SimulatedClusters, tmp_path: Path, vm: str,
                    trigger: Callable[[], bool]) -> subprocess.CompletedProcess[str]:
    """Run the plan for ``vm``; request its cancel the moment ``trigger()`` holds."""
    plan = _plan_against(sim.kubeconfig_path, tmp_path)
    state = tmp_path / "state"
    fired = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if trigger():
                request_cancel(state / PLAN_NAME, [f"shop/{vm}"])
                fired.set()
                return
            time.sleep(0.002)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        # The engine looks at the cancel file on every resync tick: make that prompt.
        proc = _smrun("run", str(plan), "--vm", vm, "--output", "json", "--state-dir", str(state),
                      "--resync", "0.02", cwd=tmp_path)
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert fired.is_set(), "the cancel point was never reached"
    return proc


def test_cancel_before_hand_off_rolls_back(started: Callable[..., SimulatedClusters],
                                           tmp_path: Path) -> None:
    sim = started(_seed(tmp_path=tmp_path), tick=0.2)  # slow enough for the cancel to land mid-way
    r = Reader.of_sim(sim)

    def target_migration_waiting() -> bool:
        return any(_status(m).get("phase") in ("WaitingForSync", "Pending", "Scheduling")
                   for m in r.list("target", "VirtualMachineInstanceMigration", "shop"))
    proc = _run_and_cancel(sim, tmp_path, "db-1", target_migration_waiting)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _vms(_events(proc.stdout), "vm_canceled") == ["shop/db-1"]
    _assert_rolled_back(r, "db-1", ("db-1-root", "db-1-data"))
    _no_migrations_left(r)


@pytest.fixture(params=["target-migration-running", "target-vmi-completed"])
def hand_off_point(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_cancel_racing_the_hand_off_never_loses_the_vm(
        started: Callable[..., SimulatedClusters], tmp_path: Path, hand_off_point: str) -> None:
    sim = started(_seed(tmp_path=tmp_path), tick=0.05)
    r = Reader.of_sim(sim)

    def at_hand_off() -> bool:
        if hand_off_point == "target-migration-running":
            return any(_status(m).get("phase") == "Running"
                       for m in r.list("target", "VirtualMachineInstanceMigration", "shop"))
        state = _status(r.get("target", "VirtualMachineInstance", "shop", "web-1")).get(
            "migrationState") or {}
        return bool(state.get("completed")) and not state.get("failed")
    proc = _run_and_cancel(sim, tmp_path, "web-1", at_hand_off)
    events = _events(proc.stdout)
    outcome = [e["event"] for e in events
               if e["event"] in ("vm_succeeded", "vm_failed", "vm_canceled") and e.get("vm")]
    assert len(outcome) == 1, proc.stdout[-3000:]

    def runs(cluster: str) -> bool:
        return _status(r.get(cluster, "VirtualMachineInstance", "shop", "web-1")).get("phase") == "Running"
    # Give KubeVirt's controllers a moment to settle, then exactly one copy runs.
    assert _wait_for(lambda: runs("target") != runs("source"), 10), \
        f"{outcome}: target runs={runs('target')}, source runs={runs('source')}"
    if hand_off_point == "target-vmi-completed":
        # After the hand-off the cancel finishes the migration instead of undoing it.
        assert outcome == ["vm_succeeded"], proc.stdout[-3000:]
        assert any("after the hand-off" in (e.get("message") or "") for e in events)
        _assert_migrated(r, "web-1")
    else:
        # While KubeVirt copies, a cancel aborts (or, if it lost the race, finishes).
        assert outcome in (["vm_canceled"], ["vm_succeeded"]), proc.stdout[-3000:]
    # Whichever way the race went (a cancel whose undo met the hand-off, too late, finishes the
    # migration: test_a_cancel_whose_undo_meets_the_hand_off_finishes_the_migration drives that
    # case deterministically), a VM running on the target is migrated, one on the source is
    # rolled back, and no migration object is left.
    if runs("target"):
        assert outcome == ["vm_succeeded"], proc.stdout[-3000:]
        _assert_migrated(r, "web-1")
    else:
        assert outcome == ["vm_canceled"], proc.stdout[-3000:]
        _assert_rolled_back(r, "web-1", ("web-1-root",))
    _no_migrations_left(r)


class _HandOffDuringUndo:
    """The target cluster, except that the second read of the commit object (the target VMI),
    the one undo makes before its first step, first lets KubeVirt finish the hand-off: the first
    read (the cancel's own check) saw it not done. Only the commit rule reads that VMI with
    ``fetch`` (readiness reads the watch cache), so the count is exact. Lets the engine meet the
    hand-off in the middle of a cancel deterministically instead of by timing."""

    def __init__(self, inner: Any, sim: SimulatedClusters, vm: str) -> None:
        self.inner, self.sim, self.vm = inner, sim, vm
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def fetch(self, ref: Any) -> Any:
        if ref.kind == "VirtualMachineInstance" and ref.name == self.vm:
            self.reads += 1
            if self.reads == 2:
                _finish_hand_off(self.sim, self.vm)
        return self.inner.fetch(ref)


def _finish_hand_off(sim: SimulatedClusters, name: str) -> None:
    """Release a migration held by _hold_at_target_ready and wait for the hand-off (the target
    VMI reports the migration completed: the live itinerary's commit condition)."""
    def release(vm: dict[str, Any]) -> None:
        vm["metadata"]["annotations"].pop(HOLD_MIGRATION_AT)
    sim.store("source").mutate("VirtualMachine", "shop", name, release)

    def completed() -> bool:
        vmi = sim.store("target").try_get("VirtualMachineInstance", "shop", name)
        state = _status(vmi).get("migrationState") or {}
        return bool(state.get("completed")) and not state.get("failed")
    assert _wait_for(completed), "the released migration did not complete"


def _hold_at_target_ready(seed: dict[str, Any]) -> None:
    """web-1's migration holds at TargetReady (both sides) until the annotation goes."""
    vm = find(seed["source"], "VirtualMachine", "web-1")
    vm["metadata"].setdefault("annotations", {})[HOLD_MIGRATION_AT] = "TargetReady"


def _target_ready(r: Reader) -> bool:
    return any(_status(m).get("phase") == "TargetReady"
               for m in r.list("target", "VirtualMachineInstanceMigration", "shop"))


def _smrun_objects(r: Reader) -> dict[str, list[tuple[str, str]]]:
    """Per cluster, the (kind, name) of every object in shop labelled as this plan's."""
    out: dict[str, list[tuple[str, str]]] = {}
    for cluster in ("source", "target"):
        out[cluster] = sorted(
            (kind, o["metadata"]["name"]) for kind in (*_API, "Job", "ServiceExport")
            for o in r.list(cluster, kind, "shop")
            if (o["metadata"].get("labels") or {}).get("smrun.io/plan") == PLAN_NAME)
    return out


def test_a_cancel_whose_undo_meets_the_hand_off_finishes_the_migration(
        started: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    """The race of test_cancel_racing_the_hand_off_never_loses_the_vm, made deterministic: the
    migration is held mid-way, the cancel's first look at the target VMI finds no hand-off, and
    KubeVirt finishes it right before undo's first step (_HandOffDuringUndo). The cancel came too
    late: undo stops, nothing is undone, and the migration is finished as if uncanceled (no VMIM
    or other migration object left, the VM runs on the target only, Completed with a note)."""
    sim = started(_seed(_hold_at_target_ready, tmp_path=tmp_path), tick=0.05)
    r = Reader.of_sim(sim)
    plan = load_plan(_plan_against(sim.kubeconfig_path, tmp_path))
    plan = dataclasses.replace(plan, vms=tuple(v for v in plan.vms if v.name == "web-1"))
    journal = Journal(tmp_path / "state" / plan.name)
    events: list[dict[str, Any]] = []
    with connect_plan(plan, cache_dir=tmp_path / "cache") as conn:
        target = _HandOffDuringUndo(conn.target, sim, "web-1")
        engine = Engine(plan, itinerary_for_plan(plan), source=conn.source, target=target,
                        journal=journal, settings=EngineSettings(resync=0.05),
                        on_event=events.append, servers=conn.servers)
        stop = threading.Event()

        def cancel_when_held() -> None:
            while not stop.is_set() and not _target_ready(r):
                time.sleep(0.01)
            if not stop.is_set():
                engine.cancel(["shop/web-1"])
        watcher = threading.Thread(target=cancel_when_held, daemon=True)
        watcher.start()
        try:
            (vm,) = engine.run().vms
        finally:
            stop.set()
            watcher.join(timeout=5)
            journal.close()
    assert target.reads >= 2, "undo never looked at the commit object again"
    assert vm.phase == "Completed", vm.message
    assert vm.message == ("canceled too late: the hand-off happened while undo ran (before undo "
                          "of CreateSourceMigration; nothing was undone): the migration was "
                          "finished"), vm.message
    assert [e["event"] for e in events if e["event"].startswith("vm_") and e.get("vm")] == \
        ["vm_started", "vm_succeeded"]
    _assert_migrated(r, "web-1")
    _no_migrations_left(r)
    # Exactly one copy runs (the target's), and what smrun left is what a migration leaves.
    assert _wait_for(lambda: r.get("source", "VirtualMachineInstance", "shop", "web-1") is None)
    left = _smrun_objects(r)
    assert left["source"] == [], left
    assert {kind for kind, _ in left["target"]} <= {
        "VirtualMachine", "DataVolume", "PersistentVolumeClaim", "Secret", "ConfigMap",
        "VirtualMachineInstancetype"}, left
    # The journal: undo began, stopped before its first step, nothing was deleted by it.
    entries = [e for e in read_entries(tmp_path / "state" / plan.name / "journal.jsonl")
               if e.get("vm") == "shop/web-1"]
    kinds = [e["type"] for e in entries]
    assert kinds.count("undo_started") == 1 and kinds.count("undo_stopped") == 1, kinds
    undo = kinds[kinds.index("undo_started"):kinds.index("undo_stopped")]
    assert "deleted" not in undo and kinds[-1] == "vm_terminal", kinds
    assert [e["state"] for e in entries if e["type"] == "undo_stopped"] == ["CreateSourceMigration"]


def test_killed_while_undo_meets_the_hand_off_resumes_and_finishes(
        started: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    """SIGKILL right as a cancel's undo begins (journaled, nothing deleted yet) while the
    migration is held; KubeVirt then finishes the hand-off while smrun is down. The same command
    again resumes the undo, finds the hand-off done before its first step and finishes the
    migration instead: exit 0, nothing smrun created for the migration is left."""
    sim = started(_seed(_hold_at_target_ready, tmp_path=tmp_path), tick=0.05)
    r = Reader.of_sim(sim)
    plan = _plan_against(sim.kubeconfig_path, tmp_path)
    state = tmp_path / "state"
    # tests/crashrun.py: SIGKILL right after the first undo event, before its delete is sent.
    first = subprocess.Popen([sys.executable, str(CRASHRUN), "undo:WaitForStateTransfer:1", "--",
                              "run", str(plan), "--vm", "web-1", "--output", "json",
                              "--state-dir", str(state), "--resync", "0.02"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path, env=_env())
    try:
        assert first.stdout is not None
        for line in first.stdout:
            e = json.loads(line) if line.startswith("{") else {}
            if e.get("event") == "state_entered" and e.get("state") == "WaitForStateTransfer":
                # Held at TargetReady: the cancel lands in this state, before the hand-off.
                assert _wait_for(lambda: _target_ready(r))
                request_cancel(state / PLAN_NAME, ["shop/web-1"])
        first.wait(timeout=RUN_TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == -signal.SIGKILL, first.stderr.read() if first.stderr else ""
    assert len(r.list("source", "VirtualMachineInstanceMigration", "shop")) == 1  # not deleted
    _finish_hand_off(sim, "web-1")  # KubeVirt goes on while smrun is down

    again = _smrun("run", str(plan), "--vm", "web-1", "--output", "json", "--state-dir",
                   str(state), cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    (ended,) = [e for e in _events(again.stdout) if e["event"] == "vm_succeeded" and e.get("vm")]
    assert ended["message"] == ("canceled too late: the hand-off happened while undo ran (before "
                                "undo of CreateSourceMigration; nothing was undone): the "
                                "migration was finished"), ended
    _assert_migrated(r, "web-1")
    _no_migrations_left(r)
    assert _smrun_objects(r)["source"] == []


def test_blocked_synchronization_is_reported_and_times_out(tmp_path: Path) -> None:
    """Without the CA exchange KubeVirt's sync controllers cannot talk (x509): the migration
    never fails by itself. The waiting state shows KubeVirt's decentralizedMigrationBlocked
    message and the VM fails at the state's timeout instead of hanging.

    The itinerary is a copy of the built-in one, edited the way an itinerary author would: no
    ``setup`` (no CA exchange) and a 3 s timeout on CreateSourceMigration.
    """
    from tests.live.conftest import LIVE_YAML, plan_variant

    itinerary = load_yaml(LIVE_YAML)
    del itinerary["spec"]["setup"]
    # the built-in fragments, where they are (an include is relative to the including file)
    itinerary["spec"]["include"] = [str(LIVE_YAML.parent / f) for f in itinerary["spec"]["include"]]
    state = next(s for s in itinerary["spec"]["states"] if s.get("name") == "CreateSourceMigration")
    state["readiness"]["timeout"] = "3s"
    custom = tmp_path / "live-no-ca.yaml"
    custom.write_text(yaml.safe_dump(itinerary, sort_keys=False), encoding="utf-8")

    def only_web1(plan: dict[str, Any]) -> None:
        plan["spec"]["itinerary"] = str(custom)
        plan["spec"]["vms"] = [{"name": "web-1", "namespace": "shop"}]
    plan = plan_variant(tmp_path, plan_edit=only_web1)
    proc = _smrun("run", str(plan), "--output", "json", "--state-dir", str(tmp_path / "state"),
                  cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = _events(proc.stdout)
    progress = [e.get("progress") or "" for e in events
                if e["event"] == "state_waiting" and e.get("state") == "CreateSourceMigration"]
    assert any("x509" in p for p in progress), progress
    failed = [e for e in events if e["event"] == "vm_failed" and e.get("vm")]
    assert [e["vm"] for e in failed] == ["shop/web-1"]
    assert "CreateSourceMigration" in failed[0]["message"] and "timed out" in failed[0]["message"]


def test_killed_during_the_transfer_resumes(started: Callable[..., SimulatedClusters],
                                            tmp_path: Path) -> None:
    """SIGKILL while KubeVirt copies; the same command again adopts what exists and finishes."""
    sim = started(_seed(tmp_path=tmp_path), tick=0.1)
    plan = _plan_against(sim.kubeconfig_path, tmp_path)
    state = tmp_path / "state"
    cmd = [*SMRUN, "run", str(plan), "--output", "json", "--state-dir", str(state)]
    assert kill_at_event(cmd, event="state_entered", state="WaitForStateTransfer", cwd=tmp_path,
                         env=_env()), "the run ended before any migration started"

    again = _smrun("run", str(plan), "--output", "json", "--state-dir", str(state), cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    r = Reader.of_sim(sim)
    _assert_full_success(r)
    # Nothing was created twice: one target VM per source VM, one blank disk per source disk.
    assert sorted(v["metadata"]["name"] for v in r.list("target", "VirtualMachine", "shop")) == \
        sorted(VMS)
    assert sorted(d["metadata"]["name"] for d in r.list("target", "DataVolume", "shop")) == \
        ["db-1-root", "web-1-root", "web-2-root"]
