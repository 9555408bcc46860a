"""What ``smrun run|validate|status|cancel`` do with a loaded plan: compose, call, report.

This is the command-line side of the engine. It takes the plan's lock, connects to its clusters
(starting simulated ones for ``spec.simulation``, :mod:`statemachine.clusters`), runs preflight,
builds the :class:`~statemachine.engine.Engine` with its settings and an output renderer, and
prints what a person needs (preflight warnings, the suggested Role rules, status rows, cancel
acknowledgements). The engine itself composes nothing, reads no environment and prints nothing.
Exit codes and one-line errors stay in ``statemachine.cli``.
"""
from __future__ import annotations

import fcntl
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from statemachine import gcpolicy, reruns
from statemachine.clusters import Pending, connect_ahead, connect_plan
from statemachine.engine.journal import Journal, request_cancel
from statemachine.errors import PreflightError
from statemachine.plan import Plan

if TYPE_CHECKING:
    from statemachine.engine import preflight as checks
    from statemachine.itinerary import Itinerary

# The engine and its preflight are imported inside the functions that use them: `smrun run`
# locks the journal and starts connecting (start) before it needs them (issue 17).

__all__ = ["Started", "cancel", "diff", "preflight", "run", "server_dry_run", "start", "status"]


def _print_findings(findings: checks.Findings, stream: IO[str]) -> None:
    for w in findings.warnings:
        stream.write(f"warning: {w}\n")
    if findings.rules:
        stream.write("Role rules that would close the permission gaps:\n")
        stream.write("\n".join(findings.rules) + "\n")
    stream.flush()


def _refuse(findings: checks.Findings) -> None:
    raise PreflightError("preflight refused the plan; nothing was applied", findings.problems)


@dataclass
class Started:
    """``smrun run``'s first steps, taken as soon as the plan is loaded (:func:`start`): the plan's
    journal locked, and its clusters being connected (kubeconfig plans; ``None`` for simulated
    ones, which start in this process later)."""

    journal: Journal
    clusters: Pending | None

    def close(self) -> None:
        """Give both up (the run did not go ahead)."""
        if self.clusters is not None:
            self.clusters.abandon()
        self.journal.close()


def start(plan: Plan, *, state_dir: Path) -> Started:
    """Lock ``plan``'s journal and start connecting its clusters, before the itinerary is loaded
    (:func:`statemachine.clusters.connect_ahead`); hand the result to :func:`run`. The lock comes
    first: a second ``smrun run`` of the plan is refused before it touches the discovery cache in
    the journal's folder. Raises ``LockHeld`` (exit 2) or ``StateDirError`` (exit 4)."""
    journal = Journal.for_plan(Path(state_dir), plan.name)
    journal.lock()
    try:
        clusters = (None if plan.simulation is not None
                    else connect_ahead(plan, cache_dir=journal.dir / "cache"))
    except BaseException:
        journal.close()
        raise
    return Started(journal, clusters)


def run(plan: Plan, itinerary: Itinerary, *, state_dir: Path, max_in_flight: int | None = None,
        vms: list[str] | None = None, output: str = "text", stream: IO[str] | None = None,
        resync: float | None = None, new_run: bool = False, started: Started | None = None) -> int:
    """Run (or resume) ``plan``; returns 0 when every VM completed, 1 otherwise.

    Raises ``LockHeld`` (exit 2) when another run holds the plan, ``UsageError`` (exit 2) when
    its journal was written against other clusters, ``PreflightError`` or ``ClusterUnreachable``
    (exit 3) before anything is applied. A journal that says every VM completed is reported
    (exit 0) and nothing runs; ``new_run`` keeps the journal as history and starts afresh
    (:mod:`statemachine.reruns`). ``started``: what :func:`start` did for this plan (its journal
    locked, its clusters being connected); without it, ``run`` does both itself.
    """
    stream = stream or sys.stdout
    notes = sys.stderr if output == "json" else stream
    if started is None:
        started = Started(Journal.for_plan(Path(state_dir), plan.name), None)
        started.journal.lock()
    journal = started.journal
    try:
        if plan.simulation is not None:
            journal.reset()  # fresh simulated clusters every run: the journal belongs to this run
        elif (journal.dir / "cancel.json").exists():
            (journal.dir / "cancel.json").unlink()  # a stale request must not cancel this run
        if new_run and plan.simulation is None:
            kept = reruns.start_new_run(Path(journal.path), journal.read())
            if kept is not None:
                notes.write(f"plan {plan.name}: starting a new run; the previous journal is kept "
                            f"as {kept}\n")
        # Before anything is applied: the journal opens for appending and the disk has room
        # (StateDirError, exit 4, otherwise). Nothing is applied without a writable journal.
        # (Connecting, started by start(), only reads; its errors are raised just below.)
        journal.probe()
        replay = journal.read()  # a corrupt journal is refused before the clusters are used
        connection = (started.clusters.result() if started.clusters is not None
                      else connect_plan(plan, cache_dir=journal.dir / "cache"))
        with connection as conn:
            from statemachine.engine.core import Engine, EngineSettings
            from statemachine.engine.progress import renderer_for

            gcpolicy.settle()  # start-up is over: imports, plan, itinerary, cluster clients
            clusters = {"source": conn.source, "target": conn.target}
            selected = [v for v in plan.vms if not vms or v.name in vms or v.ref in vms]
            identity = reruns.identities(clusters, conn.servers)
            for warning in reruns.check_same_clusters(replay, identity, Path(journal.path)):
                notes.write(f"warning: {warning}\n")
            done = reruns.completed_line(plan, replay, selected, setup=bool(itinerary.setup.states))
            if done is not None:
                notes.write(done + "\n")
                return 0
            # What preflight reads and computes for each VM, the engine reuses for VMs that start
            # soon after it; preflight works in the run's context (its id, chosen here).
            scope = reruns.preflight_scope(replay, selected, clusters)
            if scope.needed:
                findings = scope.check(plan, itinerary, servers=conn.servers)
                _print_findings(findings, sys.stderr if output == "json" else stream)
                if findings.blocking:
                    _refuse(findings)
            settings = EngineSettings(
                max_in_flight=max_in_flight, vms=tuple(vms or ()),
                resync=resync if resync is not None else EngineSettings.resync,
                # a stale cancel file was removed above: one present now was written by
                # `smrun cancel` during preflight
                cancel_file_is_fresh=True, clusters=identity)
            engine = Engine(plan, itinerary, source=conn.source, target=conn.target,
                            journal=journal, settings=settings,
                            on_event=renderer_for(output, stream), servers=conn.servers,
                            prefetched=scope.reads, run_id=scope.run_id)
            return engine.run().exit_code
    finally:
        started.close()


