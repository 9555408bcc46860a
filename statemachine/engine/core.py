"""The :class:`Engine`: runs a plan's VMs through an itinerary over two clusters.

It replays the journal (resume; rerun of failed/canceled VMs only), runs the plan-level setup
states once, then starts at most ``max_in_flight`` VMs at a time on one scheduler loop, notices
cancel requests (the state directory's cancel file, one ``stat`` every quarter second) and reports
progress events. Library users compose it with clusters of their choosing::

    engine = Engine(load_plan("plan.yaml"), load_itinerary("live"), source=src, target=dst,
                    journal=Journal(path), settings=EngineSettings(max_in_flight=20))
    result = engine.run()

It runs exactly the loaded :class:`~statemachine.itinerary.Itinerary` for a
:class:`~statemachine.plan.Plan`, with smrun's own context, label and predicate code. It does not
connect to clusters, start simulated ones, run preflight checks, read the environment or print
(the command line, ``statemachine.commands``, does those).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from statemachine import context as contexts
from statemachine.context import Context, Values
from statemachine import predicates as preds
import statemachine.engine.runner as runner
from statemachine.engine import ahead
from statemachine.engine.actions import render_ref, retrying
from statemachine.engine.journal import SETUP_KEY, Journal, VmRecord, new_run_id, read_cancel
from statemachine.engine.outputs import OutputThread
from statemachine.engine.preflight import VmStart, VmStarts
from statemachine.engine.progress import Event, EventSink
from statemachine.engine.runtime import Runtime, VmModel
from statemachine.engine.scheduler import Scheduler, Task
from statemachine.errors import Canceled, SmrunError, StateDirError
from statemachine.itinerary import TERMINAL_STATES, Itinerary, ReadSpec
from statemachine.k8s import Cluster, Obj, ObjectRef
from statemachine.plan import VM, Plan
from statemachine.parameters import LazyValues, bind_parameters, compute_values

logger = logging.getLogger("statemachine.engine")

# A VM that starts within this many seconds of preflight uses the objects preflight read for it
# (the very snapshot its checks approved) instead of reading them again: ~20 GETs per VM saved at
# start. A VM queued longer reads afresh, so a long run never starts from an old view. Within
# the same age, a VM preflight checked in this run's context starts from the reads, values and
# predicates preflight computed from those objects (``preflight.VmStarts``), not computing them
# again on the loop thread.
PREFETCH_MAX_AGE = 30.0


# Outputs (journal to the kernel, events to their streams) are flushed this often by the output
# thread (and sinks that must be flushed on the loop thread after a batch at most this often): a
# kill -9 loses at most about this long of decisions that had no effect outside the process
# (creates flush and fsync first), and a reader of the events sees them this late.
OUTPUT_FLUSH_EVERY = 0.01


class Prefetched(Protocol):
    """Objects read shortly before the run (``preflight.ClusterReads``)."""

    def recent(self, cluster: str, ref: ObjectRef, max_age: float) -> tuple[bool, Obj | None]: ...


@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs a plan; every field has the default ``smrun run`` uses.

    ``max_in_flight`` and ``step_timeout`` default (``None``) to the plan's ``spec.settings``.
    """

    #: At most this many VMs migrate at once (``None``: ``spec.settings.maxInFlight``).
    max_in_flight: int | None = None
    #: A state's default time-out in seconds (``None``: ``spec.settings.stepTimeout``).
    step_timeout: float | None = None
    #: Only these VMs (``name`` or ``namespace/name``); empty: every VM of the plan.
    vms: tuple[str, ...] = ()
    #: Seconds between re-evaluations of a wait that saw no watch event (a safety net only).
    resync: float = 2.0
    #: The caller removed any stale cancel file before starting (``smrun run`` does, before
    #: preflight), so a cancel file present at start is a request made since and is honoured.
    cancel_file_is_fresh: bool = False
    #: Threads that send writes (creates, patches, deletes) so one slow request stalls no VM.
    io_workers: int = 8
    #: What ``run_started`` records about the clusters (``smrun run``: each one's server and
    #: identity, compared when the journal is resumed; :mod:`statemachine.reruns`).
    clusters: Mapping[str, Mapping[str, str | None]] | None = None


