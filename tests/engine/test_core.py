"""Engine core (scheduler, journal, actions, undo, resume) against in-memory fake clusters.

Every flow is YAML loaded by ``load_itinerary`` (tests/engine/flows.py), and every plan a real
``Plan``: the engine runs the loader's objects with the production language, context, labels and
predicates, exactly as ``smrun run`` does.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from statemachine.engine.journal import Journal, read_entries, request_cancel
from statemachine.errors import Conflict, LockHeld, StateDirError, TransientClusterError
from statemachine.itinerary import Itinerary
from statemachine.k8s import ObjectRef

from .fakes import JOB_TEMPLATE, FakeCluster
from .flows import engine, itinerary, plan

TEMPLATES = {
    "cm.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-cfg", namespace: "{{ vm.namespace }}"}
data: {vm: "{{ vm.name }}"}
""",
    "job.yaml": JOB_TEMPLATE,
    "result.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-result", namespace: "{{ vm.namespace }}"}
data: {job: "{{ outputs.jobName }}"}
""",
    "shared.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: shared, namespace: shop}
data: {v: "1"}
""",
    "handoff.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-handoff", namespace: shop}
data: {done: "yes"}
""",
    "item.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "d-{{ item }}", namespace: shop}
""",
    "round.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "round-{{ outputs.get('round', 0) + 1 }}", namespace: shop}
""",
}

MAKE_CONFIG = """
  - name: MakeConfig
    step: Prepare
    actions: [{apply: cm.yaml}]
    undo: [{delete: created}]
"""


def run_job(ready: str = "condition=Complete", extra: str = "") -> str:
    return f"""
  - name: RunJob
    step: Work
    actions: [{{apply: job.yaml}}]
    readiness: {{ready: "{ready}", failed: "condition=Failed"{extra}}}
    outputs: {{jobName: object.metadata.name}}
    undo: [{{delete: created}}]
"""


USE_OUTPUT = """
  - name: UseOutput
    step: Work
    actions: [{apply: result.yaml}]
    undo: [{delete: created}]
"""
COMPLETED = "\n  - name: Completed\n"
NEVER = ("readiness: {object: {apiVersion: v1, kind: ConfigMap, name: '{{ vm.name }}-cfg', "
         "namespace: '{{ vm.namespace }}'}, ready: \"object.data.never == 'yes'\", timeout: 1}")
COMMIT_ON_JOB = """
commit:
  after: RunJob
  object: {apiVersion: batch/v1, kind: Job, name: "{{ vm.name }}-job", namespace: "{{ vm.namespace }}"}
  condition: condition=Complete
