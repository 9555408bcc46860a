"""One VM's migration as a generator the scheduler drives: states, readiness, outputs, flow, undo.

The execution semantics of docs/itinerary.md live here: a state whose ``when`` is false is skipped;
a state runs its actions (per ``forEach`` item), waits for readiness (``failed`` first, with the
``failedFor`` dwell; a timeout names the false clause), records outputs, then the first ``next``
entry whose ``when`` holds wins, else the next listed state. On failure or cancel, undo runs the
entered states' ``undo`` lists in reverse order — unless the commit object says the hand-off
happened: then a cancel finishes the migration and a failure ends without undo, saying why. It is
read again before every undo step: a cancel whose undo meets the hand-off finishes it too.
Every step is journaled before it acts, so re-running the generator from a journal record resumes.
A state's own ``reads`` are resolved each time it is entered (and again for its undo) and are
never journaled: a resumed run re-reads them, so Secret values never reach the state directory.
Its own ``values`` are computed right after them (also for undo), never journaled either.
"""
from __future__ import annotations

from collections.abc import Generator
from functools import partial
from typing import Any

import statemachine.engine.actions as actions
import statemachine.engine.ahead as ahead
from statemachine.engine.actions import Ctx, obj_key, render_ref, retrying
from statemachine.context import Context, Values
from statemachine.engine.runtime import Runtime, VmModel
from statemachine.engine.scheduler import Wait
from statemachine.errors import (
    Canceled,
    ClusterError,
    ReadinessFailed,
    ReadinessTimeout,
    SmrunError,
    StateDirError,
)
from statemachine.itinerary import Action, ReadSpec, StateSpec
from statemachine.k8s import Obj, ObjectRef
from statemachine.parameters import compute_state_values
from statemachine.predicates import state_enabled
from statemachine.readiness import format_duration, settle_failure

# A wait's progress expression (e.g. a DataVolume's percentage) is evaluated and reported at most
# every PROGRESS_EVERY seconds: in the simulator the object it reads changes on every 50 ms tick,
# and evaluating and emitting it each time was a third of a waiting VM's cost on the loop thread.
# A value held back is reported when the interval is up. What the wait waits for, and a change of
# that, is reported at once. (Real controllers update progress every few seconds: no change there.)
PROGRESS_EVERY = 0.1
Gen = Generator[Wait, None, Any]


# -- whole VM -------------------------------------------------------------------------------------
def vm_flow(rt: Runtime, vm: VmModel, *, setup: bool = False) -> Gen:
    """Run a VM (or the setup) to a terminal state; the terminal phase is journaled."""
    rec = vm.record
    if rec.finishing is not None:  # killed while finishing after undo met the hand-off
        yield from finish_forward(rt, vm, rec.finishing)
        return
    if rec.undoing:  # killed during undo: finish it
        yield from end(rt, vm, rec.undoing, rec.undo_message, setup=setup)
        return
    try:
        yield from run_states(rt, vm, setup=setup)
    except Canceled as e:
        yield from end(rt, vm, "canceled", str(e) or "canceled", setup=setup)
        return
    except StateDirError:
        raise  # the journal cannot be written: stop here, as a kill would (no undo without it)
    except SmrunError as e:
        yield from end(rt, vm, "failed", str(e), setup=setup)
        return
    except Exception as e:  # noqa: BLE001 - a bug (ours or a template's) must not orphan objects
        # Decision: an unexpected error still goes through undo (and the commit rule); ending the
        # VM Failed without undo would leave everything the earlier states created behind.
        vm.logger.exception("internal error")
        yield from end(rt, vm, "failed", f"internal error: {type(e).__name__}: {e}", setup=setup)
        return
    finish(rt, vm, "Completed", "")


