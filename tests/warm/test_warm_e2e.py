"""The warm itinerary end to end: ``smrun run`` (a subprocess, the real client) against simulated
clusters started by the test from the example's seed (see ``harness.py``), whose state is then
inspected: rounds and bytes in the journal and ``smrun status``, the end state of both clusters,
early cutover, a cutover time, and failure or cancel leaving the source running and the target clean.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters

from polling import wait_for
from processes import cancel_at_event

from .harness import (RUN_TIMEOUT, SMRUN, by_plan, events, get, journal, plan_against, smrun,
                      start_sim)

pytestmark = pytest.mark.slow
PLAN = "warm-demo"
GI = 1 << 30


def _rounds(state: Path, vm: str) -> list[dict[str, Any]]:
    """The last ``rounds`` output FinishRound journaled for ``vm``."""
    entries = [e for e in journal(state, PLAN) if e["type"] == "outputs" and e.get("vm") == vm
               and e["state"] == "FinishRound"]
    assert entries, f"no FinishRound outputs for {vm}"
    rounds: list[dict[str, Any]] = entries[-1]["values"]["rounds"]
    # Each round's completion is journaled with the rounds so far.
    assert [len(e["values"]["rounds"]) for e in entries] == list(range(1, len(entries) + 1))
    return rounds


def _run(sim: SimulatedClusters, tmp_path: Path, **changes: Any) -> tuple[Any, Path]:
    # 1 s between rounds instead of the example's 2 s: the same flow, a shorter suite.
    changes["settings"] = {"precopyInterval": "1s", **changes.get("settings", {})}
    plan = plan_against(sim, tmp_path, **changes)
    state = tmp_path / "state"
    return smrun("run", str(plan), "--output", "json", "--state-dir", str(state), cwd=tmp_path), state


def _assert_source_restored(sim: SimulatedClusters, name: str) -> None:
    vm = get(sim, "source", "VirtualMachine", "ledger", name)
    assert vm["spec"]["runStrategy"] == "Always"
    assert "startStrategy" not in vm["spec"]["template"]["spec"]
    assert wait_for(lambda: (get(sim, "source", "VirtualMachine", "ledger", name)
                             .get("status", {}).get("printableStatus")) == "Running")
    vmi = get(sim, "source", "VirtualMachineInstance", "ledger", name)
    assert "startStrategy" not in vmi["spec"]


def _assert_migration_objects_gone(sim: SimulatedClusters, name: str) -> None:
    for kind in ("VirtualMachineBackup", "VirtualMachineBackupTracker", "VirtualMachineExport"):
        assert [o["metadata"]["name"] for o in sim.store("source").list(kind)
                if o["metadata"]["name"].startswith(name)] == [], kind
    assert get(sim, "source", "PersistentVolumeClaim", "ledger", f"{name}-mig-scratch") is None
    assert get(sim, "source", "Secret", "ledger", f"{name}-mig-token") is None
    for kind in ("Job", "ConfigMap", "Secret", "PersistentVolumeClaim", "VirtualMachine"):
        left = [o["metadata"]["name"] for o in by_plan(sim, "target", kind, PLAN)
                if o["metadata"]["name"].startswith(name)]
        assert left == [], f"{kind} left on the target: {left}"


def _fail_when(sim: SimulatedClusters, cluster: str, kind: str,
               pick: Callable[[dict[str, Any]], bool]) -> threading.Event:
    """In the background: mark the first object of ``kind`` that ``pick`` accepts with
    ``sim.smrun.io/fail: "true"`` as soon as it appears (the simulator then fails it)."""
    done = threading.Event()

    def watch() -> None:
        store = sim.store(cluster)
        while not done.is_set():
            for obj in store.list(kind):
                if pick(obj):
                    md = obj["metadata"]
                    store.mutate(kind, md["namespace"], md["name"], lambda o: o["metadata"]
                                 .setdefault("annotations", {}).update({"sim.smrun.io/fail": "true"}))
                    done.set()
                    return
            done.wait(0.005)

    threading.Thread(target=watch, daemon=True).start()
    return done


def test_example_precopy_rounds_then_cutover(make_sim: Callable[..., SimulatedClusters],
                                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sim = start_sim(make_sim, monkeypatch)
    proc, state = _run(sim, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(e["vm"] for e in events(proc.stdout) if e["event"] == "vm_succeeded") \
        == ["ledger/ledger-1", "ledger/ledger-2"]

    for name, size in (("ledger-1", 14 * GI), ("ledger-2", 20 * GI)):
        rounds = _rounds(state, f"ledger/{name}")
        precopy, final = rounds[:-1], rounds[-1]
        assert len(precopy) >= 3 and final["final"] and not any(r["final"] for r in precopy)
        assert [r["round"] for r in rounds] == list(range(len(rounds)))
        assert precopy[0]["type"] == "Full" and precopy[0]["bytes"] == size
        assert all(r["type"] == "Incremental" for r in rounds[1:])
        sizes = [r["bytes"] for r in rounds]
        assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
        # autoCutoverDeltaBytes (1 GiB): the last precopy round was the first small enough.
        assert precopy[-1]["bytes"] <= GI < precopy[-2]["bytes"]

        target = get(sim, "target", "VirtualMachine", "ledger", name)
        assert target["spec"]["runStrategy"] == "Always"
        assert wait_for(lambda: (get(sim, "target", "VirtualMachine", "ledger", name)
                                 .get("status", {}).get("printableStatus")) == "Running"), name
        source = get(sim, "source", "VirtualMachine", "ledger", name)
        assert source["spec"]["runStrategy"] == "Halted"
        assert "startStrategy" not in source["spec"]["template"]["spec"]
        assert get(sim, "source", "VirtualMachineInstance", "ledger", name) is None
        assert get(sim, "source", "VirtualMachineBackupTracker", "ledger", f"{name}-mig") is None
        assert get(sim, "source", "PersistentVolumeClaim", "ledger", f"{name}-mig-scratch") is None
    assert sim.store("source").list("VirtualMachineBackup") == []
    assert by_plan(sim, "target", "Job", PLAN) == []
    assert sorted(p["metadata"]["name"] for p in by_plan(sim, "target", "PersistentVolumeClaim", PLAN)) \
        == ["ledger-1-data", "ledger-1-root", "ledger-2-disk"]
    assert [c["metadata"]["name"] for c in by_plan(sim, "target", "ConfigMap", PLAN)] == []

    status = smrun("status", str(tmp_path / "plan.yaml"), "--output", "json", "--state-dir",
                   str(state), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    rows = {r["vm"]: r for r in map(json.loads, status.stdout.splitlines())}
    assert rows["ledger/ledger-1"]["phase"] == "Completed"
    assert rows["ledger/ledger-1"]["outputs"]["rounds"] == _rounds(state, "ledger/ledger-1")


def test_without_auto_cutover_the_round_limit_decides(make_sim: Callable[..., SimulatedClusters],
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    sim = start_sim(make_sim, monkeypatch)
    proc, state = _run(sim, tmp_path, vms=["ledger-1"],
                       settings={"autoCutoverDeltaBytes": None, "maxPrecopyRounds": 5})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rounds = _rounds(state, "ledger/ledger-1")
    # 5 precopy rounds (the example's auto cutover stops after 3) and the final one.
    assert [r["final"] for r in rounds] == [False] * 5 + [True]


def test_cutover_time_ends_the_precopy_loop(make_sim: Callable[..., SimulatedClusters],
                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sim = start_sim(make_sim, monkeypatch)
    # The cutover must come after the first round ended and the loop went on: that is smrun's
    # start (a process: imports, connect, preflight) plus the full first round. 6 s was enough
    # when idle but not under load (4 workers on 2 busy cores: 1 round before the cutover, in 8
    # of 12 runs); 20 s is a wide margin, and the loop keeps turning every second until then.
    at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=20)
    text = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    proc, state = _run(sim, tmp_path, vms=["ledger-2"], spec={"cutover": text},
                       settings={"autoCutoverDeltaBytes": None, "maxPrecopyRounds": None,
                                 "precopyInterval": "1s"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rounds = _rounds(state, "ledger/ledger-2")
    precopy, final = rounds[:-1], rounds[-1]
    assert len(precopy) >= 2 and final["final"], (text, [r["ended"] for r in rounds])
    # Rounds ran until the cutover time, and the final round came after it.
    assert precopy[-2]["ended"] < text <= final["ended"]


def test_failed_round_leaves_the_source_running_and_the_target_clean(
        make_sim: Callable[..., SimulatedClusters], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    sim = start_sim(make_sim, monkeypatch, tick=0.1)
    failed = _fail_when(sim, "target", "Job", lambda o: o["metadata"]["name"] == "ledger-1-mig-1-root")
    proc, _ = _run(sim, tmp_path)
    assert failed.is_set()
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    outcome = events(proc.stdout)
    assert [e["vm"] for e in outcome if e["event"] == "vm_failed"] == ["ledger/ledger-1"]
    assert [e["vm"] for e in outcome if e["event"] == "vm_succeeded"] == ["ledger/ledger-2"]
    message = next(e["message"] for e in outcome if e["event"] == "vm_failed")
    assert message.startswith("Copy [0]: failed"), message
    _assert_source_restored(sim, "ledger-1")
    _assert_migration_objects_gone(sim, "ledger-1")
    assert get(sim, "target", "VirtualMachine", "ledger", "ledger-2") is not None


def test_failed_final_round_restarts_the_paused_source_as_it_was(
        make_sim: Callable[..., SimulatedClusters], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    sim = start_sim(make_sim, monkeypatch, tick=0.1)

    def final_copy(job: dict[str, Any]) -> bool:
        round_ = (job["metadata"].get("annotations") or {}).get("smrun.io/round")
        backup = get(sim, "source", "VirtualMachineBackup", "ledger", f"ledger-1-mig-{round_}")
        return job["metadata"]["name"].startswith("ledger-1-") and backup is not None and \
            (backup["metadata"].get("annotations") or {}).get("smrun.io/final") == "true"

    failed = _fail_when(sim, "target", "Job", final_copy)
    proc, _ = _run(sim, tmp_path, vms=["ledger-1"])
    assert failed.is_set()
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    states = [e.get("state") for e in events(proc.stdout) if e["event"] == "state_completed"]
    assert "StartSourcePaused" in states and "HaltSource" not in states
    _assert_source_restored(sim, "ledger-1")
    vmi = get(sim, "source", "VirtualMachineInstance", "ledger", "ledger-1")
    assert not any(c["type"] == "Paused" for c in vmi["status"].get("conditions", []))
    _assert_migration_objects_gone(sim, "ledger-1")


def test_cancel_during_the_precopy_loop(make_sim: Callable[..., SimulatedClusters],
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sim = start_sim(make_sim, monkeypatch, tick=0.05)
    plan = plan_against(sim, tmp_path, vms=["ledger-1"], settings={"precopyInterval": "30s"})
    state = tmp_path / "state"
    code, seen, done = cancel_at_event(
        [*SMRUN, "run", str(plan), "--output", "json", "--state-dir", str(state)],
        [*SMRUN, "cancel", str(plan), "--state-dir", str(state)],
        event="state_completed", state="FinishRound", cwd=tmp_path,
        env=dict(os.environ, PYTHONUNBUFFERED="1"), timeout=RUN_TIMEOUT)
    assert done is not None and done.returncode == 0, done and done.stdout + done.stderr
    assert code == 1
    assert [e["vm"] for e in seen if e.get("event") == "vm_canceled"] == ["ledger/ledger-1"]
    assert "StopSource" not in [e.get("state") for e in seen if e.get("event") == "state_completed"]
    _assert_source_restored(sim, "ledger-1")
    _assert_migration_objects_gone(sim, "ledger-1")


def test_smrun_cutover_moves_the_cutover_while_the_plan_runs(
        make_sim: Callable[..., SimulatedClusters], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """``smrun cutover PLAN --at now --vm ...`` (the real command, another process) while the
    precopy loop runs. The plan has no cutover and no round limit: only the command can end the
    loop."""
    import io
    import subprocess

    from statemachine import commands
    from statemachine.engine.journal import request_cancel
    from statemachine.itinerary import load_itinerary
    from statemachine.plan import load_plan

    sim = start_sim(make_sim, monkeypatch)
    plan_path = plan_against(sim, tmp_path, vms=["ledger-2"],
                             settings={"autoCutoverDeltaBytes": None, "maxPrecopyRounds": None,
                                       "precopyInterval": "1s"})
    plan = load_plan(plan_path)
    state = tmp_path / "state"
    moved = threading.Event()
    said: list[str] = []

    def move_after_round_two() -> None:
        deadline = time.monotonic() + RUN_TIMEOUT / 2
        while not moved.is_set():
            finished = [e for e in (journal(state, PLAN) if (state / PLAN / "journal.jsonl").exists()
                                    else []) if e.get("type") == "state_completed"
                        and e.get("state") == "FinishRound"]
            if len(finished) >= 2:
                done = subprocess.run([*SMRUN, "cutover", str(plan_path), "--at", "now", "--vm",
                                       "ledger-2", "--state-dir", str(state)],
                                      capture_output=True, text=True, timeout=60)
                said.append(f"{done.returncode}: {done.stdout}{done.stderr}")
                moved.set()
            elif time.monotonic() > deadline:  # never hang the suite: cancel instead
                request_cancel(state / PLAN, None)
                return
            moved.wait(0.05)

    threading.Thread(target=move_after_round_two, daemon=True).start()
    out = io.StringIO()
    code = commands.run(plan, load_itinerary("warm"), state_dir=state, output="json", stream=out,
                      resync=0.2)
    moved.set()
    assert code == 0, out.getvalue()[-3000:]
    assert said and said[0].startswith("0: cutover of ledger/ledger-2"), said
    rounds = _rounds(state, "ledger/ledger-2")
    assert rounds[-1]["final"] and 2 <= len(rounds) - 1 <= 4, rounds
    assert get(sim, "source", "VirtualMachine", "ledger", "ledger-2")["spec"]["runStrategy"] == "Halted"


def test_pause_method_pauses_the_running_source_for_the_final_round(
        make_sim: Callable[..., SimulatedClusters], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    sim = start_sim(make_sim, monkeypatch)
    proc, state = _run(sim, tmp_path, vms=["ledger-1"], settings={"cutoverMethod": "pause"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    done = [e.get("state") for e in events(proc.stdout) if e["event"] == "state_completed"]
    assert "PauseSource" in done and "WaitForPausedSource" in done
    assert "StopSource" not in done and "StartSourcePaused" not in done
    assert done.index("WaitForPausedSource") < done.index("HaltSource")
    assert _rounds(state, "ledger/ledger-1")[-1]["final"]
    source = get(sim, "source", "VirtualMachine", "ledger", "ledger-1")
    assert source["spec"]["runStrategy"] == "Halted"
    # The pause Job and its RBAC objects are cleaned up.
    for kind in ("Job", "ServiceAccount", "Role", "RoleBinding"):
        assert get(sim, "source", kind, "ledger", "ledger-1-mig-pause") is None, kind


def test_smrun_cutover_during_a_long_precopy_wait_ends_it_at_once(
        make_sim: Callable[..., SimulatedClusters], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The wait between rounds re-evaluates its end (the earlier of the next round and the
    cutover) while it waits: with a 10-minute interval, `smrun cutover --at now` still cuts over
    within seconds."""
    import io
    import subprocess

    from statemachine import commands
    from statemachine.engine.journal import request_cancel
    from statemachine.itinerary import load_itinerary
    from statemachine.plan import load_plan

    sim = start_sim(make_sim, monkeypatch)
    plan_path = plan_against(sim, tmp_path, vms=["ledger-2"],
                             settings={"autoCutoverDeltaBytes": None, "maxPrecopyRounds": None,
                                       "precopyInterval": "10m"})
    state = tmp_path / "state"
    moved = threading.Event()
    at: list[float] = []

    def cut_over_once_waiting() -> None:
        deadline = time.monotonic() + 60
        while not moved.is_set():
            entered = [e for e in (journal(state, PLAN) if (state / PLAN / "journal.jsonl").exists()
                                   else []) if e.get("type") == "state_entered"
                       and e.get("state") == "PrecopyWait"]
            if entered:
                time.sleep(0.5)  # well inside the wait
                subprocess.run([*SMRUN, "cutover", str(plan_path), "--at", "now", "--state-dir",
                                str(state)], check=True, capture_output=True, timeout=60)
                at.append(time.monotonic())
                moved.set()
            elif time.monotonic() > deadline:
                request_cancel(state / PLAN, None)
                return
            moved.wait(0.05)

    threading.Thread(target=cut_over_once_waiting, daemon=True).start()
    out = io.StringIO()
    code = commands.run(load_plan(plan_path), load_itinerary("warm"), state_dir=state, output="json",
                      stream=out, resync=0.2)
    moved.set()
    assert code == 0, out.getvalue()[-3000:]
    assert at and time.monotonic() - at[0] < 60  # not the 10-minute interval
    rounds = _rounds(state, "ledger/ledger-2")
    assert rounds[-1]["final"] and len(rounds) == 2, rounds  # round 0, then the final round