"""


def flow(tmp_path: Path, *states: str, head: str = "", name: str = "test") -> Itinerary:
    """An itinerary of ``states`` (YAML list items) after ``head`` (other spec fields)."""
    body = head + "states:" + "".join(states or (MAKE_CONFIG, run_job(), USE_OUTPUT)) + COMPLETED
    return itinerary(tmp_path / f"it-{name}", body, TEMPLATES, name=name)


def objects(cluster: FakeCluster) -> dict[tuple[str, str, str], Any]:
    """What the engine left on the cluster, without Kubernetes Events (informative, expire)."""
    return {k: v for k, v in cluster.objects.items() if k[0] != "Event"}


def test_twenty_vms_with_max_in_flight_five_all_complete(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.02)
    p = plan("p20", [f"vm-{i}" for i in range(20)])
    events: list[dict[str, Any]] = []
    result = engine(tmp_path, p, flow(tmp_path), cluster, events=events, max_in_flight=5).run()
    assert result.exit_code == 0 and result.count("Completed") == 20
    in_flight = peak = 0
    for e in events:
        in_flight += {"vm_started": 1, "vm_succeeded": -1, "vm_failed": -1}.get(e["event"], 0)
        peak = max(peak, in_flight)
    assert peak == 5
    assert cluster.objects[("ConfigMap", "shop", "vm-3-result")]["data"]["job"] == "vm-3-job"
    assert events[-1]["event"] == "run_finished" and events[-1]["completed"] == 20
    labels = cluster.objects[("Job", "shop", "vm-0-job")]["metadata"]["labels"]
    assert labels["smrun.io/plan"] == "p20" and labels["smrun.io/vm"] == "vm-0"
    assert labels["smrun.io/state"] == "RunJob" and labels["smrun.io/vm-namespace"] == "shop"


def test_failed_job_runs_undo_and_fails_the_vm(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.02)
    result = engine(tmp_path, plan("pf", ["bad-1", "good-1"]), flow(tmp_path), cluster).run()
    phases = {v.vm: v.phase for v in result.vms}
    assert phases == {"shop/bad-1": "Failed", "shop/good-1": "Completed"}
    assert result.exit_code == 1
    assert "RunJob: failed" in [v for v in result.vms if v.phase == "Failed"][0].message
    remaining = {name for (_, _, name) in objects(cluster)}
    assert not any(n.startswith("bad-1") for n in remaining)
    events = {v["reason"]: v for k, v in cluster.objects.items() if k[0] == "Event"}
    assert events["MigrationFailed"]["involvedObject"]["name"] == "bad-1-job"
    assert events["MigrationFailed"]["type"] == "Warning" and "RunJob" in events["MigrationFailed"]["message"]
    assert events["MigrationSucceeded"]["involvedObject"]["name"] == "good-1-result"


def test_wait_that_never_holds_times_out_naming_the_clause(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.01)
    it = flow(tmp_path, MAKE_CONFIG, run_job("object.status.phase == 'Succeeded'", ", timeout: 1"),
              USE_OUTPUT)
    (vm,) = engine(tmp_path, plan("pt", ["vm-1"]), it, cluster).run().vms
    assert vm.phase == "Failed"
    assert "RunJob: timed out after 1s: ready: object.status.phase == 'Succeeded' was false" in vm.message
    assert objects(cluster) == {}


def test_cancel_during_a_wait_runs_undo_and_ends_canceled(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=60)
    events: list[dict[str, Any]] = []

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "state_waiting":
            request_cancel(tmp_path / "pc", None)

    eng = engine(tmp_path, plan("pc", ["vm-1"]), flow(tmp_path), cluster, events=events)
    eng.subscribe(on_event)
    result = eng.run()
    assert [v.phase for v in result.vms] == ["Canceled"]
    assert objects(cluster) == {}
    assert any(e["event"] == "vm_canceled" for e in events)


def test_resume_after_a_stop_mid_wait_creates_nothing_twice(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.3)
    p, it = plan("pr", [f"vm-{i}" for i in range(3)]), flow(tmp_path)
    first = engine(tmp_path, p, it, cluster)

    def stop_when_waiting(e: dict[str, Any]) -> None:
        if e["event"] == "state_waiting":
            first.scheduler.stop()  # like a kill: no terminal entries get written

    first.subscribe(stop_when_waiting)
    first.run()
    result = engine(tmp_path, p, it, cluster).run()
    assert result.count("Completed") == 3
    assert set(cluster.created_total.values()) == {1}
    # run id is stable across resume
    runs = {e["run"] for e in read_entries(tmp_path / "pr" / "journal.jsonl") if e["type"] == "run_started"}
    assert len(runs) == 1


def test_rerun_of_a_finished_plan_reruns_only_failed_vms(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.01)
    p, it = plan("pp", ["bad-1", "good-1"]), flow(tmp_path)
    engine(tmp_path, p, it, cluster).run()
    events: list[dict[str, Any]] = []
    result = engine(tmp_path, p, it, cluster, events=events).run()
    started = [e["vm"] for e in events if e["event"] == "vm_started"]
    assert started == ["shop/bad-1"]
    assert {v.vm: v.phase for v in result.vms}["shop/good-1"] == "Completed"


def test_transient_create_errors_are_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cluster = FakeCluster("c", job_seconds=0.01, fail_creates=2)
    result = engine(tmp_path, plan("pe", ["vm-1"]), flow(tmp_path), cluster).run()
    assert result.exit_code == 0
    assert "shop/vm-1: MakeConfig: create" in caplog.text and "retry 1" in caplog.text


def test_an_object_that_is_not_ours_is_never_overwritten(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.01)
    foreign = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "vm-1-cfg", "namespace": "shop"}, "data": {"owner": "someone"}}
    cluster.create(foreign)
    result = engine(tmp_path, plan("po", ["vm-1"]), flow(tmp_path), cluster).run()
    assert result.vms[0].phase == "Failed" and "not overwriting" in result.vms[0].message
    assert cluster.objects[("ConfigMap", "shop", "vm-1-cfg")]["data"] == {"owner": "someone"}


def test_a_second_run_of_the_same_plan_refuses(tmp_path: Path) -> None:
    first = Journal(tmp_path / "plan")
    first.lock()
    try:
        with pytest.raises(LockHeld, match="already running"):
            Journal(tmp_path / "plan").lock()
    finally:
        first.close()
    Journal(tmp_path / "plan").lock()  # released: a later run may take it


def test_cancel_after_the_hand_off_finishes_the_migration(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.01)
    it = flow(tmp_path, MAKE_CONFIG, run_job(), "\n  - name: Settle\n    actions: [{wait: 1}]\n",
              head=COMMIT_ON_JOB)
    eng = engine(tmp_path, plan("pk", ["vm-1"]), it, cluster)
    eng.subscribe(lambda e: e["event"] == "state_entered" and e["state"] == "Settle"
                  and request_cancel(tmp_path / "pk", None))
    (vm,) = eng.run().vms
    assert vm.phase == "Completed" and "after the hand-off" in vm.message
    assert ("Job", "shop", "vm-1-job") in cluster.objects  # nothing undone


def test_failure_after_the_hand_off_does_not_undo(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.01)
    it = flow(tmp_path, MAKE_CONFIG, run_job(), f"\n  - name: Check\n    {NEVER}\n",
              head=COMMIT_ON_JOB)
    (vm,) = engine(tmp_path, plan("pn", ["vm-1"]), it, cluster).run().vms
    assert vm.phase == "Failed" and "hand-off already happened" in vm.message
    assert ("Job", "shop", "vm-1-job") in cluster.objects


def test_for_each_and_a_next_loop(tmp_path: Path) -> None:
    cluster = FakeCluster("c")
    it = flow(tmp_path, """
  - name: Disks
    forEach: "[1, 2, 3]"
    actions: [{apply: item.yaml}]
    outputs: {disks: object.metadata.name}
  - name: Round
    actions: [{apply: round.yaml}]
    outputs: {round: "(outputs.round or 0) + 1"}
    next: [{to: Round, when: "outputs.round < 3"}]
