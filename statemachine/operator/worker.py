"""One Plan object run to its end on a thread: validate, connect, preflight, engine.

The same composition as ``smrun run`` (:mod:`statemachine.commands`): the spec is loaded with the
plan file's checks (:mod:`statemachine.operator.planobject`), the clusters are connected with
:func:`statemachine.clusters.connect_plan`, preflight is ``preflight.run_checks``, and the run is
the same :class:`~statemachine.engine.Engine` with its journal in the cluster
(:mod:`statemachine.clusterjournal`: ConfigMaps ``smrun-journal-<uid>-<n>`` beside the Plan,
owned by it; keyed by uid, so a Plan deleted and created again under the same name starts
afresh), so any replica resumes it. The operator's ``--state-dir`` holds only local files
(discovery caches, the run's kubeconfigs from Secrets). A Plan that fails the checks ends ``Invalid`` (schema
and semantic checks, the CLI's exit 2) or ``Refused`` (preflight or an unreachable cluster, the
CLI's exit 3) with the CLI's one-line message and a Warning Event; nothing is applied.

:class:`PlanManager` keeps at most one worker per Plan uid and starts one when kopf reports a
Plan that is not finished for its current generation.

A worker acts only while its replica holds the Plan's Lease. When the Lease is lost (another
holder, or the renew deadline passed: :mod:`statemachine.operator.lease`) it stops acting at
once: the journal is fenced (the engine stops where it is, as a kill would, with no undo), and
every cluster it writes through (the migration's two, the operator's for status, Events and the
journal) refuses writes from then on (:mod:`statemachine.operator.fence`). It writes no final
status: the Plan is the next holder's.
"""
from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from statemachine.errors import ClusterError, LockHeld, PreflightError, SmrunError, StateDirError
from statemachine.k8s import Cluster, ObjectRef
from statemachine.operator import credentials
from statemachine.operator.fence import FencedCluster
from statemachine.operator.lease import PlanLease
from statemachine.operator.reporter import API_VERSION, TERMINAL, PlanReporter

if TYPE_CHECKING:
    from statemachine.engine.journalbackend import JournalBackend
    from statemachine.operator.counting import JournalCounter

logger = logging.getLogger("statemachine.operator")


def one_line(exc: BaseException) -> str:
    """The CLI's message as one line: the head, then each listed problem after ``; ``."""
    lines = [line.strip().removeprefix("- ") for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, PreflightError) and len(lines) > 1:
        return f"{lines[0]}: {'; '.join(lines[1:])}"
    return "; ".join(lines) or type(exc).__name__


