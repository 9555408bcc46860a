"""Shared services of one run (:class:`Runtime`) and the per-VM model (:class:`VmModel`).

This is the only module in smrun that imports ``transitions``. One ``Machine`` is built per
itinerary (``auto_transitions=False``, ``queued=True``, ``send_event=True``) and drives every VM
model through ``add_model``; its states are the itinerary's states plus ``Pending``, ``Failed``
and ``Canceled``, its triggers ``enter_<State>`` (from anywhere: the runner decides the target from
the itinerary's flow rules) and its callbacks are bound methods of the engine, never strings from
YAML (transitions would import a dotted string). The machine is only touched on the loop thread.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Mapping
from typing import Any

from transitions import Machine

from statemachine.cutover import FILE_NAME as CUTOVER_FILE, with_override
from statemachine.engine.actions import label_value
from statemachine.engine.flow import Flow
from statemachine.engine.groupcommit import GroupCommit
from statemachine.engine.journal import Journal, VmRecord, _apply_entry, utc_now
from statemachine.engine.lang import Language
from statemachine.engine.scheduler import Scheduler
from statemachine.k8s import Cluster, ObjectRef, ResourceKey, Subscription

logger = logging.getLogger("statemachine.engine")

EventSink = Callable[[dict[str, Any]], None]


class VmModel:
    """One VM (or the plan-level setup, ``key == ""``) as the machine and the runner see it."""

    state: str  # set by transitions

    def __init__(self, runtime: Runtime, key: str, vm: Any, record: VmRecord) -> None:
        self.rt = runtime
        self.key = key
        self.vm = vm                        # the plan's VM entry (None for setup)
        self.record = record
        self.base_context: dict[str, Any] = {}
        self.reads: dict[str, Any] = {}
        # The current state's own `reads` (resolved at entry, merged over `reads`, never journaled).
        self.state_reads: dict[str, Any] = {}
        self.cancelable = True              # False once undo (or a committed finish) is under way
        self.ignore_cancel = False
        self.step = ""
        self.waiting_for = ""
        self.progress = ""
        self.started_at: float | None = None
        self.state_started_at: float | None = None
        self.last_object: tuple[str, ObjectRef] | None = None  # for Kubernetes Events

    @property
    def state_name(self) -> str:
        return getattr(self, "state", "Pending")

    def labels(self, state: str) -> dict[str, str]:
        if self.rt.labels_fn is not None:
            return self.rt.labels_fn(self.vm, state, self.rt.run_id)
        labels = {"smrun.io/plan": label_value(self.rt.plan_name),
                  "smrun.io/state": label_value(state),
                  "smrun.io/run": label_value(self.rt.run_id)}
        if self.vm is not None:
            labels["smrun.io/vm"] = label_value(str(self.vm.name))
            labels["smrun.io/vm-namespace"] = label_value(str(self.vm.namespace))
        return labels

    def context(self, **extra: Any) -> dict[str, Any]:
        ctx = dict(self.base_context)
        ctx["reads"] = {**self.reads, **self.state_reads} if self.state_reads else self.reads
        ctx["outputs"] = dict(self.record.outputs)
        ctx["predicates"] = dict(self.record.predicates or {})
        ctx.update(extra)
        if self.vm is not None and self.rt.cutover_file_seen:
            # `smrun cutover` may move a warm VM's cutover while the run goes on (the file is
            # re-read only when it changed).
            ctx = with_override(ctx, self.rt.journal.dir, self.key)
        return ctx

    def log(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Journal an entry for this VM (durably) and fold it into the in-memory record."""
        entry = self.rt.journal.append(type_, vm=self.key, **fields)
        _apply_entry(self.record, entry)
        return entry

    def enter(self, state: str) -> None:
        self.log("state_entered", state=state)
        getattr(self, f"enter_{state}")()


class Runtime:
    """What every VM's runner shares: clusters, journal, language, scheduler, watches, events."""

    def __init__(self, *, plan_name: str, run_id: str, flow: Flow, clusters: Mapping[str, Cluster],
                 journal: Journal, lang: Language, scheduler: Scheduler, step_timeout: float,
                 emit: EventSink, backoff_base: float = 0.2, backoff_max: float = 10.0,
                 labels_fn: Callable[[Any, str, str], dict[str, str]] | None = None,
                 io_workers: int = 8) -> None:
        self.labels_fn = labels_fn
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
        scheduler.tick_hooks.append(self._look_for_cutover_file)
        self.plan_name = plan_name
        self.run_id = run_id
        self.flow = flow
        self.clusters = dict(clusters)
        self.journal = journal
        self.lang = lang
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.resync = scheduler.resync
        self.step_timeout = step_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sink = emit
        self._watches: dict[tuple[str, ResourceKey], Subscription] = {}
        names = ["Pending"]
        for s in (*flow.setup_states, *flow.states):
            if s.name not in names:
                names.append(s.name)
        names += [n for n in ("Completed", "Failed", "Canceled") if n not in names]
        self.machine = Machine(model=[], states=names, initial="Pending", auto_transitions=False,
                               queued=True, send_event=True,
                               after_state_change=[self._after_state_change])
        for name in names[1:]:
            self.machine.add_transition(f"enter_{name}", source="*", dest=name)

    # -- models -------------------------------------------------------------------------------------
    def add(self, model: VmModel) -> None:
        self.machine.add_model(model)

    def remove(self, model: VmModel) -> None:
        self.machine.remove_model(model)

    def _after_state_change(self, event: Any) -> None:
        vm: VmModel = event.model
        vm.state_started_at = self.clock()
        vm.waiting_for = vm.progress = ""
        if vm.state in ("Completed", "Failed", "Canceled"):
            return
        spec = None
        try:
            spec = self.flow.state(vm.state)
        except KeyError:
            pass
        vm.step = spec.step if spec is not None else ""
        self.emit(vm, "state_entered", step=vm.step)

    # -- watches ------------------------------------------------------------------------------------
    def ensure_watch(self, cluster: str, ref: ObjectRef) -> None:
        """One shared watch per (cluster, kind, namespace) this run needs; events wake waiters."""
        key = ResourceKey(ref.api_version, ref.kind, ref.namespace)
        if (cluster, key) in self._watches:
            return
        kind, notify = ref.kind, self.scheduler.notify

        def handler(_event: str, obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            notify((cluster, kind, str(meta.get("namespace") or ""), str(meta.get("name", ""))))

        self._watches[(cluster, key)] = self.clusters[cluster].watch(key, handler)

    def _look_for_cutover_file(self) -> None:
        self.cutover_file_seen = self._cutover_path.exists()

    def submit_write(self, work: Callable[[], None], *, durable: bool = False) -> None:
        """Run ``work`` on the pool now; a ``durable`` one (a create, announced by an intent) once
        an fsync of the journal covers that intent (``groupcommit``)."""
        assert self.pool is not None
        if durable:
            assert self._commit is not None
            self._commit.submit(self.journal.sync_later(), work)
        else:
            self.pool.submit(work)

    def close(self) -> None:
        self.close_watches()
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
    def emit(self, vm: VmModel | None, event: str, *, message: str = "", **fields: Any) -> None:
        data: dict[str, Any] = {"ts": utc_now(), "event": event, "plan": self.plan_name}
        if vm is not None:
            data["vm"] = vm.key
            data["state"] = vm.state_name
            if vm.started_at is not None:
                data["elapsed"] = round(time.monotonic() - vm.started_at, 3)
        data["message"] = message
        data.update(fields)
        self._sink(data)