""")
    assert engine(tmp_path, plan("pl", ["vm-1"]), it, cluster).run().exit_code == 0
    names = sorted(n for (_, _, n) in objects(cluster))
    assert names == ["d-1", "d-2", "d-3", "round-1", "round-2", "round-3"]
    rec = Journal(tmp_path / "pl").read().vms["shop/vm-1"]
    assert rec.outputs == {"disks": ["d-1", "d-2", "d-3"], "round": 3}
    assert rec.visits["Round"] == 3


def test_failed_for_ignores_a_failure_until_it_held_long_enough(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.01)
    it = flow(tmp_path, MAKE_CONFIG, run_job(extra=", failedFor: 1"))
    started = time.monotonic()
    (vm,) = engine(tmp_path, plan("pd", ["bad-1"]), it, cluster).run().vms
    assert vm.phase == "Failed" and time.monotonic() - started >= 1.0


SHARE = """
setup:
  states:
    - name: Share
      actions: [{apply: shared.yaml}]
"""


def test_setup_runs_once_before_the_vms_and_its_failure_fails_every_vm(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.01)
    it = flow(tmp_path, head=SHARE)
    events: list[dict[str, Any]] = []
    assert engine(tmp_path, plan("ps", ["vm-1", "vm-2"]), it, cluster, events=events).run().exit_code == 0
    shared = cluster.objects[("ConfigMap", "shop", "shared")]["metadata"]["labels"]
    assert "smrun.io/vm" not in shared and shared["smrun.io/plan"] == "ps"
    entered = [(e["vm"], e["state"]) for e in events if e["event"] == "state_entered"]
    assert entered[0] == ("", "Share") and entered.count(("", "Share")) == 1
    # A setup that fails (the shared object exists and is not ours) fails every VM.
    cluster2 = FakeCluster("c2")
    cluster2.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared", "namespace": "shop"}})
    p2 = plan("ps2", ["vm-1", "vm-2"])
    result = engine(tmp_path, p2, it, cluster2).run()
    assert [v.phase for v in result.vms] == ["Failed", "Failed"]
    assert all(v.message.startswith("setup failed:") for v in result.vms)
    # Fixed (the foreign object is gone): a rerun tries the setup again and then the VMs.
    cluster2.delete(ObjectRef("v1", "ConfigMap", "shop", "shared"))
    rerun = engine(tmp_path, p2, it, cluster2).run()
    assert [v.phase for v in rerun.vms] == ["Completed", "Completed"]


def test_ensure_accepts_an_existing_object_and_never_deletes_it(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.01)
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared", "namespace": "shop"},
                    "data": {"v": "other"}})
    share = "\n  - name: Share\n    actions: [{ensure: shared.yaml}]\n    undo: [{delete: created}]\n"
    it = flow(tmp_path, share, MAKE_CONFIG, run_job(), USE_OUTPUT)
    result = engine(tmp_path, plan("pe2", ["bad-1"]), it, cluster).run()
    assert result.vms[0].phase == "Failed"  # its Job fails; undo runs
    assert cluster.objects[("ConfigMap", "shop", "shared")]["data"] == {"v": "other"}
    assert ("ConfigMap", "shop", "bad-1-cfg") not in cluster.objects


def test_cancel_of_queued_vms_ends_them_without_starting(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.2)
    events: list[dict[str, Any]] = []
    eng = engine(tmp_path, plan("pq", ["vm-1", "vm-2", "vm-3"]), flow(tmp_path), cluster,
                 events=events, max_in_flight=1)
    eng.subscribe(lambda e: e["event"] == "state_waiting" and eng.cancel(["vm-2", "shop/vm-3"]))
    result = eng.run()
    assert [v.phase for v in result.vms] == ["Completed", "Canceled", "Canceled"]
    assert [e["vm"] for e in events if e["event"] == "vm_started"] == ["shop/vm-1"]


def test_a_hand_off_during_undo_stops_the_undo(tmp_path: Path) -> None:
    """KubeVirt can finish the hand-off while undo runs (the copy was already under way): the
    engine looks again before every undo step and stops rather than delete the only copy."""
    cluster = FakeCluster("c", job_seconds=0.01)
    # Check's undo plays KubeVirt completing the hand-off in the middle of our undo.
    it = flow(tmp_path, MAKE_CONFIG, run_job(),
              f"\n  - name: Check\n    {NEVER}\n    undo: [{{apply: handoff.yaml}}]\n",
              head="""