@dataclass(frozen=True)
class VmResult:
    vm: str
    phase: str           # Completed | Failed | Canceled | Pending (not run: filtered or interrupted)
    message: str = ""


@dataclass(frozen=True)
class RunResult:
    run_id: str
    vms: tuple[VmResult, ...] = field(default_factory=tuple)

    def count(self, phase: str) -> int:
        return sum(1 for v in self.vms if v.phase == phase)

    @property
    def exit_code(self) -> int:
        return 0 if all(v.phase == "Completed" for v in self.vms) else 1


def vm_key(vm: VM) -> str:
    """How the journal and events name a VM: ``namespace/name``."""
    return vm.ref


def _strip_secret(obj: object) -> object:
    if isinstance(obj, list):
        return [_strip_secret(o) for o in obj]
    if isinstance(obj, dict) and obj.get("kind") == "Secret":
        return {k: v for k, v in obj.items() if k not in ("data", "stringData")}
    return obj


class Engine:
    """Runs ``plan``'s VMs through ``itinerary`` over two clusters.

    ``source``/``target`` are any :class:`~statemachine.k8s.Cluster`; ``journal`` is where the run
    is recorded (and what it resumes from); ``on_event`` receives every progress event (dicts as
    in docs/engine.md); ``servers`` are the clusters' API server URLs for templates
    (``clusters.source.server``), when known; ``prefetched`` are objects preflight just read
    (and, on a ``preflight.ClusterReads``, the VMs' starts it computed); ``run_id`` is the id of
    a new run (the journal's own id wins; default: a new one).
    """

    def __init__(self, plan: Plan, itinerary: Itinerary, *, source: Cluster, target: Cluster,
                 journal: Journal, settings: EngineSettings = EngineSettings(),
                 on_event: EventSink | Iterable[EventSink] | None = None,
                 servers: Mapping[str, str] | None = None, prefetched: Prefetched | None = None,
                 run_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # Idempotent: a plan bound by the CLI is bound again unchanged; a library caller's
        # plan gets the itinerary's parameter defaults (and is refused if they do not fit).
        self.plan = bind_parameters(plan, itinerary)
        self.itinerary = itinerary
        self.journal = journal
        self.settings = settings
        self.servers = dict(servers or {})
        self.clusters: dict[str, Cluster] = {"source": source, "target": target}
        self.max_in_flight = max(1, settings.max_in_flight or plan.settings.max_in_flight)
        self.step_timeout = float(settings.step_timeout or plan.settings.step_timeout)
        if callable(on_event):
            self.sinks: list[EventSink] = [on_event]
        else:
            self.sinks = list(on_event or [])
        self.scheduler = Scheduler(resync=settings.resync, clock=clock)
        self._cancel_mtime: float | None = None
        self.prefetched = prefetched
        self._new_run_id = run_id
        self._starts: VmStarts | None = None  # preflight's VM starts, when made for this run
        self._flushed_at = float("-inf")
        self._out: OutputThread | None = None  # flushes after batches, while the run is on
        # Every prefetched object is older than this engine: past this time none is recent
        # enough to use, and the memo (a copy of each VM's objects) is let go.
        self._prefetch_until = clock() + PREFETCH_MAX_AGE
        self._models: dict[str, VmModel] = {}
        self._tasks: dict[str, Task] = {}
        self._setup: tuple[VmModel, Task] | None = None  # the plan-level setup while it runs
        self._queue: deque[VmModel] = deque()
        self._results: dict[str, VmResult] = {}
        self._in_flight = 0
        self.max_seen_in_flight = 0

    def flush_outputs(self, *, at_most_every: float = 0.0, wait: bool = True) -> None:
        """Journal entries to the kernel, events to their streams: after a batch of steps at most
        every ``OUTPUT_FLUSH_EVERY`` seconds, on every tick, at the end of the run and before a
        test crash. ``wait=False`` (the loop's batches and ticks): the writes are made by the
        output thread (:mod:`~statemachine.engine.outputs`, every 10 ms), because every syscall
        on the loop thread gives the GIL to the I/O and watch threads for a while; only sinks
        that cannot be flushed from another thread are flushed here."""
        now = self.scheduler.clock()
        if now - self._flushed_at < at_most_every:
            return
        self._flushed_at = now
        if not wait and self._out is not None:
            self._flush_sinks(off_loop=False)  # the output thread does the rest by itself
            return
        # wait=False: a backend whose store is a round trip away (the cluster's) sends it from
        # a thread of its own instead of holding the loop; a file's is a write(2), done here.
        self.journal.flush(wait=False)
        self._flush_sinks(off_loop=None)

    def _flush_off_loop(self) -> None:
        """On the output thread: the journal, and the sinks that may be flushed from it. Each
        such sink takes its events, then the journal is flushed, then the events are written:
        an event is never visible before a journal entry appended ahead of it (as when the loop
        flushed both itself)."""
        journal = partial(self.journal.flush, wait=False)
        flushed = False
        for sink in self.sinks:
            if getattr(sink, "flush_from_any_thread", False):
                try:
                    sink.flush(first=journal)  # type: ignore[attr-defined]
                    flushed = True
                except StateDirError:
                    raise  # recorded by the journal; the run stops
                except Exception:  # noqa: BLE001 - a broken subscriber must not stop the run
                    logger.exception("progress subscriber failed")
        if not flushed:
            journal()

    def _flush_sinks(self, *, off_loop: bool | None) -> None:
        """Flush the sinks that have a ``flush``: those whose ``flush_from_any_thread`` is
        ``off_loop`` (``None``: all of them)."""
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if flush is None or (off_loop is not None and
                                 bool(getattr(sink, "flush_from_any_thread", False)) != off_loop):
                continue
            try:
                flush()
            except Exception:  # noqa: BLE001 - a broken subscriber must not stop the run
                logger.exception("progress subscriber failed")

    def _drop_old_prefetch(self) -> None:
        if self.prefetched is not None and self.scheduler.clock() > self._prefetch_until:
            self.prefetched = None
            if self._starts is not None:
                self._starts.drop()  # the caller may keep the memo: the VMs' copies go now
                self._starts = None

    def subscribe(self, callback: EventSink) -> None:
        self.sinks.append(callback)

    def _emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # noqa: BLE001 - a broken subscriber must not stop the run
                logger.exception("progress subscriber failed")

    # -- run ------------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        replay = self.journal.read()
        run_id = replay.run_id or self._new_run_id or new_run_id()
        self.rt = rt = Runtime(plan=self.plan, itinerary=self.itinerary, run_id=run_id,
                               clusters=self.clusters, journal=self.journal,
                               scheduler=self.scheduler, step_timeout=self.step_timeout,
                               emit=self._emit, io_workers=self.settings.io_workers)
        self._starts = self._preflight_starts(run_id)
        if self._starts is not None:
            rt.setup_wait_work = self._first_vm_ahead
        chosen = self.settings.vms
        vms = [v for v in self.plan.vms if not chosen or v.name in chosen or v.ref in chosen]
        extra = {"clusters": self.settings.clusters} if self.settings.clusters else {}
        self.journal.append("run_started", run=run_id, vms=[vm_key(v) for v in vms], **extra)
        rt.emit(None, "run_started", run=run_id, vms=len(vms))
        for v in vms:
            key = vm_key(v)
            rec = replay.vms.get(key) or VmRecord(key)
            if rec.terminal == "Completed":
                self._results[key] = VmResult(key, "Completed", "completed in an earlier run")
                continue
            model = VmModel(rt, key, v, rec)
            if rec.terminal in ("Failed", "Canceled"):
                model.log("vm_reset", previous=rec.terminal)  # rerun: start this VM afresh
            self._models[key] = model
            self._queue.append(model)
        cancel_dir = self.journal.dir
        self._cancel_mtime = (None if self.settings.cancel_file_is_fresh
                              else _mtime(cancel_dir / "cancel.json"))
        self.scheduler.tick_hooks.append(lambda: self._check_cancel(cancel_dir))
        self._out = OutputThread(self._flush_off_loop, interval=OUTPUT_FLUSH_EVERY)
        self._out.start()
        self.scheduler.idle_hooks.append(
            lambda: self.flush_outputs(at_most_every=OUTPUT_FLUSH_EVERY, wait=False))
        # What a tick hook itself emitted.
        self.scheduler.tick_hooks.append(partial(self.flush_outputs, wait=False))
        self.scheduler.tick_hooks.append(self._drop_old_prefetch)
        setup_rec = replay.vms.get(SETUP_KEY)
        try:
            if self.itinerary.setup.states and self._queue and \
                    not (setup_rec is not None and setup_rec.terminal == "Completed"):
                self._start_setup(setup_rec or VmRecord(SETUP_KEY))
            else:
                self._fill()
            self.scheduler.run()
        finally:
            try:
                rt.close()
            finally:
                out, self._out = self._out, None
                if out is not None:
                    out.stop()  # from here on the loop thread flushes itself
        for key, model in self._models.items():
            self._results.setdefault(key, VmResult(key, model.record.terminal or "Pending",
                                                   model.record.message))
        result = RunResult(run_id, tuple(self._results[vm_key(v)] for v in vms
                                         if vm_key(v) in self._results))
        counts = {p.lower(): result.count(p) for p in TERMINAL_STATES}
        self.journal.append("run_finished", run=run_id, **counts)
        rt.emit(None, "run_finished", message=", ".join(f"{v} {k}" for k, v in counts.items()),
                total=len(result.vms), **counts)
        self.flush_outputs()
        return result

    def cancel(self, vms: list[str] | None = None) -> None:
        """Cancel VMs (None: all) from any thread."""
        self.scheduler.call_soon(lambda: self._cancel(None if vms is None else set(vms)))

    # -- internals ------------------------------------------------------------------------------------
    def _start_setup(self, rec: VmRecord) -> None:
        model = VmModel(self.rt, SETUP_KEY, None, rec)
        if rec.terminal in ("Failed", "Canceled"):
            model.log("vm_reset", previous=rec.terminal)  # a rerun tries the setup again
        self.rt.add(model)
        model.base_context = self._context(None)

        def done(task: Task, error: BaseException | None) -> None:
            self.rt.remove(model)
            self._setup = None
            if model.record.terminal == "Completed":
                self._fill()
                return
            if model.record.terminal == "Canceled" or isinstance(error, Canceled):
                phase, event, why = "Canceled", "vm_canceled", "canceled before it started"
            else:
                phase, event = "Failed", "vm_failed"
                why = f"setup failed: {model.record.message or error}"
            while self._queue:
                vm = self._queue.popleft()
                vm.log("vm_terminal", phase=phase, message=why)
                self.rt.emit(vm, event, message=why)
                self._results[vm.key] = VmResult(vm.key, phase, why)

        self._setup = (model, self.scheduler.spawn("setup", self._prepared(model, setup=True), done))

    def _fill(self) -> None:
        while self._queue and self._in_flight < self.max_in_flight:
            model = self._queue.popleft()
            self._in_flight += 1
            self.max_seen_in_flight = max(self.max_seen_in_flight, self._in_flight)
            self.rt.add(model)
            self._tasks[model.key] = self.scheduler.spawn(model.key, self._prepared(model), self._done)

    def _done(self, task: Task, error: BaseException | None) -> None:
        self._in_flight -= 1
        model = self._models[task.name]
        if isinstance(error, Canceled) and model.record.terminal is None:
            model.log("vm_terminal", phase="Canceled", message="canceled before it started")
            self.rt.emit(model, "vm_canceled", message="canceled before it started")
        elif error is not None and model.record.terminal is None:
            msg = f"internal error: {type(error).__name__}: {error}"
            model.log("vm_terminal", phase="Failed", message=msg)
            self.rt.emit(model, "vm_failed", message=msg)
        self._results[model.key] = VmResult(model.key, model.record.terminal or "Failed",
                                            model.record.message)
        self.rt.remove(model)
        self._tasks.pop(model.key, None)
        self._fill()

    def _prepared(self, model: VmModel, *, setup: bool = False) -> runner.Gen:
        """Resolve reads and freeze predicates (or restore them from the journal), then run."""
        rt = self.rt
        model.started_at = time.monotonic()
        if not setup:
            rt.emit(model, "vm_started")
        model.base_context = self._context(model.vm)
        rec = model.record
        reads_specs = self.itinerary.setup.reads if setup else self.itinerary.reads
        try:
            start = self._preflight_start(model) if rec.predicates is None and not setup \
                else None
            if start is not None:
                # Preflight computed them in this context from the same objects (VmStarts).
                model.reads = reads = start.reads
                model.base_context["values"] = start.values
                model.log("vm_started", predicates=start.predicates,
                          reads={k: _strip_secret(v) for k, v in reads.items()})
            elif rec.predicates is None:
                reads = yield from self._read_all(model, reads_specs, None)
                model.reads = reads
                if not setup:
                    self._values(model)
                preds = {} if setup else self._predicates(model)
                model.log("vm_started", predicates=preds,
                          reads={k: _strip_secret(v) for k, v in reads.items()})
            else:
                # Resume: reads and predicates as frozen at start; Secrets (not journaled) re-read.
                model.reads = yield from self._read_all(model, reads_specs, rec.reads or {})
                if not setup:
                    self._values(model)
        except (Canceled, SmrunError) as e:
            canceled = isinstance(e, Canceled)
            if rec.entered or rec.undoing:
                # A resumed VM (Secrets are re-read) already created objects in an earlier run:
                # it ends through undo (and the commit rule), never straight to a terminal phase.
                model.reads = dict(rec.reads or {})
                if rec.undoing:  # killed during undo: finish that undo as it was
                    reason, message = rec.undoing, rec.undo_message
                else:
                    reason, message = ("canceled" if canceled else "failed"), str(e) or "canceled"
                yield from runner.end(rt, model, reason, message, setup=setup)
            elif canceled:
                runner.finish(rt, model, "Canceled", "canceled before its first state")
            else:
                runner.finish(rt, model, "Failed", str(e))
            return
        yield from runner.vm_flow(rt, model, setup=setup)

    def _preflight_starts(self, run_id: str) -> VmStarts | None:
        """Preflight's VM starts, when computed for this very run: the same plan, itinerary,
        run id and servers (the rest of a VM's context at its start follows from these)."""
        starts = getattr(self.prefetched, "starts", None)
        if not isinstance(starts, VmStarts):
            return None
        if (starts.run_id != run_id or starts.servers != self.servers
                or starts.itinerary is not self.itinerary or starts.plan != self.plan):
            return None
        return starts

    def _first_vm_ahead(self) -> None:
        """Idle work while the plan's setup waits: the first VM's first states rendered, and the
        watches they need started, from the context preflight computed for it in this run
        (:func:`ahead.first_states`). Nothing when that VM will not start from preflight's
        context (a resume, old reads, a cutover file): it then renders at its start, as ever."""
        if not self._queue or self._starts is None or self.rt.cutover_file_seen:
            return
        model = self._queue[0]
        if model.vm is None or model.record.predicates is not None:
            return
        start = self._starts.peek(model.key, PREFETCH_MAX_AGE)
        if start is None:
            return
        # As VmModel.context() will build it once the VM has started from these (_prepared:
        # the base context with preflight's values, its reads and predicates, no outputs yet).
        ctx = VmModel.context_from(self._context(model.vm), values=start.values,
                                   reads=start.reads, outputs={}, predicates=start.predicates)
        ahead.first_states(self.rt, model, ctx, start.predicates)

    def _preflight_start(self, model: VmModel) -> VmStart | None:
        """The VM's reads, values and predicates as preflight computed them, when they are what
        :meth:`_read_all`, :meth:`_values` and :meth:`_predicates` would compute now: a fresh
        start (never a resume: its journaled reads and predicates stand), reads no older than
        ``PREFETCH_MAX_AGE`` (the objects ``_read_all`` would take from the memo), and no
        ``smrun cutover`` file (it changes the VM's context)."""
        if self._starts is None or model.vm is None or self.rt.cutover_file_seen:
            return None
        return self._starts.take(model.key, PREFETCH_MAX_AGE)

    def _read_all(self, model: VmModel, specs: tuple[ReadSpec, ...],
                  journaled: Values | None) -> runner.Gen:
        out: Values = {}
        deadline = self.rt.clock() + self.step_timeout
        for spec in specs:
            if journaled is not None and spec.name in journaled and spec.object.kind != "Secret":
                out[spec.name] = journaled[spec.name]
                continue
            ctx = model.context()
            ctx["reads"] = out
            if model.vm is not None:  # a VM's reads may use values over the reads before them
                ctx["values"] = LazyValues(self.itinerary, ctx)
            if spec.when is not None and not self.rt.lang.evaluate(spec.when, ctx):
                out[spec.name] = None
                continue
            items = ([None] if spec.for_each is None
                     else self.rt.lang.items(spec.for_each, ctx, where=f"{spec.where}.forEach"))
            values = []
            for item in items:
                ref = render_ref(self.rt, spec.object, {**ctx, "item": item})
                cluster_name = spec.object.cluster or spec.cluster
                cluster = self.clusters[cluster_name]
                known, obj = (self.prefetched.recent(cluster_name, ref, PREFETCH_MAX_AGE)
                              if self.prefetched is not None else (False, None))
                if not known:
                    # On the I/O pool: a batch of VMs starting together would otherwise block
                    # every other VM's reactions behind ~20 round trips each (docs/performance.md).
                    obj = yield from retrying(self.rt, model, f"get {ref}", partial(cluster.get, ref),
                                              deadline, blocking=True)
                if obj is None and not spec.optional:
                    raise SmrunError(f"read {spec.name}: {ref} not found on {cluster_name}")
                values.append(obj)
            out[spec.name] = values if spec.for_each is not None else values[0]
        return out

    def _context(self, vm: VM | None) -> Context:
        if vm is None:
            return contexts.setup_context(self.plan, run_id=self.rt.run_id, servers=self.servers)
        return contexts.vm_context(self.plan, vm, run_id=self.rt.run_id, servers=self.servers)

    def _values(self, model: VmModel) -> None:
        """``values``: computed once per VM after its reads (not journaled: a resumed VM's
        reads are restored, so they are recomputed the same)."""
        model.base_context["values"] = compute_values(self.itinerary, model.context())

    def _predicates(self, model: VmModel) -> dict[str, bool]:
        return preds.evaluate_all(self.itinerary, model.context())

    def _check_cancel(self, directory: Path) -> None:
        mtime = _mtime(directory / "cancel.json")
        if mtime is None or mtime == self._cancel_mtime:
            return
        self._cancel_mtime = mtime
        self._cancel(read_cancel(directory))

    def _cancel(self, which: set[str] | None) -> None:
        def wanted(key: str) -> bool:
            return which is None or key in which or key.split("/", 1)[-1] in which

        for model in list(self._queue):
            if wanted(model.key):
                self._queue.remove(model)
                model.log("vm_terminal", phase="Canceled", message="canceled before it started")
                self.rt.emit(model, "vm_canceled", message="canceled before it started")
                self._results[model.key] = VmResult(model.key, "Canceled", "canceled before it started")
        for key, task in list(self._tasks.items()):
            model = self._models[key]
            if wanted(key) and model.cancelable and not model.ignore_cancel:
                model.cancelable = False
                model.logger.info("cancel requested")
                self.scheduler.throw(task, Canceled("canceled by user"))
        if self._setup is not None and not self._queue:
            # Every VM waiting for the plan-level setup was canceled: stop the setup too (it
            # undoes what it did); it served no one else.
            setup_model, setup_task = self._setup
            if setup_model.cancelable:
                setup_model.cancelable = False
                logger.info("setup: cancel requested (no VM is left to run)")
                self.scheduler.throw(setup_task, Canceled("canceled by user"))


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except FileNotFoundError:
        return None


__all__ = ["Engine", "EngineSettings", "RunResult", "VmResult"]