def finish(rt: Runtime, vm: VmModel, phase: str, message: str) -> None:
    vm.ahead = {}
    vm.log("vm_terminal", phase=phase, message=message)
    vm.move(phase)
    event = {"Completed": "vm_succeeded", "Failed": "vm_failed", "Canceled": "vm_canceled"}[phase]
    # INFO, not WARNING: the progress output already reports every terminal phase to the user.
    vm.logger.info("%s", message or "done")
    rt.emit(vm, event, message=message)
    reason = {"Completed": "MigrationSucceeded", "Failed": "MigrationFailed",
              "Canceled": "MigrationCanceled"}[phase]
    actions.post_event(rt, vm, reason=reason, message=f"smrun plan {rt.plan_name}: {vm.key or 'setup'}: "
                       f"{phase}" + (f": {message}" if message else ""), warning=phase != "Completed")


def run_states(rt: Runtime, vm: VmModel, *, setup: bool) -> Gen:
    states = rt.itinerary.setup.states if setup else rt.itinerary.states
    names = [s.name for s in states]
    rec = vm.record
    if rec.state is None or rec.state not in names:
        idx = 0
    elif rec.state_done:
        done = names.index(rec.state)
        idx = done + 1 if rec.skipped else choose_next(rt, vm, states, done)
    else:
        idx = names.index(rec.state)  # resume: re-enter and re-observe (apply adopts)
    predicates = rec.predicates or {}
    while idx < len(states):
        spec = states[idx]
        if spec.name == "Completed":
            return
        if not state_enabled(spec, predicates):
            vm.log("state_skipped", state=spec.name)
            rt.emit(vm, "state_skipped", state=spec.name, message=_skip_reason(spec, predicates))
            idx += 1
            continue
        vm.ready_event_at = None
        yield from execute_state(rt, vm, spec)
        vm.log("state_completed", state=spec.name)
        if vm.ready_event_at is None:
            rt.emit(vm, "state_completed")
        else:
            # Reaction: from the watch event that made the wait end to the engine moving on
            # (the next state's requests are sent from here).
            rt.emit(vm, "state_completed", reaction=round(rt.clock() - vm.ready_event_at, 6))
        idx = choose_next(rt, vm, states, idx)


def _skip_reason(spec: StateSpec, predicates: dict[str, bool]) -> str:
    """``skipped: HasPreHook is false``: the predicates of ``when`` that switched it off."""
    when = spec.when
    if when is None:
        return "skipped"
    false = [p for p in when.all if not predicates.get(p, False)]
    if not false and when.any:
        return f"skipped: none of {', '.join(when.any)} is true"
    return "skipped: " + ", ".join(false) + (" is false" if len(false) == 1 else " are false")


def choose_next(rt: Runtime, vm: VmModel, states: tuple[StateSpec, ...], idx: int) -> int:
    spec = states[idx]
    names = [s.name for s in states]
    ctx = vm.context()
    for n in spec.next:
        if n.when is None or rt.lang.evaluate(n.when, ctx):
            return names.index(n.to)
    return idx + 1


# -- one state ------------------------------------------------------------------------------------
def execute_state(rt: Runtime, vm: VmModel, spec: StateSpec) -> Gen:
    attempts = 0
    while True:
        vm.enter(spec.name)
        deadline = rt.clock() + (spec.timeout or rt.step_timeout)
        try:
            vm.state_reads = yield from resolve_state_reads(rt, vm, spec, spec.reads, deadline)
            vm.state_values = compute_state_values(spec, vm.context())
            yield from run_state_once(rt, vm, spec, deadline)
            return
        except ReadinessFailed:
            if spec.retry is None or attempts >= spec.retry.limit:
                raise
            attempts += 1
            vm.logger.warning("failed; retry %d of %d", attempts, spec.retry.limit)
            if spec.retry.recreate:
                yield from actions.delete_created(rt, vm, spec.name, rt.clock() + rt.step_timeout)
            yield Wait(until=rt.clock() + spec.retry.backoff)
        finally:
            # State reads and values are visible to this state only (not to `next`, later
            # states or events).
            vm.state_reads = {}
            vm.state_values = {}