commit:
  after: RunJob
  object: {apiVersion: v1, kind: ConfigMap, name: "{{ vm.name }}-handoff", namespace: shop}
  condition: "object.data.done == 'yes'"
""")
    (vm,) = engine(tmp_path, plan("pu", ["vm-1"]), it, cluster).run().vms
    assert vm.phase == "Failed"
    assert "undo stopped before RunJob: the hand-off happened during undo" in vm.message
    # Nothing after the hand-off was removed: the Job and the ConfigMap are still there.
    assert ("Job", "shop", "vm-1-job") in cluster.objects
    assert ("ConfigMap", "shop", "vm-1-cfg") in cluster.objects


# A cancel whose undo meets the hand-off: Check waits for the hand-off (ready once the handoff
# ConfigMap says done); its undo plays KubeVirt finishing the hand-off in the middle of our undo.
HANDOFF = """
commit:
  after: RunJob
  object: {apiVersion: v1, kind: ConfigMap, name: "{{ vm.name }}-handoff", namespace: shop}
  condition: "object.data.done == 'yes'"
"""
CHECK_HANDOFF = """
  - name: Check
    readiness: {object: {apiVersion: v1, kind: ConfigMap, name: "{{ vm.name }}-handoff",
                         namespace: shop}, ready: "object.data.done == 'yes'", timeout: 30}
    undo: [{apply: handoff.yaml}]
