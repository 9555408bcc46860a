"""``ensure`` coalescing (issue 8): VMs of one run that ensure the same object at the same moment
send one create for it, not one each (``actions._create_one``, ``Runtime.ensuring``).

- Five VMs ensuring one shared ConfigMap: the cluster sees exactly one create (no 409), every VM
  goes on, only the creating VM journals the object as its own (``ours``), and a failing VM's undo
  leaves the shared object in place.
- When the creating VM's create fails with a non-conflict error, the waiting VMs are woken at once
  and one of them creates it (no hang, no wait for the one-second re-check).
- A 409 for an object made outside the run (invisible to ``get``, the cache, but returned by
  ``fetch``): ``ensure`` reads it with ``fetch`` and accepts it as not ours; ``apply`` refuses it.

No simulator: a ``FakeCluster`` whose create is slow (it runs on the engine's I/O pool, so the
VMs' requests really overlap) and counts creates per object name.
"""
from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from statemachine.engine.core import RunResult
from statemachine.engine.journal import Journal, read_entries
from statemachine.itinerary import Itinerary
from statemachine.errors import Conflict, Forbidden
from statemachine.k8s import ObjectRef

from statemachine.plan import Plan

from .fakes import JOB_TEMPLATE, FakeCluster
from .flows import engine, itinerary, plan

SHARED = "shared-cfg"
SHARED_KEY = ("ConfigMap", "shop", SHARED)
TEMPLATES = {
    "shared.yaml": f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: {SHARED}, namespace: shop}}
data: {{mode: shared}}
""",
    "job.yaml": JOB_TEMPLATE,
}


class SlowCluster(FakeCluster):
    """Creates take ``delay`` seconds and are counted per name; a create can be made to fail once
    (``fail_next``); ``outside`` holds objects someone else made: a create of their name gets a
    409 and ``fetch`` returns them, but ``get`` (the watch cache) has not seen them."""

    def __init__(self, *, delay: float = 0.05) -> None:
        super().__init__("c", job_seconds=0.02)
        self.delay = delay
        self.creates: Counter[str] = Counter()
        self.create_starts: dict[str, list[float]] = {}
        self.failed_at: dict[str, float] = {}
        self.fail_next: dict[str, Exception] = {}
        self.outside: dict[tuple[str, str, str], dict[str, Any]] = {}

    def create(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        meta = manifest.get("metadata") or {}
        name = str(meta.get("name"))
        key = (str(manifest.get("kind")), str(meta.get("namespace") or ""), name)
        with self.lock:
            self.creates[name] += 1
            self.create_starts.setdefault(name, []).append(time.monotonic())
        time.sleep(self.delay)  # a round trip: long enough for every VM to reach its ensure
        with self.lock:
            error = self.fail_next.pop(name, None)
            if error is not None:
                self.failed_at[name] = time.monotonic()
                raise error
            if key in self.outside:
                raise Conflict(f"{name} already exists", status=409)
        return super().create(manifest, dry_run=dry_run)

    def fetch(self, ref: ObjectRef) -> dict[str, Any] | None:
        with self.lock:
            obj = self.outside.get((ref.kind, ref.namespace, ref.name))
        return copy.deepcopy(obj) if obj is not None else self.get(ref)


def flow(tmp_path: Path, kind: str = "ensure", *, work: bool = True) -> Itinerary:
    # A state timeout of a few seconds: a regression fails the VM quickly instead of hanging.
    work_state = """
  - name: Work
    actions: [{apply: job.yaml}]
    readiness: {ready: condition=Complete, failed: condition=Failed}
    undo: [{delete: created}]
    timeout: 4s
""" if work else ""
    return itinerary(tmp_path / f"coalesce-{kind}-{work}", f"""
states:
  - name: Shared
    actions: [{{{kind}: shared.yaml}}]
    undo: [{{delete: created}}]
    timeout: 4s
{work_state.strip(chr(10))}
  - name: Completed
