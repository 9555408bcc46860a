"""Contracts of the preflight read memo (``preflight.ClusterReads``) and of the engine reusing it.

Covers issue 8's read savings, each as a behaviour that must not silently go away:

- one fetch per distinct object per pass, also when 8 threads ask at once; callers get copies;
- the third distinct read of one kind in one namespace lists that kind there once (Secrets
  never), a refused list falls back to GETs; ``recent()`` ages answers with an injected clock;
- ``Engine(prefetched=...)`` starts a VM from recent preflight reads without reading them again,
  reads afresh when they are too old, and fails the VM when a required prefetched read is absent.

No simulator: small in-process clusters that count their requests.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from statemachine.engine.core import PREFETCH_MAX_AGE
from statemachine.engine.journal import Journal, read_entries
# The module, not the engine package's preflight() function of the same name.
from statemachine.engine.preflight import LIST_AFTER, ClusterReads
from statemachine.errors import Forbidden, TransientClusterError
from statemachine.k8s import ObjectRef

from statemachine.itinerary import Itinerary
from statemachine.plan import Plan

from .fakes import FakeCluster
from .flows import engine, itinerary, plan


def cm(name: str, namespace: str = "shop", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
            "data": dict(data) or {"k": name}}


class CountingCluster:
    """Just enough of ``Cluster`` for ``ClusterReads``: ``get`` (slow, counted) and ``list``."""

    def __init__(self, objects: list[dict[str, Any]], *, get_delay: float = 0.0,
                 list_error: Exception | None = None) -> None:
        self.name = "source"
        self.objects = {ObjectRef.of(o): o for o in objects}
        self.get_delay = get_delay
        self.list_error = list_error
        self.gets: Counter[ObjectRef] = Counter()
        self.lists: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        with self._lock:
            self.gets[ref] += 1
        if self.get_delay:
            time.sleep(self.get_delay)  # long enough for the other threads to ask meanwhile
        obj = self.objects.get(ref)
        return None if obj is None else {**obj, "metadata": dict(obj["metadata"])}

    def list(self, api_version: str, kind: str, *, namespace: str = "",
             label_selector: str = "") -> list[dict[str, Any]]:
        with self._lock:
            self.lists[(kind, namespace)] += 1
        if self.list_error is not None:
            raise self.list_error
        return [o for r, o in self.objects.items()
                if r.kind == kind and (not namespace or r.namespace == namespace)]


def clusters(cluster: CountingCluster) -> dict[str, Any]:
    """``{"source": cluster}`` typed loosely: the fake implements only what ``ClusterReads`` uses."""
    return {"source": cluster}


def in_threads(n: int, fn: Any) -> list[Any]:
    """Run ``fn(i)`` on ``n`` threads released together; results in index order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - re-raised on the test thread below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors, errors
    return results


# -- ClusterReads ------------------------------------------------------------------------------------
def test_one_fetch_per_object_when_eight_threads_ask_at_once() -> None:
    kv: dict[str, Any] = {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
          "metadata": {"name": "kubevirt"}, "spec": {"x": 1}}
    it: dict[str, Any] = {"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineClusterInstancetype",
          "metadata": {"name": "u1.small"}, "spec": {"cpu": {"guest": 1}}}
    cluster = CountingCluster([kv, it], get_delay=0.05)
    reads = ClusterReads(clusters(cluster))

    def ask(i: int) -> dict[str, Any] | None:
        obj = kv if i % 2 else it  # two distinct cluster-scoped objects, four askers each
        return reads.get("source", obj["apiVersion"], obj["kind"], "", obj["metadata"]["name"])

    got = in_threads(8, ask)
    assert cluster.gets == Counter({ObjectRef.of(kv): 1, ObjectRef.of(it): 1})
    assert [g["kind"] for g in got] == ["VirtualMachineClusterInstancetype", "KubeVirt"] * 4
    assert all(g == (kv if i % 2 else it) for i, g in enumerate(got))
    # later askers in the same pass are answered from the memo too
    assert reads.get("source", "kubevirt.io/v1", "KubeVirt", "", "kubevirt") == kv
    assert sum(cluster.gets.values()) == 2 and not cluster.lists


def test_callers_get_copies_not_the_memo() -> None:
    cluster = CountingCluster([cm("a")])
    reads = ClusterReads(clusters(cluster))
    first = reads.get("source", "v1", "ConfigMap", "shop", "a")
    assert first is not None
    first["metadata"]["labels"]["app"] = "changed"
    first["data"]["k"] = "changed"
    first["extra"] = [1]
    second = reads.get("source", "v1", "ConfigMap", "shop", "a")
    assert second == cm("a")
    assert second is not first and second["metadata"] is not first["metadata"]
    assert sum(cluster.gets.values()) == 1