"""


def _cancel_meets_hand_off(tmp_path: Path, name: str, *,
                           kill_at: tuple[str, str, int] | None = None) -> tuple[Any, FakeCluster]:
    """Run vm-1 through a cancel (asked while Check waits) whose undo meets the hand-off; with
    ``kill_at`` (event, state, nth), stop the first run there as a kill would, then resume."""
    cluster = FakeCluster("c", job_seconds=0.01)
    it = flow(tmp_path, MAKE_CONFIG, run_job(), CHECK_HANDOFF, USE_OUTPUT, head=HANDOFF)
    p = plan(name, ["vm-1"])
    journal = Journal(tmp_path / name)
    asked, hits = [], []

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "state_waiting" and e.get("state") == "Check" and not asked:
            asked.append(e)
            request_cancel(tmp_path / name, None)
        if kill_at is not None and (e["event"], e.get("state")) == kill_at[:2]:
            hits.append(e)
            if len(hits) == kill_at[2]:
                journal.flush()
                journal.fence(StateDirError("killed"))
    eng = engine(tmp_path, p, it, cluster, journal=journal)
    eng.subscribe(on_event)
    if kill_at is None:
        (vm,) = eng.run().vms
        return vm, cluster
    with pytest.raises(StateDirError):
        eng.run()
    journal.close()
    killed = [e["type"] for e in read_entries(tmp_path / name / "journal.jsonl")]
    # Where the kill landed: undo begun and, past the first point, stopped at the hand-off.
    assert "undo_started" in killed and "vm_terminal" not in killed, killed
    assert ("undo_stopped" in killed) == (kill_at[0] != "undo"), killed
    (vm,) = engine(tmp_path, p, it, cluster).run().vms  # the same command again: resume
    return vm, cluster


def test_a_cancel_whose_undo_meets_the_hand_off_finishes_the_migration(tmp_path: Path) -> None:
    """The cancel came too late: undo stops at the hand-off and the migration is finished, as
    for a cancel after the hand-off; the VM ends Completed and says so."""
    vm, cluster = _cancel_meets_hand_off(tmp_path, "pf")
    assert vm.phase == "Completed", vm.message
    assert vm.message == ("canceled too late: the hand-off happened while undo ran (before undo of "
                          "RunJob; already undone: Check): the migration was finished")
    # Nothing before the hand-off was removed, and the states after it ran.
    for name in ("vm-1-job", "vm-1-cfg", "vm-1-result"):
        assert any(k[2] == name for k in objects(cluster)), name
    entries = list(read_entries(tmp_path / "pf" / "journal.jsonl"))
    stopped = [e for e in entries if e["type"] == "undo_stopped"]
    assert [e["state"] for e in stopped] == ["RunJob"]
    assert not [e for e in entries if e["type"] == "deleted"]
    assert Journal(tmp_path / "pf").read().vms["shop/vm-1"].finishing == stopped[0]["message"]


@pytest.mark.parametrize("kill_at", [
    ("undo", "Check", 1),              # undo started, the hand-off not yet seen
    ("state_waiting", "Check", 2),     # undo_stopped journaled, the forward finish announced
    ("state_entered", "UseOutput", 1),  # finishing forward
], ids=["undoing", "stopped", "finishing"])
def test_a_cancel_whose_undo_meets_the_hand_off_resumes_forward_after_a_kill(
        tmp_path: Path, kill_at: tuple[str, str, int]) -> None:
    """Killed at any point of that path, the same command again finishes the migration; it
    never undoes after ``undo_stopped``, and creates nothing twice."""
    vm, cluster = _cancel_meets_hand_off(tmp_path, "pr", kill_at=kill_at)
    assert vm.phase == "Completed", vm.message
    assert vm.message.startswith("canceled too late: the hand-off happened while undo ran "
                                 "(before undo of RunJob; already undone: Check)"), vm.message
    entries = list(read_entries(tmp_path / "pr" / "journal.jsonl"))
    assert [e["state"] for e in entries if e["type"] == "undo_stopped"] == ["RunJob"]
    assert not [e for e in entries if e["type"] == "deleted"]
    creates = [c for c in cluster.calls if c[0] == "create" and c[1] in ("Job",)]
    assert len(creates) == 1
    for name in ("vm-1-job", "vm-1-cfg", "vm-1-result"):
        assert any(k[2] == name for k in objects(cluster)), name


def test_a_cancel_from_another_process_is_noticed_within_a_second(tmp_path: Path) -> None:
    """`smrun cancel` writes the cancel file; the run checks it every quarter second (one stat per
    run), independent of the much longer resync period."""
    cluster = FakeCluster("c")
    hold = NEVER.replace("timeout: 1", "timeout: 30")
    it = flow(tmp_path, MAKE_CONFIG, f"\n  - name: Hold\n    {hold}\n")
    asked: list[float] = []

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "state_waiting" and not asked:
            asked.append(time.monotonic())
            request_cancel(tmp_path / "pc", None)
    eng = engine(tmp_path, plan("pc", ["vm-1"]), it, cluster, resync=30.0)
    eng.subscribe(on_event)
    (vm,) = eng.run().vms
    assert vm.phase == "Canceled"
    assert time.monotonic() - asked[0] < 1.0
    assert ("ConfigMap", "shop", "vm-1-cfg") not in cluster.objects  # undo ran


def test_an_unexpected_error_in_a_state_still_undoes_what_was_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (any exception that is not an SmrunError) in a later state must not orphan the
    objects earlier states created: the VM fails *through undo*, naming the internal error."""
    from statemachine.engine.lang import Language

    real = Language.evaluate

    def buggy(self: Language, expr: str, ctx: Any) -> Any:
        if expr == "'boom'":
            raise ZeroDivisionError("a bug")  # stands for any bug below the engine
        return real(self, expr, ctx)

    monkeypatch.setattr(Language, "evaluate", buggy)
    cluster = FakeCluster("c", job_seconds=0.01)
    broken = "\n  - name: Broken\n    outputs: {x: \"'boom'\"}\n    undo: [{delete: created}]\n"
    it = flow(tmp_path, MAKE_CONFIG, run_job(), broken)
    (vm,) = engine(tmp_path, plan("px", ["vm-1"]), it, cluster).run().vms
    assert vm.phase == "Failed" and "ZeroDivisionError" in vm.message
    assert not objects(cluster), objects(cluster)  # the ConfigMap and the Job were undone
    types = [e["type"] for e in read_entries(tmp_path / "px" / "journal.jsonl")]
    assert "undo_started" in types


