"""smrun's execution engine: runs a plan's VMs through an itinerary over two clusters.

Command-line entry points (called by ``statemachine.cli``; each returns an exit code or rows):

- :func:`run` — lock the plan, connect, preflight, run (resume/rerun from the journal), report;
- :func:`status` — per-VM state from the journal;
- :func:`cancel` — ask the running ``smrun run`` to cancel VMs (undo, then Canceled);
- :func:`preflight` — the cluster checks of ``smrun validate``.

Library use: :class:`Engine` with injected clusters (see docs/engine.md). Inside the package:
``core`` (Engine), ``runner`` (one VM's flow), ``actions``, ``scheduler`` (the loop), ``journal``,
``runtime`` (the only ``transitions`` importer), ``connect``, ``preflight``, ``progress``.
"""
from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Any

# The submodule ``preflight`` is imported first on purpose: the function of the same name below
# must be what ``statemachine.engine.preflight`` means (a later submodule import would rebind it).
from statemachine.engine import preflight as _checks  # noqa: I001
from statemachine.engine.core import Engine, RunResult, VmResult
from statemachine.engine.journal import Journal, request_cancel
from statemachine.errors import PreflightError

__all__ = ["Engine", "Journal", "RunResult", "VmResult", "cancel", "preflight", "run", "status"]

logger = logging.getLogger("statemachine.engine")


def _print_findings(findings: Any, stream: IO[str]) -> None:
    for w in findings.warnings:
        stream.write(f"warning: {w}\n")
    if findings.rules:
        stream.write("Role rules that would close the permission gaps:\n")
        stream.write("\n".join(findings.rules) + "\n")
    stream.flush()


def _refuse(findings: Any) -> None:
    raise PreflightError("preflight refused the plan; nothing was applied", findings.problems)


def run(plan: Any, itinerary: Any, *, state_dir: Path, max_in_flight: int | None = None,
        vms: list[str] | None = None, output: str = "text", stream: IO[str] | None = None,
        resync: float | None = None) -> int:
    """Run (or resume) ``plan``; returns 0 when every VM completed, 1 otherwise.

    Raises ``LockHeld`` (exit 2) when another run holds the plan, ``PreflightError`` or
    ``ClusterUnreachable`` (exit 3) before anything is applied.
    """
    import sys

    from statemachine.engine import adapt
    from statemachine.engine.connect import connect_plan
    from statemachine.engine.progress import renderer_for

    stream = stream or sys.stdout
    journal = Journal.for_plan(Path(state_dir), plan.name)
    journal.lock()
    try:
        if plan.simulation is not None:
            journal.reset()  # fresh simulated clusters every run: the journal belongs to this run
        elif (journal.dir / "cancel.json").exists():
            (journal.dir / "cancel.json").unlink()  # a stale request must not cancel this run
        # Before any cluster is contacted: the journal opens for appending and the disk has room
        # (StateDirError, exit 4, otherwise). Nothing is applied without a writable journal.
        journal.probe()
        replay = journal.read()  # a corrupt journal is found before any cluster is contacted
        with connect_plan(plan, cache_dir=journal.dir / "cache") as conn:
            clusters = {"source": conn.source, "target": conn.target}
            selected = [v for v in plan.vms if not vms or v.name in vms or f"{v.namespace}/{v.name}" in vms]
            fresh = [v for v in selected
                     if (rec := replay.vms.get(f"{v.namespace}/{v.name}")) is None
                     or rec.predicates is None or rec.terminal in ("Failed", "Canceled")]
            setup_rec = replay.vms.get("")
            setup_fresh = setup_rec is None or setup_rec.terminal != "Completed"
            # What preflight reads, the engine reuses for VMs that start soon after it.
            prefetched = _checks.ClusterReads(clusters)
            if fresh or setup_fresh:
                findings = _checks.run_checks(plan, itinerary, clusters, vms=fresh, setup=setup_fresh,
                                              servers=conn.servers, reads=prefetched)
                _print_findings(findings, sys.stderr if output == "json" else stream)
                if findings.blocking:
                    _refuse(findings)
            env_resync = os.environ.get("SMRUN_RESYNC_SECONDS")
            engine = Engine(plan, itinerary, source=conn.source, target=conn.target, journal=journal,
                            on_event=renderer_for(output, stream), max_in_flight=max_in_flight,
                            vms=vms, context=adapt.context_builder(conn.servers),
                            resync=resync or (float(env_resync) if env_resync else 2.0),
                            # a stale cancel file was removed above: one present now was
                            # written by `smrun cancel` during preflight
                            cancel_file_is_fresh=True, prefetched=prefetched)
            return engine.run().exit_code
    finally:
        journal.close()


def preflight(plan: Any, itinerary: Any, *, stream: IO[str]) -> int:
    """Cluster checks for ``smrun validate``: 0 when nothing blocks; raises PreflightError (3)."""
    from statemachine.engine.connect import connect_plan

    with connect_plan(plan) as conn:
        findings = _checks.run_checks(plan, itinerary, {"source": conn.source, "target": conn.target},
                              servers=conn.servers)
    _print_findings(findings, stream)
    if findings.blocking:
        _refuse(findings)
    stream.write(f"preflight: {len(plan.vms)} VMs: clusters reachable, kinds served, reads resolved, "
                 "permissions sufficient\n")
    return 0


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


def status(plan: Any, *, state_dir: Path) -> list[dict[str, Any]]:
    """One row per VM of the plan: ``vm``, ``phase``, ``state``, ``message``, ``outputs``."""
    journal = Journal.for_plan(Path(state_dir), plan.name)
    replay = journal.read()
    running = _running(journal.dir)
    rows = []
    for v in plan.vms:
        key = f"{v.namespace}/{v.name}"
        rec = replay.vms.get(key)
        if rec is None or rec.predicates is None:
            phase, state, message, outputs = "Pending", "", "", {}
        else:
            phase = rec.terminal or ("Running" if running else "Interrupted")
            if rec.undoing and not rec.terminal:
                phase = "Canceling" if rec.undoing == "canceled" else "Failing"
            state = "Completed" if rec.terminal == "Completed" else (rec.last_entered or "")
            message, outputs = rec.message, rec.outputs
        rows.append({"vm": key, "phase": phase, "state": state, "message": message,
                     "outputs": outputs, "run": replay.run_id})
    return rows


def cancel(plan: Any, *, state_dir: Path, vms: list[str] | None = None) -> int:
    """Ask the running ``smrun run`` of ``plan`` to cancel ``vms`` (default: all). 0 if sent."""
    directory = Path(state_dir) / plan.name
    if not _running(directory):
        print(f"smrun: no 'smrun run' of plan {plan.name} is in progress (state dir {state_dir}); "
              "nothing to cancel")
        return 1
    request_cancel(directory, vms or None)
    which = "all VMs" if not vms else ", ".join(vms)
    print(f"cancel requested for {which} of plan {plan.name}; the running smrun undoes them")
    return 0