def resolve_state_reads(rt: Runtime, vm: VmModel, spec: StateSpec, reads: tuple[ReadSpec, ...],
                        deadline: float, *, wait: bool = True) -> Generator[Wait, None, Values]:
    """Resolve a state's ``reads`` in order (each sees the VM's reads and the ones before it).

    Decision: a missing non-optional object is *waited for* (watch-driven) until ``deadline``, the
    state's timeout, because a state read usually names an object an earlier state caused (the
    export's token Secret appears shortly after the export is Ready); at the deadline the VM fails
    with :class:`ReadinessTimeout` naming the read. With ``wait=False`` (undo) missing is ``none``:
    undo must not hang on an object that is gone. Values are kept in memory only.
    """
    out: Values = {}
    for read in reads:
        ctx = vm.context()
        ctx["reads"] = {**ctx["reads"], **out}
        if read.when is not None and not rt.lang.evaluate(read.when, ctx):
            out[read.name] = None
            continue
        items = [None] if read.for_each is None else \
            rt.lang.items(read.for_each, ctx, where=f"{read.where}.forEach", state=spec.name)
        values = []
        for i, item in enumerate(items):
            local = ctx if read.for_each is None else {**ctx, "item": item, "index": i}
            values.append((yield from _read_object(rt, vm, spec, read, local, deadline,
                                                   wait and not read.optional)))
        out[read.name] = values if read.for_each is not None else values[0]
    return out


def _read_object(rt: Runtime, vm: VmModel, spec: StateSpec, read: ReadSpec, ctx: Ctx,
                 deadline: float, wait: bool) -> Gen:
    ref = render_ref(rt, read.object, ctx)
    cluster = read.object.cluster or read.cluster
    get = partial(rt.clusters[cluster].get, ref)
    noted = False
    while True:
        obj = yield from retrying(rt, vm, f"get {ref}", get, deadline)
        if obj is not None or not wait:
            return obj
        if rt.clock() >= deadline:
            raise ReadinessTimeout(f"{spec.name}: timed out after "
                                   f"{format_duration(spec.timeout or rt.step_timeout)}: read "
                                   f"{read.name}: {ref} not found on the {cluster} cluster")
        rt.ensure_watch(cluster, ref)
        if not noted:
            noted = True
            vm.waiting_for = f"{ref} (read {read.name})"
            rt.emit(vm, "state_waiting", message=f"waiting for {vm.waiting_for}",
                    waiting_for=vm.waiting_for, progress="")
        yield Wait((obj_key(cluster, ref),), deadline)


def _items(rt: Runtime, vm: VmModel, spec: StateSpec) -> list[Context]:
    if spec.for_each is None:
        return [vm.context()]
    items = rt.lang.items(spec.for_each, vm.context(), where=f"{spec.where}.forEach",
                          state=spec.name)
    return [vm.context(item=item, index=i) for i, item in enumerate(items)]


def run_action(rt: Runtime, vm: VmModel, spec: StateSpec, action: Action, ctx: Ctx,
               deadline: float) -> Generator[Wait, None, list[tuple[str, ObjectRef]]]:
    if action.when is not None and not rt.lang.evaluate(action.when, ctx):
        return []
    if action.kind in ("apply", "ensure"):
        return (yield from actions.create(rt, vm, spec, action, ctx, deadline))
    if action.kind == "patch":
        yield from actions.patch(rt, vm, spec, action, ctx, deadline)
    elif action.kind == "delete":
        assert action.object is not None
        ref = render_ref(rt, action.object, ctx)
        yield from actions.delete_and_wait(rt, vm, actions.action_cluster(spec, action), ref, deadline)
    elif action.kind == "delete_created":
        yield from actions.delete_created(rt, vm, spec.name, deadline)
    elif action.kind == "wait":
        yield from actions.wait_timer(rt, vm, action, ctx)
    return []