def test_the_third_read_of_a_kind_in_a_namespace_lists_it_once() -> None:
    objs = [cm(n) for n in "abcdef"] + [cm("a", "other"), cm("b", "other")]
    cluster = CountingCluster(objs)
    reads = ClusterReads(clusters(cluster))
    assert LIST_AFTER == 3

    for _ in range(3):  # memo hits are not new reads: no list yet
        assert reads.get("source", "v1", "ConfigMap", "shop", "a") == cm("a")
    assert reads.get("source", "v1", "ConfigMap", "shop", "b") == cm("b")
    assert (sum(cluster.gets.values()), sum(cluster.lists.values())) == (2, 0)

    assert reads.get("source", "v1", "ConfigMap", "shop", "c") == cm("c")   # third distinct: list
    assert cluster.lists == Counter({("ConfigMap", "shop"): 1})
    assert sum(cluster.gets.values()) == 2

    assert reads.get("source", "v1", "ConfigMap", "shop", "d") == cm("d")   # from the list
    assert reads.get("source", "v1", "ConfigMap", "shop", "f") == cm("f")
    assert reads.get("source", "v1", "ConfigMap", "shop", "missing") is None
    assert cluster.lists == Counter({("ConfigMap", "shop"): 1})
    assert sum(cluster.gets.values()) == 2

    # another namespace keeps its own count
    assert reads.get("source", "v1", "ConfigMap", "other", "a") == cm("a", "other")
    assert reads.get("source", "v1", "ConfigMap", "other", "b") == cm("b", "other")
    assert cluster.lists == Counter({("ConfigMap", "shop"): 1})
    assert sum(cluster.gets.values()) == 4


def test_many_threads_reading_one_kind_share_one_list() -> None:
    cluster = CountingCluster([cm(f"vm-{i}") for i in range(8)], get_delay=0.05)
    reads = ClusterReads(clusters(cluster))
    got = in_threads(8, lambda i: reads.get("source", "v1", "ConfigMap", "shop", f"vm-{i}"))
    assert got == [cm(f"vm-{i}") for i in range(8)]
    assert cluster.lists == Counter({("ConfigMap", "shop"): 1})
    assert sum(cluster.gets.values()) == LIST_AFTER - 1


def test_secrets_are_never_listed() -> None:
    secrets = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s{i}", "namespace": "shop"},
                "data": {"password": "c2VjcmV0"}} for i in range(6)]
    cluster = CountingCluster(secrets)
    reads = ClusterReads(clusters(cluster))
    for i in range(6):
        assert reads.get("source", "v1", "Secret", "shop", f"s{i}") == secrets[i]
    assert reads.get("source", "v1", "Secret", "shop", "absent") is None
    assert not cluster.lists
    assert sum(cluster.gets.values()) == 7


def test_a_forbidden_list_falls_back_to_gets() -> None:
    cluster = CountingCluster([cm(n) for n in "abcd"],
                              list_error=Forbidden("configmaps is forbidden", status=403))
    reads = ClusterReads(clusters(cluster))
    got = {n: reads.get("source", "v1", "ConfigMap", "shop", n) for n in "abcde"}
    assert got == {"a": cm("a"), "b": cm("b"), "c": cm("c"), "d": cm("d"), "e": None}
    assert cluster.lists == Counter({("ConfigMap", "shop"): 1})  # refused once, not per object
    assert sum(cluster.gets.values()) == 5


def test_recent_ages_what_the_pass_read() -> None:
    now = [100.0]
    cluster = CountingCluster([cm("a")])
    reads = ClusterReads(clusters(cluster), clock=lambda: now[0])
    ref_a = ObjectRef("v1", "ConfigMap", "shop", "a")
    ref_gone = ObjectRef("v1", "ConfigMap", "shop", "gone")
    assert reads.recent("source", ref_a, 30) == (False, None)  # never read
    reads.get("source", "v1", "ConfigMap", "shop", "a")
    reads.get("source", "v1", "ConfigMap", "shop", "gone")

    now[0] = 110.0
    known, obj = reads.recent("source", ref_a, 30)
    assert known and obj == cm("a")
    obj["data"]["k"] = "changed"  # a copy: the memo is untouched
    assert reads.recent("source", ref_a, 30) == (True, cm("a"))
    assert reads.recent("source", ref_gone, 30) == (True, None)
    assert reads.recent("target", ref_a, 30) == (False, None)  # other cluster: never read there
    assert reads.recent("source", ObjectRef("v1", "ConfigMap", "shop", "b"), 30) == (False, None)

    now[0] = 131.0  # 31 s after the reads
    assert reads.recent("source", ref_a, 30) == (False, None)
    assert reads.recent("source", ref_gone, 30) == (False, None)
    assert sum(cluster.gets.values()) == 2


