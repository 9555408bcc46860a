"""Shared services of one run (:class:`Runtime`) and the per-VM model (:class:`VmModel`).

This is the only module in smrun that imports ``transitions``. One ``Machine`` per run is built
from the itinerary's own graph: the legal edges ``statemachine.itinerary.flow_edges`` computes
(the same function ``smrun graph`` draws), ``Pending`` to each start state, a self-loop on every
state (resume re-enters the journaled state; ``retry`` re-enters the failed one), and from
anywhere to ``Completed``, ``Failed`` and ``Canceled``. Every move is one trigger, ``go``, whose
transitions are guarded by their destination (``VmModel.move``): a move the graph does not have raises
:class:`~statemachine.errors.IllegalTransition` instead of passing unnoticed. Callbacks are bound
methods, never strings from YAML (transitions would import a dotted string). The machine is only
touched on the loop thread.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from transitions import EventData, Machine, MachineError

from statemachine import context as contexts
from statemachine.context import Context, Values
from statemachine.cutover import FILE_NAME as CUTOVER_FILE, with_override
from statemachine.engine.groupcommit import GroupCommit
from statemachine.engine.journal import Journal, VmRecord, apply_entry, utc_now
from statemachine.engine.lang import Language
from statemachine.engine.progress import Event, EventSink
from statemachine.engine.scheduler import Scheduler
from statemachine.errors import IllegalTransition
from statemachine.itinerary import (TERMINAL_STATES, Itinerary, StateSpec, flow_edges,
                                    start_states)
from statemachine.k8s import Cluster, Obj, ObjectRef, ResourceKey, Subscription
from statemachine.plan import VM, Plan

logger = logging.getLogger("statemachine.engine")

PENDING = "Pending"
#: The one trigger every move goes through (its guard picks the transition by destination).
MOVE = "go"


class VmLogger(logging.LoggerAdapter[logging.Logger]):
    """The engine's logger for one VM: every line starts ``<namespace>/<name>: <state>: ``."""

    def __init__(self, model: VmModel) -> None:
        super().__init__(logger, {})
        self.model = model

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        m = self.model
        state = m.state_name
        where = f"{m.key or 'setup'}: {state}: " if state != PENDING else f"{m.key or 'setup'}: "
        return f"{where}{msg}", kwargs


class VmModel:
    """One VM (or the plan-level setup, ``key == ""``) as the machine and the runner see it."""

    state: str  # set by transitions

    def __init__(self, runtime: Runtime, key: str, vm: VM | None, record: VmRecord) -> None:
        self.rt = runtime
        self.key = key
        self.vm = vm                        # the plan's VM entry (None for setup)
        self.record = record
        self.logger = VmLogger(self)
        self.base_context: Context = {}
        self.reads: Values = {}
        # The current state's own `reads` (resolved at entry, merged over `reads`, never journaled).
        self.state_reads: Values = {}
        # The current state's own `values` (computed after its reads, merged over `values`).
        self.state_values: Values = {}
        self.cancelable = True              # False once undo (or a committed finish) is under way
        self.ignore_cancel = False
        self.step = ""
        self.waiting_for = ""
        self.progress = ""
        self.started_at: float | None = None
        self.state_started_at: float | None = None
        self.last_object: tuple[str, ObjectRef] | None = None  # for Kubernetes Events
        # When the watch event arrived that let the current state's wait end (runner.wait_ready);
        # `state_completed` reports the time from it as `reaction`.
        self.ready_event_at: float | None = None
        # Manifests rendered ahead while the VM waited (engine/ahead.py): (state, id(action)) ->
        # (the context they were rendered with, the stamped documents). Used once, if the
        # context is still equal when the action runs.
        self.ahead: dict[tuple[str, int], tuple[Context, list[Obj]]] = {}

    @property
    def state_name(self) -> str:
        return getattr(self, "state", PENDING)

    def labels(self, state: str) -> dict[str, str]:
        return contexts.labels_for(self.rt.plan, self.vm, run_id=self.rt.run_id, state=state)

    @staticmethod
    def context_from(base: Context, *, reads: Values, outputs: Mapping[str, Any],
                     predicates: Mapping[str, bool] | None,
                     values: Values | None = None) -> Context:
        """A VM's context: ``base`` (the plan, the VM and the run: ``context.vm_context``, with
        ``values`` once computed) with its ``reads``, ``outputs`` and ``predicates``, and
        ``values`` over the base's when given. The one definition of that shape: :meth:`context`
        builds every VM context with it, and the engine the first VM's context it renders ahead
        with while the setup waits (``Engine._first_vm_ahead``), whose renderings are used only
        if that context is equal to the VM's own (issue 17: built by hand, the two could drift
        apart and the rendering ahead would silently be wasted)."""
        ctx = dict(base)
        ctx["reads"] = reads
        if values is not None:
            ctx["values"] = values
        ctx["outputs"] = dict(outputs)
        ctx["predicates"] = dict(predicates or {})
        return ctx

    def context(self, *, own_state: bool = True, **extra: object) -> Context:
        """The VM's context; ``own_state=False``: without the current state's own reads and
        values (the context a next state without its own starts from)."""
        reads = ({**self.reads, **self.state_reads} if self.state_reads and own_state
                 else self.reads)
        values = ({**(self.base_context.get("values") or {}), **self.state_values}
                  if self.state_values and own_state else None)  # None: the base's
        ctx = self.context_from(self.base_context, reads=reads, values=values,
                                outputs=self.record.outputs, predicates=self.record.predicates)
        ctx.update(extra)
        if self.vm is not None and self.rt.cutover_file_seen:
            # `smrun cutover` may move a warm VM's cutover while the run goes on (the file is
            # re-read only when it changed).
            ctx = with_override(ctx, self.rt.journal.dir, self.key)
        return ctx

    def log(self, type_: str, **fields: object) -> Event:
        """Journal an entry for this VM and fold it into the in-memory record."""
        entry = self.rt.journal.append(type_, vm=self.key, **fields)
        apply_entry(self.record, entry)
        return entry

    def enter(self, state: str) -> None:
        """Journal the entry into ``state``, then move the machine there."""
        self.log("state_entered", state=state)
        self.move(state)

    def move(self, to: str) -> None:
        """The one way a VM changes state. A move the itinerary's graph lacks is a bug."""
        before = self.state_name
        try:
            self.trigger(MOVE, to=to)  # type: ignore[attr-defined]  # added by transitions
        except MachineError:
            pass  # no `go` transition at all from here: reported below
        # A queued machine answers True even when no guard passed: look where the VM is.
        if self.state_name != to:
            raise IllegalTransition(f"{self.key or 'setup'}: no move from {before} to {to} in "
                                    f"itinerary {self.rt.itinerary.name}")