class _PhantomConflictCluster(FakeCluster):
    """Every create of a ConfigMap answers 409, yet the object is never readable."""

    def create(self, manifest: Any, *, dry_run: bool = False) -> dict[str, Any]:
        if manifest.get("kind") == "ConfigMap":
            raise Conflict("already exists", status=409)
        return super().create(manifest, dry_run=dry_run)


def test_a_conflict_on_an_object_that_never_shows_up_is_bounded_by_the_state_timeout(
        tmp_path: Path) -> None:
    cluster = _PhantomConflictCluster("c", job_seconds=0.01)
    it = flow(tmp_path, MAKE_CONFIG.replace("step: Prepare", "timeout: 1"))
    box: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: box.setdefault(
        "result", engine(tmp_path, plan("pc", ["vm-1"]), it, cluster).run()), daemon=True)
    runner.start()
    runner.join(10)
    assert not runner.is_alive(), "the engine looped forever on 409 + not found"
    (vm,) = box["result"].vms
    assert vm.phase == "Failed" and "MakeConfig" in vm.message


def test_a_retry_waits_at_least_the_servers_retry_after() -> None:
    from statemachine.engine.actions import retrying

    class Rt:
        backoff_base, backoff_max = 0.2, 10.0
        clock = staticmethod(lambda: 100.0)

        def emit(self, *_: Any, **__: Any) -> None:
            pass

    class Vm:
        key, state_name = "ns/vm", "S"
        logger = logging.getLogger("test")

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise TransientClusterError("slow down", status=429, retry_after=5.0)
        return "ok"

    for _ in range(20):  # the jitter is random: it must never shorten the server's wait
        gen = retrying(Rt(), Vm(), "get x", flaky, deadline=1000.0)  # type: ignore[arg-type]
        calls.clear()
        wait = next(gen)
        assert wait.until is not None and wait.until - 100.0 >= 5.0