def run_state_once(rt: Runtime, vm: VmModel, spec: StateSpec, deadline: float) -> Gen:
    ctxs = _items(rt, vm, spec)
    targets: list[tuple[str, ObjectRef] | None] = []
    for ctx in ctxs:
        first: tuple[str, ObjectRef] | None = None
        for action in spec.actions:
            made = yield from run_action(rt, vm, spec, action, ctx, deadline)
            if first is None and made:
                first = made[0]
        if spec.readiness is not None and spec.readiness.object is not None:
            ref = render_ref(rt, spec.readiness.object, ctx)
            first = (spec.readiness.object.cluster or spec.cluster, ref)
        targets.append(first)
    objs: list[Obj | None] = [None] * len(ctxs)
    rd = spec.readiness
    if rd is not None and (rd.ready or rd.failed or any(t is not None for t in targets)):
        # No clause: ready once the object exists (a state with only timeout/progress has none).
        objs = yield from wait_ready(rt, vm, spec, ctxs, targets, deadline)
    elif spec.outputs:
        for i, t in enumerate(targets):
            if t is not None:
                objs[i] = yield from retrying(rt, vm, f"get {t[1]}",
                                              partial(rt.clusters[t[0]].get, t[1]), deadline)
    if spec.outputs:
        values: Values = {}
        for name, expr in spec.outputs.items():
            per_item = [rt.lang.evaluate(expr, {**ctx, "object": obj}) for ctx, obj in zip(ctxs, objs)]
            values[name] = per_item if spec.for_each is not None else per_item[0]
        vm.log("outputs", state=spec.name, values=values)


def wait_ready(rt: Runtime, vm: VmModel, spec: StateSpec, ctxs: list[Context],
               targets: list[tuple[str, ObjectRef] | None], deadline: float) -> Gen:
    rd = spec.readiness
    assert rd is not None
    if rd.timeout:
        deadline = min(deadline, rt.clock() + rd.timeout)
    timeout = rd.timeout or spec.timeout or rt.step_timeout
    for t in targets:
        if t is None:
            raise ReadinessFailed(f"{spec.name}: readiness has no object (no 'object' and no apply)")
        rt.ensure_watch(*t)
    first_failed: dict[int, float] = {}
    last_note = None
    progress_at = -PROGRESS_EVERY
    waiting_since: float | None = None  # set once the wait has yielded (not ready at once)
    while True:
        now = rt.clock()
        objs: list[Obj | None] = []
        pending: list[tuple[int, Obj | None]] = []
        wake = deadline
        for i, (ctx, t) in enumerate(zip(ctxs, targets)):
            assert t is not None
            cluster = rt.clusters[t[0]]
            # Readiness only reads: the watch cache's own object (no copy) where the cluster
            # offers it; expressions run in an immutable sandbox, and outputs copy what they keep.
            read = getattr(cluster, "peek", cluster.get)
            obj = yield from retrying(rt, vm, f"get {t[1]}", partial(read, t[1]), deadline)
            objs.append(obj)
            seen = rt.lang.verdict(obj, rd, {**ctx, "object": obj})
            verdict, since = settle_failure(seen, now=now, first_failed_at=first_failed.get(i),
                                            failed_for=rd.failed_for)
            if verdict.failed:
                where = f" [{i}]" if spec.for_each is not None else ""
                text = verdict.message
                if not text.startswith("failed"):
                    text = f"failed: {text}"
                raise ReadinessFailed(f"{spec.name}{where}: {text}")
            if since is None:
                first_failed.pop(i, None)
            else:  # failed, but not yet for `failedFor`: look again when the dwell is up
                first_failed[i] = since
                wake = min(wake, since + (rd.failed_for or 0.0))
            if not verdict.ready:
                pending.append((i, obj))
        if not pending:
            if waiting_since is not None:
                latest = max((rt.event_at.get(obj_key(t[0], t[1]), 0.0) for t in targets
                              if t is not None), default=0.0)
                # Only an event that came during the wait made it end (else a timer did).
                vm.ready_event_at = latest if latest > waiting_since else None
            return objs
        i, obj = pending[0]
        ctx = {**ctxs[i], "object": obj}
        if now >= deadline:
            raise ReadinessTimeout(rt.lang.timeout_message(spec.name, timeout, obj, rd, ctx))
        waiting_for = f"{targets[i][1]}" + (f" ({len(pending)}/{len(ctxs)} pending)"  # type: ignore[index]
                                            if len(ctxs) > 1 else "")
        if rd.progress:
            if waiting_for != vm.waiting_for or now - progress_at >= PROGRESS_EVERY:
                progress_at = now
                vm.progress = rt.lang.progress(obj, rd, ctx)
            else:
                # Not now: look again when the interval is up, so the latest value is reported
                # even if the object then stays as it is.
                wake = min(wake, progress_at + PROGRESS_EVERY)
        vm.waiting_for = waiting_for
        note = (vm.waiting_for, vm.progress)
        if note != last_note:
            last_note = note
            # The author's readiness message, when given, is what the user reads (rendered only
            # when the note changes: never per watch event).
            mine = rt.lang.message(obj, rd, ctx)
            rt.emit(vm, "state_waiting", message=mine or f"waiting for {vm.waiting_for}",
                    waiting_for=vm.waiting_for, progress=vm.progress)
        keys = tuple(obj_key(t[0], t[1]) for t in targets if t is not None)
        if waiting_since is None:
            waiting_since = now
            ahead.when_waiting(rt, vm, spec)  # render the next states while this one waits
        yield Wait(keys, wake)