def test_a_failed_read_is_not_remembered() -> None:
    cluster = CountingCluster([cm("a")])
    real_get = cluster.get
    failures = [TransientClusterError("injected 503", status=503)]

    def flaky(ref: ObjectRef) -> dict[str, Any] | None:
        if failures:
            cluster.gets[ref] += 1
            raise failures.pop()
        return real_get(ref)

    cluster.get = flaky  # type: ignore[method-assign]
    reads = ClusterReads(clusters(cluster))
    ref = ObjectRef("v1", "ConfigMap", "shop", "a")
    with pytest.raises(TransientClusterError):
        reads.get("source", "v1", "ConfigMap", "shop", "a")
    assert reads.recent("source", ref, 30) == (False, None)
    assert reads.get("source", "v1", "ConfigMap", "shop", "a") == cm("a")
    assert cluster.gets[ref] == 2


# -- Engine(prefetched=...) ------------------------------------------------------------------------
TEMPLATES = {"out.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-out", namespace: "{{ vm.namespace }}"}
data: {seen: "{{ reads.cfg.data.k if reads.cfg else '' }}"}
"""}


class GetCountingCluster(FakeCluster):
    """``FakeCluster`` that counts GETs per ref."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gets: Counter[ObjectRef] = Counter()

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        self.gets[ref] += 1
        return super().get(ref)


def read_flow(tmp_path: Path, *, optional: bool = False) -> Itinerary:
    return itinerary(tmp_path / f"prefetch-{optional}", f"""
reads:
  - name: cfg
    cluster: source
    optional: {str(optional).lower()}
    object: {{apiVersion: v1, kind: ConfigMap, name: "{{{{ vm.name }}}}-src", namespace: "{{{{ vm.namespace }}}}"}}
states:
  - name: Write
    actions: [{{apply: out.yaml}}]
  - name: Completed
""", TEMPLATES, name="prefetch")


def run_engine(tmp_path: Path, p: Plan, src: FakeCluster, dst: FakeCluster, flow: Itinerary,
               prefetched: Any) -> Any:
    return engine(tmp_path, p, flow, src, dst, journal=Journal(tmp_path / p.name, fsync=False),
                  prefetched=prefetched).run()


def started_reads(tmp_path: Path, plan: str) -> dict[str, Any]:
    return {e["vm"]: e["reads"] for e in read_entries(tmp_path / plan / "journal.jsonl")
            if e["type"] == "vm_started"}


def prefetch(src: FakeCluster, dst: FakeCluster, names: list[str], now: list[float]) -> ClusterReads:
    reads = ClusterReads({"source": src, "target": dst}, clock=lambda: now[0])
    for n in names:
        reads.get("source", "v1", "ConfigMap", "shop", f"{n}-src")
    return reads


def test_a_vm_starting_soon_after_preflight_does_not_read_again(tmp_path: Path) -> None:
    src, dst = GetCountingCluster("source"), FakeCluster("target")
    for n in ("vm-1", "vm-2"):
        src.create(cm(f"{n}-src", k="approved"))
    now = [0.0]
    reads = prefetch(src, dst, ["vm-1", "vm-2"], now)
    src.gets.clear()
    src.objects[("ConfigMap", "shop", "vm-1-src")]["data"]["k"] = "changed later"
    now[0] = PREFETCH_MAX_AGE - 1

    result = run_engine(tmp_path, plan("fresh", ["vm-1", "vm-2"]), src, dst, read_flow(tmp_path), reads)
    assert [v.phase for v in result.vms] == ["Completed", "Completed"]
    assert src.gets[ObjectRef("v1", "ConfigMap", "shop", "vm-1-src")] == 0
    assert src.gets[ObjectRef("v1", "ConfigMap", "shop", "vm-2-src")] == 0
    # the very object preflight approved, not the cluster's newer one
    assert started_reads(tmp_path, "fresh")["shop/vm-1"]["cfg"]["data"] == {"k": "approved"}
    assert dst.objects[("ConfigMap", "shop", "vm-1-out")]["data"] == {"seen": "approved"}