def test_a_cancel_requested_before_the_engine_starts_is_honoured(tmp_path: Path) -> None:
    """`smrun run` removes a stale cancel file, then runs preflight: a `smrun cancel` answered
    "cancel requested" during preflight must cancel the run, not become the baseline."""
    cluster = FakeCluster("c", job_seconds=0.3)
    request_cancel(tmp_path / "pz", None)
    result = engine(tmp_path, plan("pz", ["vm-1", "vm-2"]), flow(tmp_path), cluster,
                    max_in_flight=1, cancel_file_is_fresh=True).run()
    assert [v.phase for v in result.vms] == ["Canceled", "Canceled"]
    assert not objects(cluster)


def test_a_resumed_vm_whose_secret_read_fails_is_undone_not_left_behind(tmp_path: Path) -> None:
    """On resume Secrets are read again (never journaled). If that read fails, the VM already
    created objects in the earlier run: it must fail *through undo*, not straight to Failed."""
    cluster = FakeCluster("c", job_seconds=0.3)
    secret_ref = ObjectRef("v1", "Secret", "shop", "creds")
    cluster.create({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "creds", "namespace": "shop"}, "data": {"k": "dg=="}})
    it = flow(tmp_path, head="""
reads:
  - {name: creds, cluster: source, object: {apiVersion: v1, kind: Secret, name: creds, namespace: shop}}
""")
    p = plan("prs", ["vm-1"])
    first = engine(tmp_path, p, it, cluster)
    first.subscribe(lambda e: e["event"] == "state_waiting" and first.scheduler.stop())
    first.run()
    assert ("ConfigMap", "shop", "vm-1-cfg") in cluster.objects  # created before the "kill"
    cluster.delete(secret_ref)
    (vm,) = engine(tmp_path, p, it, cluster).run().vms
    assert vm.phase == "Failed" and "creds" in vm.message
    assert not objects(cluster), objects(cluster)


COUNT_A = """
  - name: A
    actions: [{apply: cm.yaml}]
    outputs: {count: "(outputs.count or 0) + 1"}
"""


def test_an_object_this_run_created_and_the_cluster_removed_is_not_created_again(
        tmp_path: Path) -> None:
    """Resume or loop back into a state whose object the cluster has since removed (KubeVirt
    deletes a finished source migration): creating it again would redo the work."""
    cluster = FakeCluster("c")
    ref = ObjectRef("v1", "ConfigMap", "shop", "vm-1-cfg")
    it = flow(tmp_path, COUNT_A, "\n  - name: B\n    next: [{to: A, when: 'outputs.count < 2'}]\n")
    eng = engine(tmp_path, plan("pr", ["vm-1"]), it, cluster)
    gone: list[bool] = []

    def remove_once(e: dict[str, Any]) -> None:
        if e["event"] == "state_entered" and e["state"] == "B" and not gone:
            gone.append(cluster.delete(ref))  # someone else (the cluster) removes it
    eng.subscribe(remove_once)
    (vm,) = eng.run().vms
    assert vm.phase == "Completed" and gone == [True]
    assert cluster.created_total[("ConfigMap", "shop", "vm-1-cfg")] == 1
    assert ("ConfigMap", "shop", "vm-1-cfg") not in cluster.objects