# -- failure, cancel, undo ------------------------------------------------------------------------
def _committed(rt: Runtime, vm: VmModel) -> bool | None:
    """True/False: whether the hand-off happened; None: the commit object could not be read."""
    commit = rt.itinerary.commit
    if commit is None or commit.after not in vm.record.entered:
        return False
    try:
        ctx = vm.context()
        ref = render_ref(rt, commit.object, ctx)
        obj = rt.clusters[commit.cluster].fetch(ref)  # never a cached view for this decision
        return bool(rt.lang.holds(commit.condition, obj, {**ctx, "object": obj}))
    except (ClusterError, SmrunError) as e:
        vm.logger.warning("commit object could not be read: %s", e)
        return None


def finish_forward(rt: Runtime, vm: VmModel, note: str) -> Gen:
    """A cancel that came too late: the hand-off happened, so the migration is finished (the
    remaining states run, cancels are ignored) instead of undone. Ends Completed with ``note``;
    a failure on the way ends Failed, without undo (undo would destroy the only running copy).

    Decision: this is the one forward path, for a cancel seen after the hand-off (``end``) and
    for one whose undo met the hand-off (journaled ``undo_stopped``, so a resumed run comes back
    here, see ``vm_flow``): both leave nothing smrun created behind once the remaining states,
    Cleanup among them, have run, and neither restarts the source while the target runs."""
    vm.cancelable = False
    vm.ignore_cancel = True
    rt.emit(vm, "state_waiting", message=f"{note}: finishing the migration instead of undoing it")
    try:
        yield from run_states(rt, vm, setup=False)
    except StateDirError:
        raise
    except SmrunError as e:
        finish(rt, vm, "Failed", f"{e} ({note}); the hand-off already happened, so nothing "
                                 "further was undone: check the VM on both clusters")
        return
    finish(rt, vm, "Completed", f"{note}: the migration was finished")