""", TEMPLATES, name="coalesce")


def run(tmp_path: Path, p: Plan, fl: Itinerary, cluster: SlowCluster) -> tuple[RunResult, Journal]:
    journal = Journal(tmp_path / p.name)
    eng = engine(tmp_path, p, fl, cluster, journal=journal, resync=5.0, max_in_flight=10)
    return eng.run(), journal


def phases(result: RunResult) -> dict[str, str]:
    return {v.vm: v.phase for v in result.vms}


def shared_created(journal: Journal) -> dict[str, bool]:
    """VM -> the ``ours`` flag of its ``created`` entry for the shared ConfigMap."""
    return {e["vm"]: e["ours"] for e in read_entries(journal.path)
            if e["type"] == "created" and e["ref"]["name"] == SHARED}


def test_five_vms_ensuring_one_object_send_one_create(tmp_path: Path) -> None:
    cluster = SlowCluster()
    p = plan("five", [*(f"vm-{i}" for i in range(4)), "bad-4"])
    result, journal = run(tmp_path, p, flow(tmp_path), cluster)

    assert cluster.creates[SHARED] == 1  # not five, four of them 409s
    assert phases(result) == {**{f"shop/vm-{i}": "Completed" for i in range(4)}, "shop/bad-4": "Failed"}
    # The first VM to reach the ensure made it; the four that waited for it accepted it as not
    # theirs, so none of them counts it among the objects its undo deletes.
    assert shared_created(journal) == {"shop/vm-0": True, "shop/vm-1": False, "shop/vm-2": False,
                                       "shop/vm-3": False, "shop/bad-4": False}
    # bad-4's Job failed and its undo ran (its Job is gone) without deleting the shared object.
    assert ("Job", "shop", "bad-4-job") not in cluster.objects
    assert cluster.objects[SHARED_KEY]["metadata"]["labels"]["smrun.io/vm"] == "vm-0"
    assert "shop/bad-4" in {e["vm"] for e in read_entries(journal.path) if e["type"] == "undo_state_done"}


def test_waiters_create_it_themselves_when_the_creator_fails(tmp_path: Path) -> None:
    cluster = SlowCluster()
    cluster.fail_next[SHARED] = Forbidden("configmaps is forbidden", status=403)
    p = plan("fails", [f"vm-{i}" for i in range(4)])
    started = time.monotonic()
    result, journal = run(tmp_path, p, flow(tmp_path, work=False), cluster)

    assert time.monotonic() - started < 3.0  # bounded: nobody waits for the state's deadline
    got = phases(result)
    assert got.pop("shop/vm-0") == "Failed"  # the creator: its error is not a conflict
    assert "forbidden" in result.vms[0].message
    assert got == {f"shop/vm-{i}": "Completed" for i in (1, 2, 3)}
    # One failed create, then exactly one more by a woken waiter (the others waited for that one).
    assert cluster.creates[SHARED] == 2
    first_fail, retry_start = cluster.failed_at[SHARED], cluster.create_starts[SHARED][1]
    # Woken by the failure, not by the one-second re-check of a waiting ensure.
    assert retry_start - first_fail < 0.5
    owners = {vm for vm, ours in shared_created(journal).items() if ours}
    assert len(owners) == 1 and owners <= {"shop/vm-1", "shop/vm-2", "shop/vm-3"}
    # vm-0's undo (only an intent was journaled) left the object another VM made in place.
    assert SHARED_KEY in cluster.objects


def outside_object() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": SHARED, "namespace": "shop", "labels": {"team": "ops"}},
            "data": {"mode": "theirs"}}


def test_ensure_after_a_409_reads_the_object_with_fetch_and_accepts_it(tmp_path: Path) -> None:
    cluster = SlowCluster(delay=0.0)
    cluster.outside[SHARED_KEY] = outside_object()
    result, journal = run(tmp_path, plan("outside-e", ["vm-1"]), flow(tmp_path, work=False), cluster)

    assert phases(result) == {"shop/vm-1": "Completed"}
    assert cluster.creates[SHARED] == 1
    assert shared_created(journal) == {"shop/vm-1": False}  # accepted, never counted as created
    assert cluster.outside[SHARED_KEY]["data"] == {"mode": "theirs"}  # used as is
    assert SHARED_KEY not in cluster.objects  # and nothing of ours replaced it


def test_apply_after_a_409_refuses_an_object_that_is_not_ours(tmp_path: Path) -> None:
    cluster = SlowCluster(delay=0.0)
    cluster.outside[SHARED_KEY] = outside_object()
    result, journal = run(tmp_path, plan("outside-a", ["vm-1"]), flow(tmp_path, "apply", work=False),
                          cluster)

    (vm,) = result.vms
    assert vm.phase == "Failed"
    assert "ConfigMap" in vm.message and SHARED in vm.message
    assert "was not created by this plan for this VM; not overwriting it" in vm.message
    assert cluster.creates[SHARED] == 1
    assert shared_created(journal) == {}
    assert cluster.outside[SHARED_KEY]["data"] == {"mode": "theirs"}


class SlowDeleteCluster(SlowCluster):
    """Deletes arrive late: the failed creator's undo reaches the server after a waiter made the
    shared object."""

    def delete(self, ref: ObjectRef) -> bool:
        time.sleep(0.1)
        return super().delete(ref)


def test_undo_of_an_unconfirmed_create_never_deletes_another_vms_shared_object(tmp_path: Path) -> None:
    cluster = SlowDeleteCluster(delay=0.0)
    cluster.fail_next[SHARED] = Forbidden("configmaps is forbidden", status=403)
    result, journal = run(tmp_path, plan("late-undo", ["vm-0", "vm-1"]), flow(tmp_path, work=False),
                          cluster)

    assert phases(result) == {"shop/vm-0": "Failed", "shop/vm-1": "Completed"}
    assert shared_created(journal) == {"shop/vm-1": True}
    # vm-0 only announced the create: its undo asks the server, finds vm-1's object (or none)
    # and leaves it; it never deletes by name what another VM of the run made.
    assert SHARED_KEY in cluster.objects
    assert cluster.objects[SHARED_KEY]["metadata"]["labels"]["smrun.io/vm"] == "vm-1"