def test_an_object_the_itinerary_deleted_by_name_is_created_afresh_when_looping(
        tmp_path: Path) -> None:
    cluster = FakeCluster("c")
    it = flow(tmp_path, COUNT_A, """
  - name: B
    actions:
      - delete: {apiVersion: v1, kind: ConfigMap, name: "{{ vm.name }}-cfg", namespace: shop}
        when: "outputs.count < 2"
    next: [{to: A, when: "outputs.count < 2"}]
""")
    (vm,) = engine(tmp_path, plan("pd", ["vm-1"]), it, cluster).run().vms
    assert vm.phase == "Completed"
    assert cluster.created_total[("ConfigMap", "shop", "vm-1-cfg")] == 2
    assert ("ConfigMap", "shop", "vm-1-cfg") in cluster.objects


def test_ensure_sends_no_create_for_an_object_that_already_exists(tmp_path: Path) -> None:
    """A shared ConfigMap made by someone else: accepted as is, without a create request (no
    409 per VM), and never deleted by undo."""
    cluster = FakeCluster("c")
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "vm-1-cfg", "namespace": "shop"}, "data": {"shared": "x"}})
    attempts: list[str] = []
    real_create = cluster.create

    def counting_create(manifest: dict[str, Any], **kw: Any) -> dict[str, Any]:
        attempts.append(manifest["metadata"]["name"])
        return real_create(manifest, **kw)
    cluster.create = counting_create  # type: ignore[method-assign]
    it = flow(tmp_path, "\n  - name: Shared\n    actions: [{ensure: cm.yaml}]\n    undo: [{delete: created}]\n",
              "\n  - name: Fail\n    readiness: {ready: 'false', timeout: 1, object: {apiVersion: v1, "
              "kind: ConfigMap, name: '{{ vm.name }}-cfg', namespace: shop}}\n")
    (vm,) = engine(tmp_path, plan("pe", ["vm-1"]), it, cluster).run().vms
    assert vm.phase == "Failed"
    assert "vm-1-cfg" not in attempts
    assert cluster.objects[("ConfigMap", "shop", "vm-1-cfg")]["data"] == {"shared": "x"}  # kept


def test_cancel_during_the_setup_stops_it_undoes_it_and_cancels_every_vm(tmp_path: Path) -> None:
    cluster = FakeCluster("c", job_seconds=0.01)
    # The setup makes the shared ConfigMap, then waits for an object that never comes.
    it = flow(tmp_path, head="""
setup:
  states:
    - name: Share
      actions: [{apply: shared.yaml}]
      undo: [{delete: created}]
    - name: WaitForever
      timeout: 10m
      readiness: {object: {apiVersion: v1, kind: ConfigMap, name: never, namespace: shop}}
""")
    events: list[dict[str, Any]] = []
    eng = engine(tmp_path, plan("psc", ["vm-1", "vm-2"]), it, cluster, events=events)
    eng.subscribe(lambda e: e["event"] == "state_waiting" and e.get("vm") == "" and eng.cancel())
    started = time.monotonic()
    result = eng.run()
    assert time.monotonic() - started < 5  # not the setup state's 10-minute timeout
    assert [v.phase for v in result.vms] == ["Canceled", "Canceled"]
    assert ("ConfigMap", "shop", "shared") not in cluster.objects  # the setup was undone
    assert not any(e["event"] == "vm_started" for e in events)