def test_hooks_run_as_jobs_before_and_after_the_migration(
        make_sim: Callable[..., SimulatedClusters], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """PreHook and PostHook wait for their Job (not for the ConfigMap the hook template writes
    first, which never completes): the VM migrates and both Jobs completed on the target."""
    sim = start_sim(make_sim, monkeypatch)
    playbook = Path(__file__).resolve().parents[2] / "examples" / "live" / "hooks" / "quiesce.yml"
    proc, state = _run(sim, tmp_path, settings={"maxPrecopyRounds": 2}, spec={
        "hooks": [{"name": "quiesce", "image": "quay.io/konveyor/hook-runner",
                   "playbook": str(playbook)}],
        "vms": [{"name": "ledger-2", "namespace": "ledger",
                 "hooks": [{"step": "PreHook", "hook": "quiesce"},
                           {"step": "PostHook", "hook": "quiesce"}]}]})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    completed = [e["state"] for e in events(proc.stdout) if e["event"] == "state_completed"]
    assert "PreHook" in completed and "PostHook" in completed
    for step in ("prehook", "posthook"):
        job = get(sim, "target", "Job", "ledger", f"ledger-2-{step}-quiesce")
        assert job is not None and any(c["type"] == "Complete" and c["status"] == "True"
                                       for c in job["status"].get("conditions", [])), step