def test_a_prefetch_older_than_the_max_age_is_read_again(tmp_path: Path) -> None:
    src, dst = GetCountingCluster("source"), FakeCluster("target")
    src.create(cm("vm-1-src", k="approved"))
    now = [0.0]
    reads = prefetch(src, dst, ["vm-1"], now)
    src.gets.clear()
    src.objects[("ConfigMap", "shop", "vm-1-src")]["data"]["k"] = "current"
    now[0] = PREFETCH_MAX_AGE + 1

    (vm,) = run_engine(tmp_path, plan("stale", ["vm-1"]), src, dst, read_flow(tmp_path), reads).vms
    assert vm.phase == "Completed"
    assert src.gets[ObjectRef("v1", "ConfigMap", "shop", "vm-1-src")] == 1
    assert started_reads(tmp_path, "stale")["shop/vm-1"]["cfg"]["data"] == {"k": "current"}


def test_a_prefetch_that_does_not_know_the_ref_is_read_from_the_cluster(tmp_path: Path) -> None:
    class Unknown:
        def __init__(self) -> None:
            self.asked: list[tuple[str, ObjectRef, float]] = []

        def recent(self, cluster: str, ref: ObjectRef, max_age: float) -> tuple[bool, Any]:
            self.asked.append((cluster, ref, max_age))
            return False, None

    src, dst = GetCountingCluster("source"), FakeCluster("target")
    src.create(cm("vm-1-src", k="live"))
    stub = Unknown()
    (vm,) = run_engine(tmp_path, plan("unknown", ["vm-1"]), src, dst, read_flow(tmp_path), stub).vms
    ref = ObjectRef("v1", "ConfigMap", "shop", "vm-1-src")
    assert vm.phase == "Completed"
    assert stub.asked == [("source", ref, PREFETCH_MAX_AGE)]
    assert src.gets[ref] == 1


def test_a_required_read_prefetched_as_absent_fails_the_vm(tmp_path: Path) -> None:
    src, dst = GetCountingCluster("source"), FakeCluster("target")
    now = [0.0]
    reads = prefetch(src, dst, ["vm-1"], now)  # absent at preflight
    src.create(cm("vm-1-src"))  # appears afterwards: the engine goes by what preflight saw
    src.gets.clear()

    (vm,) = run_engine(tmp_path, plan("absent", ["vm-1"]), src, dst, read_flow(tmp_path), reads).vms
    assert vm.phase == "Failed"
    assert vm.message.startswith("read cfg: ConfigMap shop/vm-1-src not found")
    assert src.gets[ObjectRef("v1", "ConfigMap", "shop", "vm-1-src")] == 0
    assert ("ConfigMap", "shop", "vm-1-out") not in dst.objects


def test_an_optional_read_prefetched_as_absent_is_none(tmp_path: Path) -> None:
    src, dst = GetCountingCluster("source"), FakeCluster("target")
    now = [0.0]
    reads = prefetch(src, dst, ["vm-1"], now)
    src.gets.clear()
    (vm,) = run_engine(tmp_path, plan("optional", ["vm-1"]), src, dst,
                       read_flow(tmp_path, optional=True), reads).vms
    assert vm.phase == "Completed"
    assert started_reads(tmp_path, "optional")["shop/vm-1"] == {"cfg": None}
    assert sum(src.gets.values()) == 0


def test_a_namespace_where_enough_vms_live_is_listed_at_the_first_read() -> None:
    from .flows import vm

    objs = [cm(n) for n in "abc"] + [cm("a", "other"), cm("b", "other")]
    cluster = CountingCluster(objs)
    reads = ClusterReads(clusters(cluster))
    # Three VMs live in shop (LIST_AFTER), two in other: shop's kinds are listed at once.
    reads.expect([vm("a"), vm("b"), vm("c"), vm("d", "other"), vm("e", "other")])
    assert reads.get("source", "v1", "ConfigMap", "shop", "a") == cm("a")
    assert cluster.lists == Counter({("ConfigMap", "shop"): 1})
    assert sum(cluster.gets.values()) == 0
    assert reads.get("source", "v1", "ConfigMap", "shop", "b") == cm("b")
    assert reads.get("source", "v1", "ConfigMap", "other", "a") == cm("a", "other")
    assert cluster.lists == Counter({("ConfigMap", "shop"): 1})  # other: GETs, as before
    assert sum(cluster.gets.values()) == 1
