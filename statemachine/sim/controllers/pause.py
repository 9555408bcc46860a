"""Paused VMIs: ``startStrategy: Paused`` and the ``pause`` subresource.

- A VMI whose spec asks for ``startStrategy: Paused`` reaches ``Running`` and then reports the
  condition ``Paused=True`` (reason ``PausedByUser``), as virt-handler does for a guest started
  paused. The warm itinerary's default cutover (restartPaused) waits for exactly that.
- ``PUT .../virtualmachineinstances/<name>/pause`` is served (``statemachine/sim/subresources.py``),
  but simulated Jobs run no containers, so a Job that calls it from inside the cluster (smrun's
  warm cutover) is modelled on the caller: when a Job whose container env ``VMI_PATH`` ends in
  ``/pause`` completes, the VMI it names becomes ``Paused=True``.

Neither unpauses anything; a VMI that is stopped and started again starts fresh.
"""
from __future__ import annotations

from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim.controllers.conditions import get_condition, set_condition
from statemachine.sim.store import Obj

_PAUSED = ("Paused", "True", "PausedByUser", "VMI was paused by user")


def _pause(ctx: ClusterContext, vmi: Obj) -> None:
    status = dict(vmi.get("status") or {})
    set_condition(status, *_PAUSED)
    md = vmi["metadata"]
    ctx.store.update_status("VirtualMachineInstance", md.get("namespace"), md["name"], status)


class PausedStartController(Controller):
    """A running VMI that asked for a paused start reports ``Paused=True``."""

    watches = ("VirtualMachineInstance",)
    reads_only = True  # it reads the VMI; ``_pause`` writes a new status through the store

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        status = obj.get("status") or {}
        if (obj.get("spec") or {}).get("startStrategy") == "Paused" \
                and status.get("phase") == "Running" and get_condition(status, "Paused") is None:
            _pause(ctx, obj)
        return None


class PauseJobController(Controller):
    """The effect of a completed Job that called a VMI's ``pause`` subresource."""

    watches = ("Job",)

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        conditions = (obj.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions):
            return None
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        paths = [e.get("value", "") for c in pod.get("containers") or [] for e in c.get("env") or []
                 if e.get("name") == "VMI_PATH"]
        if not paths or not paths[0].endswith("/pause"):
            return None
        parts = paths[0].split("/")
        if "namespaces" not in parts:
            return None
        ns, name = parts[parts.index("namespaces") + 1], parts[-2]
        vmi = ctx.store.try_get("VirtualMachineInstance", ns, name)
        if vmi is not None and get_condition(vmi.get("status"), "Paused") is None:
            _pause(ctx, vmi)
        return None
