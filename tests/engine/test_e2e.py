"""The engine end to end: simulated clusters over HTTP, the real client, the real language.

The simulator is started in the test process (so it outlives a killed ``smrun run``); smrun gets
a plan with kubeconfig contexts. Objects are counted in the simulator's store (``ADDED`` events),
so "never created twice" is checked at the source, even for creates whose answer was dropped.
"""
from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import statemachine.commands as commands
from statemachine.engine import Journal
from statemachine.errors import LockHeld, PreflightError
from statemachine.itinerary import load_itinerary
from statemachine.plan import load_plan
from statemachine.sim.cluster import SimulatedClusters

DATA = Path(__file__).resolve().parent.parent / "data" / "engine"
ITINERARY = DATA / "itinerary.yaml"
STUCK = DATA / "itinerary-stuck.yaml"
KINDS = ("ConfigMap", "Job")


def write_plan(tmp: Path, sim: SimulatedClusters, names: list[str], *, itinerary: Path = ITINERARY,
               target_context: str = "target", max_in_flight: int = 5, name: str = "e2e") -> Path:
    vms = "".join(f"    - {{name: {n}, namespace: shop}}\n" for n in names)
    path = tmp / f"{name}.yaml"
    path.write_text(f"""apiVersion: smrun.io/v1alpha1
kind: Plan
metadata: {{name: {name}}}
spec:
  type: cold
  itinerary: {itinerary}
  source: {{kubeconfig: {sim.kubeconfig_path}, context: source}}
  target: {{kubeconfig: {sim.kubeconfig_path}, context: {target_context}}}
  settings: {{maxInFlight: {max_in_flight}, stepTimeout: 1m}}
  vms:
{vms}""", encoding="utf-8")
    return path


class Creations:
    """Counts every object the target store ever added, by (kind, name)."""

    def __init__(self, sim: SimulatedClusters) -> None:
        self.store = sim.store("target")
        self.added: Counter[tuple[str, str]] = Counter()
        self.store.subscribe(self._on)

    def _on(self, event: Any) -> None:
        if event.type == "ADDED" and event.obj["kind"] in KINDS:  # not the Jobs' Pods
            self.added[(event.obj["kind"], event.obj["metadata"]["name"])] += 1

    def left(self, plan: str) -> list[str]:
        return [f"{k} {o['metadata']['name']}" for k in KINDS
                for o in self.store.list(k, "shop", label_selector=f"smrun.io/plan={plan}")]


@pytest.fixture
def simc(tmp_path: Path) -> Iterator[SimulatedClusters]:
    with SimulatedClusters(seed=DATA / "seed.yaml", tick=0.02,
                           kubeconfig_out=tmp_path / "kubeconfig") as sim:
        yield sim


def run_lib(plan_path: Path, state_dir: Path, **kw: Any) -> tuple[int, list[dict[str, Any]]]:
    plan = load_plan(plan_path)
    out = io.StringIO()
    code = commands.run(plan, load_itinerary(plan.itinerary), state_dir=state_dir, output="json",
                      stream=out, resync=0.3, **kw)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def test_twenty_vms_complete_with_at_most_five_in_flight(simc: SimulatedClusters, tmp_path: Path) -> None:
    created = Creations(simc)
    names = [f"vm-{i}" for i in range(20)]
    code, events = run_lib(write_plan(tmp_path, simc, names), tmp_path / "state")
    assert code == 0, [e for e in events if e["event"] == "vm_failed"][:1]
    live = peak = 0
    for e in events:
        live += {"vm_started": 1, "vm_succeeded": -1, "vm_failed": -1, "vm_canceled": -1}.get(e["event"], 0)
        peak = max(peak, live)
    assert peak == 5
    assert events[-1]["event"] == "run_finished" and events[-1]["completed"] == 20
    store = simc.store("target")
    job = store.get("Job", "shop", "vm-7-job")
    assert store.get("ConfigMap", "shop", "vm-7-result")["data"]["jobUid"] == job["metadata"]["uid"]
    labels = job["metadata"]["labels"]
    assert labels["smrun.io/vm"] == "vm-7" and labels["smrun.io/state"] == "RunJob"
    assert "smrun.io/manifest-hash" in job["metadata"]["annotations"]
    assert set(created.added.values()) == {1} and len(created.added) == 60
    reasons = Counter(e["reason"] for e in store.list("Event", "shop"))
    assert reasons["MigrationSucceeded"] == 20


