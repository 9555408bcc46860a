"""A VM's start computed by preflight (``preflight.VmStarts``) and taken over by the engine.

Preflight, when a run follows (``run_checks(..., run_id=...)``), resolves each VM's reads and
computes its values and predicates in the run's own context; the engine starts a fresh VM from
them instead of computing them again on its loop thread. Contracts:

- a VM started right after preflight resolves no read and computes no value or predicate again
  (calls counted through monkeypatches), and its run is the same as one computed by the engine
  itself: the same journal entries, events and created objects;
- a resumed VM (its reads and predicates journaled) keeps today's path: it reads again and its
  journaled predicates stand, whatever preflight computed;
- the first VM's context built ahead while the setup waits is the one it then renders with;
- starts that are too old, or made for another run id, are not used; nor are starts preflight
  cannot compute as the engine would (a value over the clock, a read that asked for an output).

No simulator: in-process fake clusters, the real loader, preflight and engine.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import statemachine.engine.core as core
import statemachine.predicates as predicates
from statemachine.engine.core import PREFETCH_MAX_AGE, Engine, EngineSettings
from statemachine.engine.journal import Journal, read_entries
from statemachine.engine.preflight import ClusterReads, run_checks
from statemachine.itinerary import Itinerary, load_itinerary
from statemachine.k8s import ObjectRef
from statemachine.plan import Plan

from .fakes import FakeCluster
from .flows import itinerary, plan

RUN = "20261205120000-abc123"

TEMPLATES = {"out.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ values.outName }}", namespace: "{{ vm.namespace }}"}
data: {size: "{{ reads.cfg.data.size }}", big: "{{ predicates.Big }}"}
""", "big.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-big", namespace: "{{ vm.namespace }}"}
data: {n: "{{ values.parts | length }}"}
"""}


# A VM's start: values over a read and the run id, and a predicate over the read.
START = """values:
  outName: "vm.name ~ '-' ~ run.id"
  parts: "reads.cfg.data.parts.split(',')"
reads:
  - name: cfg
    cluster: source
    object: {apiVersion: v1, kind: ConfigMap, name: "{{ vm.name }}-src", namespace: "{{ vm.namespace }}"}
"""
BIG = """predicates:
  Big: "reads.cfg.data.size | int > 1"
"""


def flow(tmp_path: Path) -> Itinerary:
    # Values over the reads and the run id, a forEach read over a value, a predicate over
    # values: everything a VM's start computes.
    return itinerary(tmp_path / "starts", START + """  - name: partObjects
    cluster: source
    optional: true
    forEach: "values.parts"
    object: {apiVersion: v1, kind: ConfigMap, name: "{{ item }}", namespace: "{{ vm.namespace }}"}
""" + BIG + """states:
  - name: Write
    actions: [{apply: out.yaml}]
  - name: WriteBig
    when: {all: [Big]}
    actions: [{apply: big.yaml}]
  - name: Completed
""", TEMPLATES, name="starts")


def clusters(sizes: dict[str, int]) -> tuple[FakeCluster, FakeCluster]:
    src, dst = FakeCluster("source"), FakeCluster("target")
    for name, size in sizes.items():
        src.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": f"{name}-src", "namespace": "shop"},
                    "data": {"size": str(size), "parts": f"{name}-a,{name}-b"}})
        src.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": f"{name}-a", "namespace": "shop"}, "data": {}})
    src.calls.clear()
    return src, dst


class Computed:
    """Counts, per VM, what the engine computes at a VM's start (monkeypatched in ``core``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read_all: Counter[str] = Counter()
        self.values = 0
        self.predicates = 0
        read_all, compute_values = core.Engine._read_all, core.compute_values
        evaluate_all = predicates.evaluate_all

        def counted_read_all(engine: Engine, model: Any, *args: Any) -> Any:
            self.read_all[model.key] += 1
            return (yield from read_all(engine, model, *args))

        def counted_values(*args: Any) -> Any:
            self.values += 1
            return compute_values(*args)

        def counted_predicates(*args: Any) -> Any:
            self.predicates += 1
            return evaluate_all(*args)

        monkeypatch.setattr(core.Engine, "_read_all", counted_read_all)
        monkeypatch.setattr(core, "compute_values", counted_values)
        monkeypatch.setattr(predicates, "evaluate_all", counted_predicates)