def legal_moves(itinerary: Itinerary) -> set[tuple[str, str]]:
    """Every (from, to) the engine may take for ``itinerary`` (see the module docstring)."""
    moves: set[tuple[str, str]] = set()
    for group in (itinerary.setup.states, itinerary.states):
        if not group:
            continue
        moves.update((PENDING, s) for s in start_states(group))
        moves.update((e.source, e.target) for e in flow_edges(group))
        for s in (PENDING, *(x.name for x in group)):
            moves.add((s, s))  # resume re-enters the journaled state; retry the failed one
            moves.update((s, t) for t in TERMINAL_STATES)
    return moves


class _To:
    """The guard of one ``move`` transition: passes when the move asks for its destination."""

    def __init__(self, dest: str) -> None:
        self.dest = dest

    def __call__(self, event: EventData) -> bool:
        return bool(event.kwargs.get("to") == self.dest)


class Runtime:
    """What every VM's runner shares: clusters, journal, language, scheduler, watches, events."""

    def __init__(self, *, plan: Plan, itinerary: Itinerary, run_id: str,
                 clusters: Mapping[str, Cluster], journal: Journal, scheduler: Scheduler,
                 step_timeout: float, emit: EventSink, io_workers: int = 8,
                 backoff_base: float = 0.2, backoff_max: float = 10.0) -> None:
        self.plan = plan
        self.plan_name = plan.name
        self.itinerary = itinerary
        self.lang = Language(itinerary.template_dir)
        # Writes go through a small fixed pool so one slow request does not stall every VM; the
        # journal, the machine and all decisions stay on the loop thread.
        self.pool: ThreadPoolExecutor | None = ThreadPoolExecutor(io_workers, "smrun-io") \
            if io_workers > 0 else None
        self._commit = GroupCommit(self.pool) if self.pool is not None else None
        # A journal that cannot be written stops the run where it is (from any thread).
        journal.on_failure = scheduler.fail
        self.inflight: dict[str, int] = {}  # VM key -> writes in flight (loop thread only)
        # (cluster, ref) of `ensure` creates in flight: other VMs wait for them (loop thread only)
        self.ensuring: set[tuple[str, ObjectRef]] = set()
        # Whether a `smrun cutover` file exists, looked at once per tick (a quarter second) rather
        # than with one stat per context built: at 100 VMs that was ~10,000 stats, 0.4 s of CPU.
        self._cutover_path = journal.dir / CUTOVER_FILE
        self.cutover_file_seen = self._cutover_path.exists()
        # Idle work for the plan-level setup's first wait (engine/ahead.first_states), run once.
        self.setup_wait_work: Callable[[], None] | None = None
        scheduler.tick_hooks.append(self._look_for_cutover_file)
        self.run_id = run_id
        self.clusters = dict(clusters)
        self.journal = journal
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.resync = scheduler.resync
        self.step_timeout = step_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sink = emit
        self._watches: dict[tuple[str, ResourceKey], Subscription] = {}
        # When the latest watch event of each object arrived (set on the watch threads; read on
        # the loop thread when a wait ends, for the reaction time of `state_completed`).
        self.event_at: dict[tuple[str, str, str, str], float] = {}
        self._specs: dict[str, StateSpec] = {s.name: s for s in itinerary.setup.states}
        self._specs.update((s.name, s) for s in itinerary.states)
        names = [PENDING, *self._specs, *(t for t in TERMINAL_STATES if t not in self._specs)]
        self.machine = Machine(model=[], states=names, initial=PENDING, auto_transitions=False,
                               queued=True, send_event=True,
                               after_state_change=[self._after_state_change])
        for source, dest in sorted(legal_moves(itinerary)):
            self.machine.add_transition(MOVE, source, dest, conditions=[_To(dest)])

    # -- models -------------------------------------------------------------------------------------
    def add(self, model: VmModel) -> None:
        """Put ``model`` on the machine, at its journaled state when it resumes."""
        at = model.record.state if model.record.state in self.machine.states else PENDING
        if model.record.terminal is not None:
            at = PENDING  # a rerun of a failed or canceled VM starts afresh
        self.machine.add_model(model, initial=at)

    def remove(self, model: VmModel) -> None:
        self.machine.remove_model(model)

    def _after_state_change(self, event: EventData) -> None:
        vm = event.model
        assert isinstance(vm, VmModel)
        vm.state_started_at = self.clock()
        vm.waiting_for = vm.progress = ""
        if vm.state in TERMINAL_STATES:
            return
        spec = self._specs.get(vm.state)
        vm.step = (spec.step or "") if spec is not None else ""
        self.emit(vm, "state_entered", step=vm.step)

    # -- watches ------------------------------------------------------------------------------------
    def ensure_watch(self, cluster: str, ref: ObjectRef) -> None:
        """One shared watch per (cluster, kind, namespace) this run needs; events wake waiters."""
        key = ResourceKey(ref.api_version, ref.kind, ref.namespace)
        if (cluster, key) in self._watches:
            return
        kind, notify, seen, clock = ref.kind, self.scheduler.notify, self.event_at, self.clock

        def handler(_event: str, obj: Obj) -> None:
            meta = obj.get("metadata") or {}
            key = (cluster, kind, str(meta.get("namespace") or ""), str(meta.get("name", "")))
            seen[key] = clock()
            notify(key)

        self._watches[(cluster, key)] = self.clusters[cluster].watch(key, handler)

    def _look_for_cutover_file(self) -> None:
        self.cutover_file_seen = self._cutover_path.exists()

    def submit_write(self, work: Callable[[], None], *, durable: bool = False) -> None:
        """Run ``work`` on the pool now; a ``durable`` one (a create, announced by an intent) once
        an fsync of the journal covers that intent (``groupcommit``). Either way, not before every
        ``created`` entry appended so far is flushed (``Journal.before_request``)."""
        assert self.pool is not None
        if durable:
            assert self._commit is not None
            self._commit.submit(self.journal.sync_later(), work)  # its flush covers `created`
        else:
            self.pool.submit(self.journal.before_request(work))

    def close(self) -> None:
        self.close_watches()
        if self._commit is not None:
            self._commit.close()
        if self.pool is not None:
            # After a fatal error (the journal failed) nothing queued is sent any more.
            self.pool.shutdown(wait=True, cancel_futures=self.scheduler.fatal is not None)

    def close_watches(self) -> None:
        for sub in self._watches.values():
            try:
                sub.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                logger.debug("closing a watch failed", exc_info=True)
        self._watches.clear()

    # -- events -------------------------------------------------------------------------------------
    def emit(self, vm: VmModel | None, event: str, *, message: str = "", **fields: object) -> None:
        data: Event = {"ts": utc_now(), "event": event, "plan": self.plan_name}
        if vm is not None:
            data["vm"] = vm.key
            data["state"] = vm.state_name
            if vm.started_at is not None:
                data["elapsed"] = round(time.monotonic() - vm.started_at, 3)
        data["message"] = message
        data.update(fields)
        self._sink(data)