def end(rt: Runtime, vm: VmModel, reason: str, message: str, *, setup: bool) -> Gen:
    """Fail or cancel a VM: undo in reverse order, subject to the commit rule."""
    vm.cancelable = False
    phase = "Canceled" if reason == "canceled" else "Failed"
    if vm.record.finishing is not None and not setup:
        # Undo already met the hand-off in an earlier run (undo_stopped): never undo again.
        yield from finish_forward(rt, vm, vm.record.finishing)
        return
    if not vm.record.undoing and not setup:
        committed = _committed(rt, vm)
        if committed is None:
            finish(rt, vm, phase, f"{message}; the commit object could not be read, so nothing was "
                                  "undone: check the VM on both clusters")
            return
        if committed and reason == "canceled":
            yield from finish_forward(rt, vm, "canceled after the hand-off")
            return
        if committed:
            finish(rt, vm, phase, f"{message}; the hand-off already happened (commit condition holds), "
                                  "so nothing was undone")
            return
    while rt.inflight.get(vm.key):
        # A cancel can interrupt a create in flight: let it land so undo sees (and deletes) it.
        yield Wait(until=rt.clock() + 0.01)
    if not vm.record.undoing:
        vm.log("undo_started", reason=reason, message=message)
    states = rt.itinerary.setup.states if setup else rt.itinerary.states
    by_name = {s.name: s for s in states}
    problems: list[str] = []
    for name in reversed(list(vm.record.entered)):
        if name in vm.record.undone or name not in by_name:
            continue
        spec = by_name[name]
        if spec.undo and not setup and rt.itinerary.commit is not None:
            # KubeVirt may finish the hand-off while we undo (the migration was already copying):
            # look again before every undo step, so undo never deletes the only running copy.
            committed = _committed(rt, vm)
            if committed and reason == "canceled":
                # The cancel came too late: KubeVirt finished the hand-off while we undid. Stop
                # undoing and finish the migration, as for a cancel seen after the hand-off
                # (stopping here instead left the Succeeded target migration and the Halted
                # source behind and reported Canceled for a VM that now runs on the target).
                # Journaled first: a resumed run finishes forward, never undoes again.
                undone = [s for s in vm.record.undone if by_name.get(s) and by_name[s].undo]
                note = ("canceled too late: the hand-off happened while undo ran (before undo "
                        f"of {name}" + (f"; already undone: {', '.join(undone)}" if undone else
                                        "; nothing was undone") + ")")
                if problems:
                    note += "; undo problems: " + "; ".join(problems)
                vm.logger.warning("%s", note)
                vm.log("undo_stopped", state=name, message=note)
                yield from finish_forward(rt, vm, note)
                return
            if committed is not False:
                why = ("the hand-off happened during undo" if committed else
                       "the commit object could not be read")
                problems.append(f"undo stopped before {name}: {why}; nothing further was removed, "
                                "check the VM on both clusters")
                vm.logger.error("undo stopped before %s: %s", name, why)
                break
        if spec.undo:
            rt.emit(vm, "undo", message=f"undo {name}", undo_state=name)
        if spec.undo and spec.reads:
            try:  # the state's reads, again (missing is none: see resolve_state_reads)
                vm.state_reads = yield from resolve_state_reads(
                    rt, vm, spec, spec.reads, rt.clock() + (spec.timeout or rt.step_timeout),
                    wait=False)
            except SmrunError as e:
                problems.append(f"undo {name}: {e}")
                vm.logger.error("undo %s: %s", name, e)
        if spec.undo and spec.values:
            try:  # and its values, over those reads
                vm.state_values = compute_state_values(spec, vm.context())
            except SmrunError as e:
                problems.append(f"undo {name}: {e}")
                vm.logger.error("undo %s: %s", name, e)
        for action in spec.undo:
            deadline = rt.clock() + (spec.timeout or rt.step_timeout)
            try:
                if action.kind == "delete_created":
                    yield from actions.delete_created(rt, vm, name, deadline)
                else:
                    for ctx in _items(rt, vm, spec) if spec.for_each else [vm.context()]:
                        yield from run_action(rt, vm, spec, action, ctx, deadline)
            except StateDirError:
                raise  # undo without a journal would lose track of what is left: stop
            except SmrunError as e:
                # Keep undoing the rest: one stuck object must not orphan everything else.
                problems.append(f"undo {name}: {e}")
                vm.logger.error("undo %s: %s", name, e)
        vm.state_reads, vm.state_values = {}, {}
        vm.log("undo_state_done", state=name)
    text = message + ("; undo problems: " + "; ".join(problems) if problems else "")
    finish(rt, vm, phase, text)