def test_failed_job_undoes_and_exits_1_and_timeout_names_the_clause(
        simc: SimulatedClusters, tmp_path: Path) -> None:
    created = Creations(simc)
    code, events = run_lib(write_plan(tmp_path, simc, ["bad-1", "ok-1"]), tmp_path / "state")
    assert code == 1
    failed = [e for e in events if e["event"] == "vm_failed"]
    assert [e["vm"] for e in failed] == ["shop/bad-1"] and "RunJob" in failed[0]["message"]
    assert [n for n in created.left("e2e") if "bad-1" in n] == []
    code, events = run_lib(write_plan(tmp_path, simc, ["slow-1"], itinerary=STUCK, name="stuck"),
                           tmp_path / "state")
    assert code == 1
    (msg,) = [e["message"] for e in events if e["event"] == "vm_failed"]
    assert msg.startswith("WaitForever: timed out after 2s: ready: object.data.phase == 'Succeeded' "
                          "was false (object.data.phase = 'Pending')")
    assert created.left("stuck") == []


def test_cancel_during_a_wait_runs_undo_and_ends_canceled(simc: SimulatedClusters, tmp_path: Path) -> None:
    plan_path = write_plan(tmp_path, simc, ["c-1"], itinerary=STUCK, name="cancel")
    plan = load_plan(plan_path)
    created = Creations(simc)
    state = tmp_path / "state"

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            if '"state_waiting"' in text and not getattr(self, "sent", False):
                self.sent = True
                assert commands.cancel(plan, state_dir=state, vms=None) == 0
            return super().write(text)

    out = Stream()
    code = commands.run(plan, load_itinerary(plan.itinerary), state_dir=state, output="json",
                      stream=out, resync=0.1)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 1
    assert [e["event"] for e in events if e["event"].startswith("vm_")][-1] == "vm_canceled"
    assert created.left("cancel") == [] and created.added[("ConfigMap", "c-1-config")] == 1
    assert commands.status(plan, state_dir=state)[0]["phase"] == "Canceled"


def test_with_faults_the_run_completes_and_retries_are_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with SimulatedClusters(seed=DATA / "seed.yaml", tick=0.02, fault_rate=0.2, fault_seed=7,
                           kubeconfig_out=tmp_path / "kubeconfig") as sim:
        created = Creations(sim)
        code, events = run_lib(write_plan(tmp_path, sim, [f"f-{i}" for i in range(4)]), tmp_path / "state")
    assert code == 0, [e for e in events if e["event"] == "vm_failed"][:1]
    assert "retry" in caplog.text.lower()
    assert set(created.added.values()) == {1}


def _refused_by_preflight_and_run(plan: Any, itinerary: Any, tmp_path: Path) -> list[PreflightError]:
    """The PreflightError (exit 3) of ``smrun validate``'s preflight and of ``smrun run``."""
    errors = []
    for call in (lambda: commands.preflight(plan, itinerary, stream=io.StringIO()),
                 lambda: commands.run(plan, itinerary, state_dir=tmp_path / "state", output="json",
                                      stream=io.StringIO())):
        with pytest.raises(PreflightError) as info:
            call()
        assert info.value.exit_code == 3
        errors.append(info.value)
    return errors