def finished(obj: Mapping[str, Any]) -> bool:
    """Whether the Plan's status is final for its current generation."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    return status.get("phase") in TERMINAL and status.get("observedGeneration") == generation


class PlanWorker(threading.Thread):
    """Runs one Plan object (see the module docstring)."""

    def __init__(self, api: Cluster, obj: Mapping[str, Any], *, operator_id: str,
                 state_dir: Path, base: Path | None = None,
                 on_state_done: Callable[[str, str, float], None] | None = None,
                 lease: PlanLease | None = None,
                 own: tuple[Path | None, str | None] = (None, None),
                 on_reaction: Callable[[str, str, float], None] | None = None,
                 on_journal: JournalCounter | None = None) -> None:
        meta = obj["metadata"]
        super().__init__(name=f"smrun-plan-{meta['namespace']}-{meta['name']}", daemon=True)
        # Raised when the Lease is lost: every write of this worker stops (fence.py).
        self.fence = threading.Event()
        self._why = f"Plan {meta['namespace']}/{meta['name']}: this replica lost its Lease"
        self.lost: StateDirError | None = None  # why this worker stopped acting, once it did
        self.journal: Any = None
        self.api: Cluster = FencedCluster(api, self.fence, self._why)
        self.obj = obj
        self.operator_id = operator_id
        self.state_dir = state_dir
        self.base = base
        self.engine: Any = None
        self._cancel = threading.Event()
        self.on_state_done = on_state_done
        self.lease = lease
        self.own = own
        self.itinerary = ""
        # For the metrics: (itinerary, state, seconds) of each reaction; journal writes.
        self.on_reaction = on_reaction
        self.on_journal = on_journal
        self.reporter = PlanReporter(self.api, self.obj, self.operator_id,
                                     on_state_done=self._state_done, on_reaction=self._reaction)
        # The spec the run started with, the newest one seen, and where the run's local files
        # are (once known): a changed cutover goes there as the override file (livespec.py).
        self.spec: Mapping[str, Any] = obj.get("spec") or {}
        self._latest: Mapping[str, Any] = self.spec
        self._local_dir: Path | None = None
        self._spec_lock = threading.Lock()
        self._warned = 0  # the last generation whose untaken spec change was logged

    def _state_done(self, state: str, seconds: float) -> None:
        if self.on_state_done is not None:
            self.on_state_done(self.itinerary, state, seconds)

    def _reaction(self, state: str, seconds: float) -> None:
        if self.on_reaction is not None:
            self.on_reaction(self.itinerary, state, seconds)

    def cancel(self) -> None:
        self._cancel.set()
        if self.engine is not None:
            self.engine.cancel()

    def respec(self, obj: Mapping[str, Any]) -> None:
        """The Plan's spec changed while it runs: take what a running Plan takes (livespec.py)."""
        from statemachine.operator.livespec import cutover_override, only_live_changes

        spec = obj.get("spec") or {}
        with self._spec_lock:
            moved = cutover_override(spec) != cutover_override(self._latest)
            self._latest = spec
            directory = self._local_dir
            if moved and directory is not None:
                self._write_cutover(directory, spec)
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        if only_live_changes(self.spec, spec):
            self.reporter.observe_generation(generation)
        elif generation > self._warned:
            # Once per generation: kopf's timer hands the same object over every few seconds.
            self._warned = generation
            logger.warning("%s: the spec changed during the run; a running Plan takes only "
                           "cancel and cutover, the rest when this run has ended",
                           self.reporter.ref)

    def _write_cutover(self, directory: Path, spec: Mapping[str, Any]) -> None:
        from statemachine.cutover import write_override
        from statemachine.operator.livespec import cutover_override

        try:
            write_override(directory, cutover_override(spec))
        except StateDirError as exc:
            logger.warning("%s: the new cutover was not taken: %s", self.reporter.ref, exc)
            return
        logger.info("%s: cutover moved for the running plan", self.reporter.ref)

    def _start_local(self, directory: Path) -> None:
        """The run's local directory is known: a cutover moved before now goes there; an
        override left by an earlier process (the plan it runs is the newest spec) goes away."""
        from statemachine.cutover import FILE_NAME
        from statemachine.operator.livespec import cutover_override

        with self._spec_lock:
            self._local_dir = directory
            if cutover_override(self._latest) != cutover_override(self.spec):
                self._write_cutover(directory, self._latest)
            else:
                try:
                    (directory / FILE_NAME).unlink(missing_ok=True)
                except OSError as exc:
                    logger.warning("%s: a stale cutover override stays: %s", self.reporter.ref,
                                   exc)

    def _lease_lost(self, reason: str) -> None:
        """From a lease thread: stop acting (see the module docstring)."""
        self.lost = StateDirError(f"{self._why} ({reason}); it stopped acting on it")
        self.fence.set()
        journal = self.journal
        if journal is not None:
            journal.fence(self.lost)  # the engine stops; no create not yet sent is sent

    def _retry_policy(self) -> Any:
        """With a Lease, the clients retry a transient error only for the time the Lease leaves
        between its renew deadline and its expiry: a write the client is still retrying when
        the fence goes up is not called back (the fence stops only new requests). The engine's
        own retries, which go through the fence, take over from there."""
        if self.lease is None:
            return None
        from statemachine.k8s.retry import RetryPolicy

        return RetryPolicy(total=max(0.5, (self.lease.duration - self.lease.renew_deadline) / 2))

    def _fenced(self, cluster: Cluster) -> Cluster:
        return FencedCluster(cluster, self.fence, self._why)

    def run(self) -> None:
        reporter = self.reporter
        reporter.start()
        if self.lease is not None:
            self.lease.on_lost = self._lease_lost
            self.lease.keep()
        try:
            self._run(reporter)
            if self.lost is not None:
                logger.warning("%s", self.lost)
        except SmrunError as exc:  # the journal, a cluster gone mid-run, ...
            if self.lost is not None:
                # Whatever stopped it (the fenced journal, a refused write), the Plan is the
                # next holder's: it resumes it and writes its status.
                logger.warning("%s (%s)", self.lost, exc)
                return
            reporter.set_phase("Failed", one_line(exc), warning=True, reason="Failed")
        except Exception as exc:  # a bug in smrun: say so on the object, keep the operator up
            logger.exception("%s: internal error", reporter.ref)
            reporter.set_phase("Failed", f"internal error: {type(exc).__name__}: {exc}",
                               warning=True, reason="InternalError")
        finally:
            reporter.close()
            meta = self.obj["metadata"]
            # The credentials written for this run go with it.
            shutil.rmtree(self.state_dir / meta["namespace"] / str(meta.get("uid", "none"))
                          / "credentials", ignore_errors=True)
            if self.lease is not None:
                self.lease.release()

    def _run(self, reporter: PlanReporter) -> None:
        from statemachine.clusterjournal import ClusterJournalBackend, owner_reference
        from statemachine.clusters import connect_plan
        from statemachine.context import labels_for
        from statemachine.engine import Engine, EngineSettings, Journal
        from statemachine.operator.counting import CountingBackend, CountingCluster
        from statemachine.operator.outputtap import OutputTap
        from statemachine.operator.planobject import load_plan_object
        from statemachine.providers import itinerary_for_plan
        from statemachine.reruns import preflight_scope

        meta = self.obj["metadata"]
        plan_dir = self.state_dir / meta["namespace"] / str(meta.get("uid", "none"))
        obj, refusals = credentials.resolve(self.api, self.obj, plan_dir / "credentials",
                                            own=self.own)
        try:
            plan = load_plan_object(obj, base=self.base)
            itinerary = itinerary_for_plan(plan)
            self.itinerary = itinerary.name
        except SmrunError as exc:
            reporter.set_phase("Invalid", one_line(exc), warning=True, reason="Invalid")
            return
        if refusals:
            refused = PreflightError("preflight refused the plan; nothing was applied", refusals)
            reporter.set_phase("Refused", one_line(refused), warning=True, reason="Refused")
            return
        journal_api: Cluster = self.api if self.on_journal is None else \
            CountingCluster(self.api, self.on_journal)
        backend: JournalBackend = ClusterJournalBackend(
            journal_api, namespace=meta["namespace"], name=f"smrun-journal-{meta.get('uid', 'none')}",
            identity=self.operator_id, owner=owner_reference(self.obj),
            labels={"smrun.io/plan": labels_for(plan, None, run_id="")["smrun.io/plan"]},
            # This replica holds the Plan's Lease (or is its only replica): it takes the
            # journal over from a writer that died, which fences that writer for good.
            take_over=True)
        if self.on_journal is not None:
            backend = CountingBackend(backend, self.on_journal)
        backend = OutputTap(backend, reporter.outputs)  # the VMs' outputs for the status
        journal = Journal(plan_dir / plan.name, backend=backend)
        self.journal = journal
        self._start_local(journal.dir)
        if self.lost is not None:
            journal.fence(self.lost)
        try:
            journal.lock()
        except LockHeld:
            logger.info("%s: already running elsewhere", reporter.ref)
            return
        reporter.set_vms([vm.ref for vm in plan.vms])
        try:
            if plan.simulation is not None:
                journal.reset()  # fresh simulated clusters each run, as `smrun run` does
            journal.probe()
            replay = journal.read()
            for ref, record in replay.vms.items():  # a run taken over: the outputs so far
                if ref and record.outputs:
                    reporter.outputs(ref, dict(record.outputs))
            try:
                conn = connect_plan(plan, cache_dir=journal.dir / "cache",
                                    retry_policy=self._retry_policy())
            except StateDirError:
                raise
            except SmrunError as exc:
                reporter.set_phase("Refused", one_line(exc), warning=True, reason="Refused")
                return
            with conn:
                source, target = self._fenced(conn.source), self._fenced(conn.target)
                reporter.source = source
                clusters = {"source": source, "target": target}
                # Preflight in the run's context, so the engine takes each VM's start over.
                scope = preflight_scope(replay, plan.vms, clusters)
                if scope.needed:
                    try:
                        findings = scope.check(plan, itinerary, servers=conn.servers)
                    except SmrunError as exc:
                        reporter.set_phase("Refused", one_line(exc), warning=True,
                                           reason="Refused")
                        return
                    if findings.blocking:
                        refused = PreflightError("preflight refused the plan; nothing was applied",
                                                 findings.problems)
                        reporter.set_phase("Refused", one_line(refused), warning=True,
                                           reason="Refused")
                        return
                    for warning in findings.warnings:
                        logger.warning("%s: %s", reporter.ref, warning)
                if self._cancel.is_set() and not any(r.predicates is not None
                                                     for r in replay.vms.values()):
                    # Nothing started (no VM in the journal): nothing to undo.
                    reporter.set_phase("Canceled", "canceled before it started", warning=True,
                                       reason="Canceled")
                    return
                reporter.set_phase("Running", f"{len(plan.vms)} VMs", reason="Running")
                if self.lost is not None:
                    raise self.lost
                self.engine = Engine(plan, itinerary, source=source, target=target,
                                     journal=journal, settings=EngineSettings(),
                                     on_event=reporter, servers=conn.servers,
                                     prefetched=scope.reads, run_id=scope.run_id)
                if self._cancel.is_set():
                    self.engine.cancel()
                result = self.engine.run()
                done = result.count("Completed")
                failed, canceled = result.count("Failed"), result.count("Canceled")
                text = f"{done} completed, {failed} failed, {canceled} canceled"
                if result.exit_code == 0:
                    reporter.set_phase("Succeeded", text, reason="Succeeded")
                elif failed:
                    reporter.set_phase("Failed", text, warning=True, reason="Failed")
                else:
                    reporter.set_phase("Canceled", text, warning=True, reason="Canceled")
        finally:
            journal.close()