def preflight(p: Plan, it: Itinerary, src: FakeCluster, dst: FakeCluster, *,
              run_id: str | None = RUN, now: list[float] | None = None) -> ClusterReads:
    cl: dict[str, Any] = {"source": src, "target": dst}
    reads = (ClusterReads(cl) if now is None else ClusterReads(cl, clock=lambda: now[0]))
    findings = run_checks(p, it, cl, reads=reads, run_id=run_id)
    assert not findings.blocking, findings.problems
    return reads


def run(tmp_path: Path, name: str, p: Plan, it: Itinerary, src: FakeCluster, dst: FakeCluster,
        prefetched: Any, *, run_id: str | None = RUN,
        events: list[dict[str, Any]] | None = None) -> Any:
    journal = Journal(tmp_path / name / p.name, fsync=False)
    return Engine(p, it, source=src, target=dst, journal=journal,
                  settings=EngineSettings(resync=0.2),
                  on_event=[events.append] if events is not None else [],
                  prefetched=prefetched, run_id=run_id).run()


def journal_of(tmp_path: Path, name: str, p: Plan) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "ts"}
            for e in read_entries(tmp_path / name / p.name / "journal.jsonl")]


def comparable(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Events without their times (``ts``, ``elapsed``, ``reaction``)."""
    return sorted(tuple(sorted((k, str(v)) for k, v in e.items()
                               if k not in ("ts", "elapsed", "reaction"))) for e in events)


def test_a_vm_started_right_after_preflight_computes_nothing_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p, it = plan("starts", ["vm-1", "vm-2"]), flow(tmp_path)

    # Reference: the engine computes every start itself (preflight without a run id).
    src, dst = clusters({"vm-1": 1, "vm-2": 2})
    reads = preflight(p, it, src, dst, run_id=None)
    assert reads.starts is None
    counted = Computed(monkeypatch)
    ref_events: list[dict[str, Any]] = []
    result = run(tmp_path, "computed", p, it, src, dst, reads, events=ref_events)
    assert [v.phase for v in result.vms] == ["Completed", "Completed"]
    assert counted.read_all == {"shop/vm-1": 1, "shop/vm-2": 1}
    assert (counted.values, counted.predicates) == (2, 2)
    ref_objects = dict(dst.objects)
    monkeypatch.undo()

    # Preflight in the run's context: the engine takes each VM's start over.
    src, dst = clusters({"vm-1": 1, "vm-2": 2})
    reads = preflight(p, it, src, dst)
    src.calls.clear()
    counted = Computed(monkeypatch)
    events: list[dict[str, Any]] = []
    result = run(tmp_path, "taken", p, it, src, dst, reads, events=events)
    assert [v.phase for v in result.vms] == ["Completed", "Completed"]
    assert not counted.read_all and (counted.values, counted.predicates) == (0, 0)
    assert ("get", "ConfigMap") not in src.calls

    # ... and the run is the same: journal, events and what it created.
    assert journal_of(tmp_path, "taken", p) == journal_of(tmp_path, "computed", p)
    assert comparable(events) == comparable(ref_events)
    assert dst.objects == ref_objects
    assert dst.objects[("ConfigMap", "shop", f"vm-2-{RUN}")]["data"] == {"size": "2", "big": "True"}
    assert ("ConfigMap", "shop", "vm-1-big") not in dst.objects  # Big is false for vm-1
    assert dst.objects[("ConfigMap", "shop", "vm-2-big")]["data"] == {"n": "2"}


def test_a_resumed_vm_reads_again_and_keeps_its_journaled_predicates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p, it = plan("resumed", ["vm-1", "vm-2"]), flow(tmp_path)
    src, dst = clusters({"vm-1": 1, "vm-2": 1})
    # An earlier run of RUN started vm-1 when it was big, and was killed.
    journal = Journal(tmp_path / "resume" / p.name, fsync=False)
    journal.append("run_started", run=RUN, vms=["shop/vm-1", "shop/vm-2"])
    src_cfg = src.get(ObjectRef("v1", "ConfigMap", "shop", "vm-1-src"))
    journal.append("vm_started", vm="shop/vm-1", predicates={"Big": True},
                   reads={"cfg": src_cfg, "partObjects": [None, None]})
    journal.close()
    # Preflight of every VM in the run's context (commands.run checks only fresh VMs; the
    # engine must not need that).
    reads = preflight(p, it, src, dst)
    assert reads.starts is not None
    src.calls.clear()
    counted = Computed(monkeypatch)
    result = run(tmp_path, "resume", p, it, src, dst, reads, run_id=None)
    assert [v.phase for v in result.vms] == ["Completed", "Completed"]
    assert counted.read_all == {"shop/vm-1": 1}  # the resumed VM; vm-2 took preflight's start
    assert counted.values == 1 and counted.predicates == 0  # predicates as journaled
    assert ("ConfigMap", "shop", "vm-1-big") in dst.objects  # Big, as frozen in the journal
    assert ("ConfigMap", "shop", "vm-2-big") not in dst.objects


def test_starts_too_old_or_of_another_run_are_computed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p, it = plan("late", ["vm-1"]), flow(tmp_path)
    src, dst = clusters({"vm-1": 2})
    now = [0.0]
    reads = preflight(p, it, src, dst, now=now)
    now[0] = PREFETCH_MAX_AGE + 1
    counted = Computed(monkeypatch)
    (vm,) = run(tmp_path, "old", p, it, src, dst, reads).vms
    assert vm.phase == "Completed"
    assert counted.read_all == {"shop/vm-1": 1} and counted.values == 1

    src, dst = clusters({"vm-1": 2})
    reads = preflight(p, it, src, dst)
    counted.read_all.clear()
    (vm,) = run(tmp_path, "other", p, it, src, dst, reads, run_id="20261205120000-ffffff").vms
    assert vm.phase == "Completed"
    assert counted.read_all == {"shop/vm-1": 1}
    assert ("ConfigMap", "shop", "vm-1-20261205120000-ffffff") in dst.objects


SETUP_JOB = """apiVersion: batch/v1
kind: Job
metadata: {name: setup-job, namespace: shop}
spec: {template: {spec: {containers: [{name: c, image: busybox}], restartPolicy: Never}}}
"""


def _setup_wait_itinerary(tmp_path: Path, name: str) -> Any:
    """A setup whose Job takes a while, then one state writing out.yaml per VM."""
    return itinerary(tmp_path / name, """
setup:
  states:
    - name: Prepare
      cluster: target
      actions: [{apply: setup-job.yaml}]
      readiness: {ready: "condition=Complete"}
""" + START + BIG + """states:
  - name: Write
    actions: [{apply: out.yaml}]
  - name: Completed
""", {**TEMPLATES, "setup-job.yaml": SETUP_JOB}, name=name)


def test_the_first_vms_first_states_are_rendered_and_watched_while_the_setup_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # While the plan's setup waits (its Job takes 0.3 s), the first VM's first state is
    # rendered from preflight's context for the run, and the watch of what it creates started;
    # when the VM starts, its action uses that rendering (no second render) and the watch is
    # already there. The created objects are the same as without it.
    from statemachine.engine.lang import Language
    from statemachine.engine.scheduler import Scheduler

    it = _setup_wait_itinerary(tmp_path, "setupwait")
    p = plan("setupwait", ["vm-1", "vm-2"])
    renders: list[tuple[str, bool]] = []
    watches: list[tuple[str, bool]] = []
    idle = {"on": False}
    real_render, real_later = Language.render_manifests, Scheduler._run_later
    real_watch = FakeCluster.watch

    def render(lang: Language, template: str, ctx: Any) -> Any:
        renders.append((template, idle["on"]))
        return real_render(lang, template, ctx)

    def later(scheduler: Scheduler) -> None:
        idle["on"] = True
        try:
            real_later(scheduler)
        finally:
            idle["on"] = False

    def watch(cluster: FakeCluster, key: Any, handler: Any) -> Any:
        watches.append((key.kind, idle["on"]))
        return real_watch(cluster, key, handler)

    src, _ = clusters({"vm-1": 1, "vm-2": 2})
    dst = FakeCluster("target", job_seconds=0.3)
    reads = preflight(p, it, src, dst)
    monkeypatch.setattr(Language, "render_manifests", render)
    monkeypatch.setattr(Scheduler, "_run_later", later)
    monkeypatch.setattr(FakeCluster, "watch", watch)
    result = run(tmp_path, "setupwait", p, it, src, dst, reads)
    assert [v.phase for v in result.vms] == ["Completed", "Completed"]
    # vm-1's out.yaml once, as idle work during the setup's wait; vm-2's at its start.
    assert [r for r in renders if r[0] == "out.yaml"] == [("out.yaml", True), ("out.yaml", False)]
    assert ("ConfigMap", True) in watches
    assert [w for w in watches if w[0] == "ConfigMap"] == [("ConfigMap", True)]
    assert dst.objects[("ConfigMap", "shop", f"vm-1-{RUN}")]["data"] == {"size": "1", "big": "False"}


def test_the_context_rendered_ahead_is_the_one_the_first_vm_then_uses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first VM's context built ahead while the setup waits (Engine._first_vm_ahead) and the
    # one its first action renders with once it has started from preflight's start are equal:
    # compared directly, key by key, not only through a rendering that was not repeated.
    import statemachine.engine.actions as actions
    from statemachine.engine import ahead

    it = _setup_wait_itinerary(tmp_path, "equalahead")
    p = plan("equalahead", ["vm-1"])
    built: list[dict[str, Any]] = []
    used: list[dict[str, Any]] = []
    real_first, real_stamped = ahead.first_states, actions._stamped

    def first_states(rt: Any, vm: Any, ctx: Any, preds: Any) -> None:
        built.append(dict(ctx))
        real_first(rt, vm, ctx, preds)

    def stamped(rt: Any, vm: Any, state: Any, action: Any, ctx: Any, labels: Any) -> Any:
        if vm.vm is not None:
            used.append(dict(ctx))
        return real_stamped(rt, vm, state, action, ctx, labels)

    src, _ = clusters({"vm-1": 2})
    dst = FakeCluster("target", job_seconds=0.3)
    reads = preflight(p, it, src, dst)
    monkeypatch.setattr(ahead, "first_states", first_states)
    monkeypatch.setattr(actions, "_stamped", stamped)
    (vm,) = run(tmp_path, "equalahead", p, it, src, dst, reads).vms
    assert vm.phase == "Completed", vm.message
    (ahead_ctx,), (vm_ctx,) = built, used
    assert sorted(ahead_ctx) == sorted(vm_ctx)
    assert {k: v for k, v in ahead_ctx.items() if vm_ctx[k] != v} == {}
    assert ahead_ctx["predicates"]["Big"] is True and ahead_ctx["outputs"] == {}


@pytest.mark.parametrize("change", [
    # the moment preflight ran is not the moment the VM starts
    ("  outName: \"vm.name ~ '-' ~ run.id\"", "  outName: \"vm.name ~ '-' ~ run.id ~ now()[:0]\""),
    # before a run, outputs are placeholders; at the VM's start there are none
    # (preflight would read `vm-1-a<output:suffix>`, absent; the engine reads `vm-1-a`)
    ("name: \"{{ item }}\"", "name: \"{{ item }}{{ outputs.suffix | default('') }}\""),
])
def test_a_start_preflight_cannot_compute_as_the_engine_is_left_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: tuple[str, str]) -> None:
    p = plan("unlike", ["vm-1"])
    it = flow(tmp_path)
    source = Path(it.file).read_text(encoding="utf-8")
    assert change[0] in source
    write = "      actions: [{apply: out.yaml}]\n"  # state Write makes the output used
    assert write in source
    source = source.replace(change[0], change[1]).replace(
        write, write + "      outputs: {suffix: \"'-x'\"}\n")
    Path(it.file).write_text(source, encoding="utf-8")
    it = load_itinerary(it.file)
    src, dst = clusters({"vm-1": 2})
    reads = preflight(p, it, src, dst)
    counted = Computed(monkeypatch)
    (vm,) = run(tmp_path, "unlike", p, it, src, dst, reads).vms
    assert vm.phase == "Completed", vm.message
    assert counted.read_all == {"shop/vm-1": 1} and counted.values == 1
    (started,) = [e for e in journal_of(tmp_path, "unlike", p) if e["type"] == "vm_started"]
    assert started["reads"]["partObjects"][0]["metadata"]["name"] == "vm-1-a"