def test_user_without_create_rights_is_refused_before_anything_is_created(
        simc: SimulatedClusters, tmp_path: Path) -> None:
    created = Creations(simc)
    plan = load_plan(write_plan(tmp_path, simc, ["r-1"], target_context="target-viewer", name="rbac"))
    itinerary = load_itinerary(plan.itinerary)
    for error in _refused_by_preflight_and_run(plan, itinerary, tmp_path):
        text = str(error)
        assert "target: missing permission: create v1 ConfigMap in namespace shop" in text
        assert "target: missing permission: create batch/v1 Job in namespace shop" in text
    assert created.added == Counter()
    cli = subprocess.run([sys.executable, "-m", "statemachine", "validate", str(plan.path)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 3, cli.stderr
    assert "missing permission: create batch/v1 Job in namespace shop" in cli.stdout + cli.stderr
    assert created.added == Counter()



def test_preflight_lists_every_read_the_user_may_not_do_then_refuses(
        simc: SimulatedClusters, tmp_path: Path) -> None:
    # The viewer may read ConfigMaps in shop on the target, but not Namespaces nor Secrets. Each
    # VM reads its Namespace (refused: the same line for every VM), then a Secret of its own
    # (refused, met although the Namespace's refusal came first). Every refusal is listed once,
    # as the server words it, and preflight refuses with exit 3; nothing is created.
    created = Creations(simc)
    plan = load_plan(write_plan(tmp_path, simc, ["r-1", "r-2", "r-3"], name="refused",
                                itinerary=DATA / "itinerary-forbidden-reads.yaml",
                                target_context="target-viewer"))
    itinerary = load_itinerary(plan.itinerary)
    refused = ['namespaces "shop" is forbidden: User "viewer" cannot get resource "namespaces" '
               'in API group "" at the cluster scope'] + [
        f'secrets "r-{i}-creds" is forbidden: User "viewer" cannot get resource "secrets" in '
        'API group "" in the namespace "shop"' for i in (1, 2, 3)]
    for error in _refused_by_preflight_and_run(plan, itinerary, tmp_path):
        assert list(error.problems) == refused  # the read over a refused one is not tried
    cli = subprocess.run([sys.executable, "-m", "statemachine", "validate", str(plan.path)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 3, cli.stderr
    assert [line.strip().removeprefix("- ") for line in cli.stderr.splitlines()
            if "forbidden" in line] == refused
    assert created.added == Counter()

# -- subprocess: kill -9 and the lock ---------------------------------------------------------------
CRASHRUN = Path(__file__).resolve().parents[1] / "crashrun.py"


def smrun(plan: Path, state: Path, *, crash_at: str = "") -> subprocess.Popen[str]:
    """``smrun run`` (through tests/crashrun.py with ``crash_at``: EVENT:STATE:N)."""
    head = [str(CRASHRUN), crash_at, "--"] if crash_at else ["-m", "statemachine"]
    return subprocess.Popen([sys.executable, *head, "run", str(plan), "--state-dir", str(state),
                             "--output", "json", "--resync", "0.3"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_until(plan: Path, state: Path, *, event: str, state_name: str, nth: int = 1) -> bool:
    """Run ``smrun run`` that SIGKILLs itself right after the ``nth`` matching event."""
    proc = smrun(plan, state, crash_at=f"{event}:{state_name}:{nth}")
    proc.communicate(timeout=60)
    return proc.returncode == -signal.SIGKILL


KILL_POINTS = [("state_entered", "MakeConfig"), ("state_entered", "RunJob"),
               ("state_waiting", "RunJob"), ("state_completed", "RunJob"),
               ("state_entered", "UseOutput"), ("state_completed", "UseOutput"),
               ("undo", "RunJob")]  # the failing VM, killed at the start of its undo


@pytest.mark.slow
def test_kill_9_at_every_boundary_then_rerun_completes_without_duplicates(
        simc: SimulatedClusters, tmp_path: Path) -> None:
    created = Creations(simc)
    for i, (event, state_name) in enumerate(KILL_POINTS):
        plan = write_plan(tmp_path, simc, [f"k{i}-a", f"k{i}-b", f"bad-k{i}"], name=f"kill{i}")
        nth = 1 if event == "undo" else 2
        assert run_until(plan, tmp_path / "state", event=event, state_name=state_name, nth=nth)
        before = {r["vm"]: r["phase"] for r in commands.status(load_plan(plan), state_dir=tmp_path / "state")}
        # Killed mid-run: some VM is not terminal (interrupted, or killed during its undo: the
        # VMs that were not failing may already have completed by then).
        assert {"Interrupted", "Failing"} & set(before.values()), before
        proc = smrun(plan, tmp_path / "state")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err  # bad-k* fails (its Job fails), the others complete
        finals = {e["vm"]: e["event"] for e in map(json.loads, out.splitlines())
                  if e["event"] in ("vm_succeeded", "vm_failed")}
        assert finals.get(f"shop/k{i}-a", "vm_succeeded") == "vm_succeeded"
        rows = {r["vm"]: r["phase"] for r in commands.status(load_plan(plan), state_dir=tmp_path / "state")}
        assert rows == {f"shop/k{i}-a": "Completed", f"shop/k{i}-b": "Completed",
                        f"shop/bad-k{i}": "Failed"}, (event, state_name)
        assert [n for n in created.left(f"kill{i}") if "bad" in n] == [], (event, state_name)
    # Good VMs: every object created exactly once across kill and resume. (A VM that failed and was
    # undone in the first run is legitimately re-run, so bad-* objects may be created again.)
    good = {k: n for k, n in created.added.items() if not k[1].startswith("bad")}
    assert len(good) == len(KILL_POINTS) * 2 * 3 and set(good.values()) == {1}


def test_a_second_run_of_the_same_plan_refuses(simc: SimulatedClusters, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, simc, ["l-1"], itinerary=STUCK, name="locked")
    first = smrun(plan, tmp_path / "state")
    try:
        assert first.stdout is not None
        for line in first.stdout:
            if json.loads(line)["event"] == "state_waiting":
                break
        second = subprocess.run([sys.executable, "-m", "statemachine", "run", str(plan), "--state-dir",
                                 str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "already running" in second.stderr
    finally:
        first.kill()
        first.wait(timeout=30)
    journal = Journal.for_plan(tmp_path / "state", "locked")
    journal.lock()  # released once the first process is gone
    journal.close()
    with pytest.raises(LockHeld):
        held = Journal.for_plan(tmp_path / "state", "locked")
        held.lock()
        try:
            Journal.for_plan(tmp_path / "state", "locked").lock()
        finally:
            held.close()


def _authorization_requests(log: Path) -> Counter[str]:
    reviews = ("selfsubjectaccessreviews", "selfsubjectrulesreviews")
    found: Counter[str] = Counter()
    for line in log.read_text(encoding="utf-8").splitlines():
        path = json.loads(line)["path"]
        found.update(r for r in reviews if path.endswith(r))
    return found


@pytest.mark.parametrize("user", ["target", "target-viewer"])
def test_preflight_authorization_requests_do_not_grow_with_the_number_of_vms(
        tmp_path: Path, user: str) -> None:
    """One rules review per cluster and namespace (issue 17): 2 VMs and 12 VMs in one namespace
    ask the same authorization questions, and get the same findings."""
    counts, findings = [], []
    for n in (2, 12):
        log = tmp_path / f"requests-{n}.jsonl"
        with SimulatedClusters(seed=DATA / "seed.yaml", tick=0.02, request_log=log,
                               kubeconfig_out=tmp_path / f"kubeconfig-{n}") as sim:
            plan = load_plan(write_plan(tmp_path, sim, [f"a-{i}" for i in range(n)],
                                        target_context=user, name=f"auth{n}"))
            try:
                commands.preflight(plan, load_itinerary(plan.itinerary), stream=io.StringIO())
                findings.append(())
            except PreflightError as e:
                findings.append(e.problems)
        counts.append(_authorization_requests(log))
    assert counts[0] == counts[1] and counts[0]["selfsubjectrulesreviews"] >= 1
    assert findings[0] == findings[1]
    assert bool(findings[0]) == (user == "target-viewer")