class PlanManager:
    """At most one :class:`PlanWorker` per Plan uid."""

    def __init__(self, api: Cluster, *, operator_id: str, state_dir: Path,
                 on_state_done: Callable[[str, str, float], None] | None = None,
                 lease_seconds: int | None = None,
                 own: tuple[Path | None, str | None] = (None, None),
                 on_reaction: Callable[[str, str, float], None] | None = None,
                 on_journal: JournalCounter | None = None) -> None:
        self.api = api
        self.on_reaction = on_reaction
        self.on_journal = on_journal
        self.own = own
        self.lease_seconds = lease_seconds
        self.on_state_done = on_state_done
        self.operator_id = operator_id
        self.state_dir = state_dir
        self._workers: dict[str, PlanWorker] = {}
        self._lock = threading.Lock()

    def ensure(self, obj: Mapping[str, Any]) -> bool:
        """Start a worker for ``obj`` unless one runs or its status is final; True if started."""
        from statemachine.operator.planobject import cancel_requested

        uid = str(obj["metadata"].get("uid"))
        cancel = cancel_requested(obj) or bool(obj["metadata"].get("deletionTimestamp"))
        with self._lock:
            current = self._workers.get(uid)
            if current is not None and current.is_alive():
                if cancel:
                    current.cancel()
                current.respec(obj)
                return False
            if finished(obj) or (cancel and (obj.get("status") or {}).get("phase") in TERMINAL):
                return False
            lease = None
            if self.lease_seconds:
                meta = obj["metadata"]
                lease = PlanLease(self.api, meta["namespace"], uid, self.operator_id,
                                  duration=self.lease_seconds)
                if not lease.acquire():
                    return False  # another replica acts on it
                # What we were handed may be old news: the holder before us may have finished.
                try:
                    fresh = self.api.fetch(ObjectRef(API_VERSION, "Plan", meta["namespace"],
                                                     meta["name"]))
                except ClusterError:
                    fresh = None
                if fresh is None or finished(fresh):
                    lease.release()
                    return False
                obj = fresh
            worker = PlanWorker(self.api, obj, operator_id=self.operator_id,
                                state_dir=self.state_dir, on_state_done=self.on_state_done,
                                lease=lease, own=self.own, on_reaction=self.on_reaction,
                                on_journal=self.on_journal)
            if cancel:
                worker.cancel()  # a run an earlier replica began resumes to undo it
            self._workers[uid] = worker
            worker.start()  # under the lock: a second ensure() must see it alive
        return True

    def release(self, obj: Mapping[str, Any]) -> str:
        """For a Plan being deleted: cancel its run; "" once nothing of it runs anywhere (the
        finalizer may go), else what it waits for."""
        uid = str(obj["metadata"].get("uid"))
        with self._lock:
            worker = self._workers.get(uid)
        if worker is not None and worker.is_alive():
            worker.cancel()
            worker.join(timeout=1)
            if worker.is_alive():
                return "canceling: undo in progress"
            return ""
        meta = obj["metadata"]
        if self.lease_seconds:
            holder = PlanLease(self.api, meta["namespace"], uid, self.operator_id,
                               duration=self.lease_seconds).holder()
            if holder and holder != self.operator_id:
                return f"canceling on replica {holder}"
        if (obj.get("status") or {}).get("phase") not in TERMINAL and self.ensure(obj):
            return "canceling: resuming the run to undo it"
        return ""

    def cancel(self, uid: str) -> None:
        with self._lock:
            worker = self._workers.get(uid)
        if worker is not None:
            worker.cancel()

    def snapshot(self) -> list[dict[str, Any]]:
        """The status of every Plan this replica acts on or has run, with its namespace and name."""
        with self._lock:
            workers = list(self._workers.values())
        return [{**w.reporter.status(), "namespace": w.reporter.ref.namespace,
                 "plan": w.reporter.ref.name} for w in workers]

    def running(self) -> int:
        with self._lock:
            return sum(1 for w in self._workers.values() if w.is_alive())
