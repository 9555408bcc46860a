"""Rendering ahead (issue 17, ``engine/ahead.py``): while a VM waits, the loop renders the next
states' templates when it is idle; the action uses them only when its context is still equal.

Each test runs a real engine over ``FakeCluster`` (its Job completes after a while, so the loop
has idle time during the wait) and records every template rendering and whether it ran as
deferred idle work (``Scheduler._run_later``) or in a VM's step.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from statemachine.engine.actions import stamp
from statemachine.engine.lang import Language
from statemachine.engine.scheduler import Scheduler
from statemachine.expressions import deterministic_template
from statemachine.itinerary import Itinerary

from .fakes import JOB_TEMPLATE, FakeCluster
from .flows import engine, itinerary, plan

RUN_JOB = """
  - name: RunJob
    actions: [{apply: job.yaml}]
    readiness: {ready: "condition=Complete"}
"""


def flow(tmp_path: Path, name: str, cm: str, *, job_outputs: bool = False) -> Itinerary:
    outputs = "    outputs: {jobName: object.metadata.name}\n" if job_outputs else ""
    return itinerary(tmp_path / name, f"""
states:{RUN_JOB}{outputs}  - name: Skipped
    when: {{all: [Never]}}
    actions: [{{apply: skipped.yaml}}]
  - name: Make
    actions: [{{apply: cm.yaml}}]
  - name: Completed
predicates:
  Never: "false"
""", {"job.yaml": JOB_TEMPLATE, "cm.yaml": cm, "skipped.yaml": cm}, name=name)


class Renders:
    """Every ``render_manifests`` call: (template, whether it ran as idle work)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.idle = threading.local()
        real_render = Language.render_manifests
        real_later = Scheduler._run_later

        def render(lang: Language, template: str, ctx: Any) -> Any:
            self.calls.append((template, bool(getattr(self.idle, "on", False))))
            return real_render(lang, template, ctx)

        def later(scheduler: Scheduler) -> None:
            self.idle.on = True
            try:
                real_later(scheduler)
            finally:
                self.idle.on = False
        monkeypatch.setattr(Language, "render_manifests", render)
        monkeypatch.setattr(Scheduler, "_run_later", later)

    def of(self, template: str) -> list[bool]:
        return [idle for t, idle in self.calls if t == template]


def run(tmp_path: Path, it: Itinerary, name: str) -> FakeCluster:
    cluster = FakeCluster("c", job_seconds=0.4)
    result = engine(tmp_path, plan(name, ["vm-1"]), it, cluster).run()
    assert result.exit_code == 0, result
    return cluster


CM = """apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-cfg", namespace: shop}
data: {vm: "{{ vm.name }}", plan: "{{ plan.name }}"}
"""


def test_the_next_state_is_rendered_while_the_vm_waits_and_used_as_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renders = Renders(monkeypatch)
    cluster = run(tmp_path, flow(tmp_path, "ahead", CM), "ahead")
    assert renders.of("cm.yaml") == [True]  # once, as idle work; not again in the VM's step
    assert renders.of("skipped.yaml") == []  # a state whose predicate is false is stepped over
    made = cluster.objects[("ConfigMap", "shop", "vm-1-cfg")]
    assert made["data"] == {"vm": "vm-1", "plan": "ahead"}
    labels = made["metadata"]["labels"]
    assert labels["smrun.io/state"] == "Make"
    # Exactly what rendering it in the step would have sent: same labels, same manifest hash.
    fresh = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "vm-1-cfg", "namespace": "shop"},
             "data": {"vm": "vm-1", "plan": "ahead"}}
    assert made == stamp(fresh, labels)


def test_a_context_that_changed_during_the_wait_renders_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renders = Renders(monkeypatch)
    cm = CM.replace('plan: "{{ plan.name }}"', "job: \"{{ outputs.get('jobName', 'unknown') }}\"")
    cluster = run(tmp_path, flow(tmp_path, "changed", cm, job_outputs=True), "changed")
    # RunJob records an output when its wait ends: nothing after it is rendered ahead ...
    assert renders.of("cm.yaml") == [False]
    assert cluster.objects[("ConfigMap", "shop", "vm-1-cfg")]["data"]["job"] == "vm-1-job"


def test_an_output_recorded_after_the_rendering_is_seen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ... and if a rendering ahead was made with an older context anyway (here: injected), the
    # action sees that the context differs and renders again.
    renders = Renders(monkeypatch)
    import statemachine.engine.ahead as ahead
    original = ahead._render

    def stale(rt: Any, vm: Any, spec: Any, visit: int) -> None:
        original(rt, vm, spec, visit)
        if vm.ahead:
            return
        ctx = vm.context(own_state=False)
        make = next(s for s in rt.itinerary.states if s.name == "Make")
        ahead._render_state(rt, vm, make, ctx, vm.ahead)
    monkeypatch.setattr(ahead, "_render", stale)
    cm = CM.replace('plan: "{{ plan.name }}"', "job: \"{{ outputs.get('jobName', 'unknown') }}\"")
    cluster = run(tmp_path, flow(tmp_path, "stale", cm, job_outputs=True), "stale")
    assert renders.of("cm.yaml") == [True, False]
    assert cluster.objects[("ConfigMap", "shop", "vm-1-cfg")]["data"]["job"] == "vm-1-job"


def test_a_template_with_a_clock_or_randomness_is_never_rendered_ahead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renders = Renders(monkeypatch)
    cm = CM.replace('plan: "{{ plan.name }}"', 'at: "{{ now() }}"')
    run(tmp_path, flow(tmp_path, "clock", cm), "clock")
    assert renders.of("cm.yaml") == [False]
    tdir = tmp_path / "clock" / "templates"
    (tdir / "dice.yaml").write_text("x: {{ [1, 2] | random }}\n")
    (tdir / "outer.yaml").write_text("{% include 'cm.yaml' %}\n")
    (tdir / "pure.yaml").write_text("x: {{ vm.name | upper }}\n")
    assert not deterministic_template("dice.yaml", str(tdir))
    assert not deterministic_template("outer.yaml", str(tdir))
    assert deterministic_template("pure.yaml", str(tdir))


def test_the_watch_of_a_kind_rendered_ahead_starts_while_the_vm_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The create's shared watch (its first LIST) is started as idle work during the wait, not
    # on the reaction's path when the create runs; the create then finds it there.
    renders = Renders(monkeypatch)
    started: list[tuple[str, str, bool]] = []
    real_watch = FakeCluster.watch

    def watch(cluster: FakeCluster, key: Any, handler: Any) -> Any:
        started.append((key.kind, key.namespace, bool(getattr(renders.idle, "on", False))))
        return real_watch(cluster, key, handler)
    monkeypatch.setattr(FakeCluster, "watch", watch)
    cluster = run(tmp_path, flow(tmp_path, "watched", CM), "watched")
    assert ("ConfigMap", "shop", True) in started
    assert [s for s in started if s[:2] == ("ConfigMap", "shop")] == [("ConfigMap", "shop", True)]
    assert ("ConfigMap", "shop", "vm-1-cfg") in cluster.objects