def preflight(plan: Plan, itinerary: Itinerary, *, stream: IO[str],
              clusters: Pending | None = None) -> int:
    """Cluster checks for ``smrun validate``: 0 when nothing blocks; raises PreflightError (3).
    ``clusters``: the plan's clusters already being connected (``connect_ahead``)."""
    from statemachine.engine import preflight as checks

    with (clusters.result() if clusters is not None else connect_plan(plan)) as conn:
        gcpolicy.settle()
        findings = checks.run_checks(plan, itinerary,
                                     {"source": conn.source, "target": conn.target},
                                     servers=conn.servers)
    _print_findings(findings, stream)
    if findings.blocking:
        _refuse(findings)
    stream.write(f"preflight: {len(plan.vms)} VMs: clusters reachable, kinds served, reads "
                 "resolved, permissions sufficient\n")
    return 0


def render_live(plan: Plan, itinerary: Itinerary, *, vms: list[str] | None = None) -> list[Any]:
    """What the plan would apply, with the reads resolved from its clusters (GETs only: nothing
    is written), for ``smrun render`` of a plan without ``spec.simulation``."""
    from statemachine.render import render_plan

    from statemachine.engine import preflight as checks

    with connect_plan(plan) as conn:
        reads = checks.ClusterReads({"source": conn.source, "target": conn.target})
        return render_plan(plan, itinerary, reads, vms=vms)


def diff(plan: Plan, itinerary: Itinerary, *, vms: list[str] | None = None,
         state: str | None = None) -> int:
    """``smrun diff``: what the first states would change on the clusters (GETs only);
    :mod:`statemachine.diff.report`."""
    from statemachine.diff import report

    with connect_plan(plan) as conn:
        return report.diff(plan, itinerary, {"source": conn.source, "target": conn.target},
                           out=sys.stdout, err=sys.stderr, vms=vms, state=state)


def server_dry_run(plan: Plan, itinerary: Itinerary) -> int:
    """``smrun validate --server-dry-run``: the first states' writes with ``dryRun=All``."""
    from statemachine.diff import report

    contexts = {"source": plan.source.context or "source",
                "target": plan.target.context or "target"} if plan.simulation is None else {}
    with connect_plan(plan) as conn:
        return report.validate_server_dry_run(
            plan, itinerary, {"source": conn.source, "target": conn.target},
            out=sys.stdout, err=sys.stderr, contexts=contexts)


def _running(directory: Path) -> bool:
    lock = directory / "lock"
    try:
        fd = os.open(lock, os.O_RDONLY)  # read-only: works on a read-only state directory too
    except OSError:
        return False  # no lock file (or none we can open): no run holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def status(plan: Plan, *, state_dir: Path) -> list[dict[str, Any]]:
    """One row per VM of the plan: ``vm``, ``phase``, ``state``, ``message``, ``outputs``."""
    journal = Journal.for_plan(Path(state_dir), plan.name)
    replay = journal.read()
    running = _running(journal.dir)
    rows = []
    for v in plan.vms:
        rec = replay.vms.get(v.ref)
        if rec is None or rec.predicates is None:
            phase, state, message, outputs = "Pending", "", "", {}
        else:
            phase = rec.terminal or ("Running" if running else "Interrupted")
            if rec.undoing and not rec.terminal:
                phase = "Canceling" if rec.undoing == "canceled" else "Failing"
            state = "Completed" if rec.terminal == "Completed" else (rec.last_entered or "")
            message, outputs = rec.message, rec.outputs
        rows.append({"vm": v.ref, "phase": phase, "state": state, "message": message,
                     "outputs": outputs, "run": replay.run_id})
    return rows


def cancel(plan: Plan, *, state_dir: Path, vms: list[str] | None = None,
           stream: IO[str] | None = None) -> int:
    """Ask the running ``smrun run`` of ``plan`` to cancel ``vms`` (default: all). 0 if sent."""
    stream = stream or sys.stdout
    directory = Path(state_dir) / plan.name
    if not _running(directory):
        stream.write(f"smrun: no 'smrun run' of plan {plan.name} is in progress (state dir "
                     f"{state_dir}); nothing to cancel\n")
        return 1
    request_cancel(directory, vms or None)
    which = "all VMs" if not vms else ", ".join(vms)
    stream.write(f"cancel requested for {which} of plan {plan.name}; the running smrun undoes "
                 "them\n")
    return 0
