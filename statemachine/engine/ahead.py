"""Rendering a VM's next states while it waits, so that the reaction to the wait's end is short.

When a VM starts waiting for readiness, the loop queues (``Scheduler.when_idle``: only when it
has nothing else to do) the rendering of the ``apply``/``ensure`` templates of the states the VM
will enter once the wait ends: the documents, stamped with smrun's labels and manifest hash, and
the context they were rendered with, kept on the VM (``VmModel.ahead``); the shared watches of
the kinds they create are started then too. When the action runs,
``actions.create`` uses them only if its context is *equal* to that one; otherwise it renders as
always. At 100 VMs with 50 in flight, the simulator's DataVolumes turn ``Succeeded`` in one tick
and the 50th VM's reaction waited for 49 renderings of the receiving VM (~1 ms each) on the loop
thread; they are now done during the seconds the disks take (docs/performance.md, issue 17).

What may be rendered ahead, walking forward from the waiting state:

- only the itinerary's ``states`` (not the setup), in list order, and nothing when the waiting
  state has ``next`` entries (which one applies depends on the wait's outcome) or ``outputs``
  (recorded when the wait ends: the next state's context is not known yet); a state with its own
  ``reads`` or ``values`` (resolved when it is entered) or a non-empty ``forEach`` stops the walk;
- states whose ``when`` predicates are false are stepped over, as the runner does;
- only templates that render the same for an equal context (no clock, no randomness, no other
  template: ``expressions.deterministic_template``), and only actions whose ``when`` holds now;
- the walk ends after a state that waits, records ``outputs`` or runs anything but creates
  (a later state's context may depend on what it does), or after ``LOOKAHEAD`` states.

Equal context means equal inputs (the VM's reads, values, outputs, predicates, plan, run) for a
deterministic template, so the documents are the ones the action would render itself; a changed
output, a ``smrun cutover`` override file, a retry or a resume simply render again. This module
applies nothing and journals nothing; the only requests it causes are the watches' LISTs and WATCHes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

from statemachine.context import Context
from statemachine.errors import SmrunError
from statemachine.itinerary import StateSpec
from statemachine.k8s import Obj, ObjectRef
from statemachine.predicates import state_enabled

if TYPE_CHECKING:
    from statemachine.engine.runtime import Runtime, VmModel

#: How many states past the waiting one are rendered ahead at most.
LOOKAHEAD = 4


def when_waiting(rt: Runtime, vm: VmModel, spec: StateSpec) -> None:
    """``vm`` started waiting in ``spec``: render its next states when the loop is idle. The
    plan-level setup's first wait runs ``rt.setup_wait_work`` instead (:func:`first_states`)."""
    if vm.vm is None:
        work, rt.setup_wait_work = rt.setup_wait_work, None
        if work is not None:
            rt.scheduler.when_idle(work)
        return
    if spec not in rt.itinerary.states:
        return
    rt.scheduler.when_idle(partial(_render, rt, vm, spec, vm.record.visits.get(spec.name, 0)))


def first_states(rt: Runtime, vm: VmModel, ctx: Context, predicates: Mapping[str, bool]) -> None:
    """While the plan's setup waits, before any VM may start: render the first VM's first
    states as its start will see them (``ctx``: its context as preflight computed it for this
    run) and start the watches of the kinds they create. Without this, the first VM's start
    listed the Namespaces and then the DataVolumes, one round trip after the other, before its
    first create (issue 17). The documents are used only if the VM's context is then equal,
    as for any rendering ahead; a ``forEach`` state's items only start watches."""
    vm.ahead = _walk(rt, vm, rt.itinerary.states[:LOOKAHEAD], ctx, predicates, prime_items=True)


def _render(rt: Runtime, vm: VmModel, spec: StateSpec, visit: int) -> None:
    rec = vm.record
    if (vm.state_name != spec.name or rec.visits.get(spec.name, 0) != visit or rec.state_done
            or rec.undoing or rt.cutover_file_seen):
        return  # the VM moved on (or is being undone) before the loop had time
    states = rt.itinerary.states
    idx = states.index(spec)
    if spec.next or spec.outputs:
        return  # which state comes next, or the context it starts from, depends on the wait
    vm.ahead = _walk(rt, vm, states[idx + 1: idx + 1 + LOOKAHEAD], vm.context(own_state=False),
                     rec.predicates or {})


def _walk(rt: Runtime, vm: VmModel, states: Sequence[StateSpec], ctx: Context,
          predicates: Mapping[str, bool], *, prime_items: bool = False,
          ) -> dict[tuple[str, int], tuple[Context, list[Obj]]]:
    """The renderings of ``states`` (those that may be rendered ahead: module docstring)."""
    ahead: dict[tuple[str, int], tuple[Context, list[Obj]]] = {}
    for state in states:
        if state.terminal or state.name == "Completed":
            break
        if not state_enabled(state, predicates):
            continue
        if state.reads or state.values:
            break
        if state.for_each is not None:
            try:
                items = rt.lang.items(state.for_each, ctx, where=f"{state.where}.forEach",
                                      state=state.name)
            except SmrunError:
                break
            if not items:
                continue  # no item: the state runs no action
            if prime_items:
                for i, item in enumerate(items):
                    try:
                        _render_state(rt, vm, state, {**ctx, "item": item, "index": i}, {})
                    except SmrunError:
                        break
            break
        try:
            _render_state(rt, vm, state, ctx, ahead)
        except SmrunError:
            break  # the real render reports it, at its time
        if (state.readiness is not None or state.outputs or state.next
                or any(a.kind not in ("apply", "ensure") for a in state.actions)):
            break
    return ahead


def _render_state(rt: Runtime, vm: VmModel, state: StateSpec, ctx: Context,
                  ahead: dict[tuple[str, int], tuple[Context, list[Obj]]],
                  ) -> None:
    from statemachine.engine.actions import action_cluster, stamp  # actions uses this module

    labels = vm.labels(state.name)
    for action in state.actions:
        if action.kind not in ("apply", "ensure") or action.template is None:
            continue
        if not rt.lang.deterministic(action.template):
            continue
        if action.when is not None and not rt.lang.evaluate(action.when, ctx):
            continue
        docs = [stamp(doc, labels) for doc in rt.lang.render_manifests(action.template, ctx)]
        ahead[(state.name, id(action))] = (ctx, docs)
        # Decision (issue 17): the shared watch of each kind the create will touch starts now,
        # while the VM waits, instead of when the create runs: its first LIST (a round trip and
        # the decoding of the collection) was on the reaction's path, once per kind and run, for
        # the first VMs to get there (Secrets, ConfigMaps, VirtualMachines, ...). A state that
        # then does not run leaves a watch open until the run ends, as a failed create would.
        cluster = action_cluster(state, action)
        for doc in docs:
            rt.ensure_watch(cluster, ObjectRef.of(doc))
