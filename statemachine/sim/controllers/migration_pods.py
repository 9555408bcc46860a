"""What a migration's phase changes do to pods and which Events they record (§4.5, §5.3-5.4).

:func:`on_phase` is called by the migration controller right after it moves a VMIM to a new
phase, with the VMIM's mutable ``status`` (written by the caller) and its VMI:

| side | phase | pods | events |
|---|---|---|---|
| local, target | ``Scheduling`` | target pod created (label ``kubevirt.io/migrationJobUID``) | VMIM ``SuccessfulCreate`` |
| local, target | ``Scheduled`` | target pod running on node02; VMI ``activePods`` gets it | VMIM ``SuccessfulHandOver`` |
| local, target | ``TargetReady`` | — | VMI ``PreparingTarget`` (virt-handler, target node) |
| local, source | ``Running`` | — | VMI ``Migrating`` (virt-handler, source node) |
| all | ``Succeeded`` | source pod ``Succeeded`` (kept); the target pod is the VMI's pod | VMI ``Migrated``, VMIM ``SuccessfulMigration`` |
| local, target | ``Failed`` | target pod deleted | VMI Warning ``Migrated`` ``… failed. reason:<reason>`` |

The pod names are those the migration state already names (``pods.launcher_name``), so
``migrationState.sourcePod``/``targetPod`` and the pods agree.
"""
from __future__ import annotations

from typing import Any

from statemachine.sim.controller import ClusterContext
from statemachine.sim.controllers import launchers, pods, vmistatus
from statemachine.sim.controllers.migration_sync import VMI, mutate_state
from statemachine.sim.controllers.vmi import node_name
from statemachine.sim.store import Obj


def _target_pod(ctx: ClusterContext, vmim: Obj, status: dict[str, Any], vmi: Obj) -> str:
    """The target pod's name: a receiver's is slot 02 (as ``migration_sides`` names it); a local
    migration's is chosen at Scheduling (a free slot) and kept in the VMIM's migrationState."""
    spec = vmim.get("spec") or {}
    if spec.get("receive") and not spec.get("sendTo"):
        return pods.launcher_name(vmi, ctx.name, "02")
    chosen = (status.get("migrationState") or {}).get("targetPod")
    if chosen:
        return str(chosen)
    ns = vmi["metadata"].get("namespace", "")
    current = launchers.current_name(ctx, vmi)
    for slot in ("02", "01", "03", "04", "05", "06", "07", "08", "09"):
        name = pods.launcher_name(vmi, ctx.name, slot)
        if name != current and not launchers.exists(ctx, ns, name):
            return name
    return pods.launcher_name(vmi, ctx.name, vmim["metadata"]["uid"][:2])


def on_phase(ctx: ClusterContext, vmim: Obj, status: dict[str, Any], vmi: Obj | None,
             which: str, phase: str) -> None:
    if vmi is None:
        return
    vmi = ctx.store.try_get(VMI, vmi["metadata"].get("namespace"), vmi["metadata"]["name"])
    if vmi is None:
        return
    state = (vmi.get("status") or {}).get("migrationState") or {}
    target_node = node_name(ctx, receiver=True)
    receiving = which != "source"
    if phase == "Scheduling" and receiving:
        name = _target_pod(ctx, vmim, status, vmi)
        status.setdefault("migrationState", {}).update(
            {"targetPod": name, "sourcePod": launchers.current_name(ctx, vmi)})
        source_node = str((vmi.get("status") or {}).get("nodeName") or node_name(ctx))
        launchers.create(ctx, vmi, name, migration=vmim, source_node=source_node)
    elif phase == "Scheduled" and receiving:
        entry = launchers.schedule(ctx, vmi, _target_pod(ctx, vmim, status, vmi), target_node)
        ns, vname = vmi["metadata"].get("namespace"), vmi["metadata"]["name"]
        ctx.store.mutate(VMI, ns, vname, lambda o: o.setdefault("status", {}).setdefault(
            "activePods", {}).update(entry))
        launchers.controller_event(ctx, vmim, "Normal", "SuccessfulHandOver",
                                   "Migration target pod is ready for preparation by "
                                   "virt-handler.")
    elif phase == "TargetReady" and receiving:
        launchers.handler_event(ctx, vmi, "Normal", "PreparingTarget",
                                "VirtualMachineInstance Migration Target Prepared.", target_node)
    elif phase == "Running" and which != "target":
        launchers.handler_event(ctx, vmi, "Normal", "Migrating",
                                "VirtualMachineInstance is migrating.",
                                str(state.get("sourceNode") or node_name(ctx)))
    elif phase == "Succeeded":
        _succeeded(ctx, vmim, status, vmi, which, target_node)
    elif phase == "Failed":
        reason = str((status.get("migrationState") or {}).get("failureReason")
                     or state.get("failureReason") or "")
        launchers.handler_event(ctx, vmi, "Warning", "Migrated",
                                f"VirtualMachineInstance migration uid {vmim['metadata']['uid']} "
                                f"failed. reason:{reason}")
        if receiving:
            launchers.delete(ctx, vmi, _target_pod(ctx, vmim, status, vmi), event=False)


def _succeeded(ctx: ClusterContext, vmim: Obj, status: dict[str, Any], vmi: Obj, which: str,
               target_node: str) -> None:
    ns, vname = vmi["metadata"].get("namespace", ""), vmi["metadata"]["name"]
    if which == "local":
        target = _target_pod(ctx, vmim, status, vmi)
        source = str((status.get("migrationState") or {}).get("sourcePod")
                     or pods.launcher_name(vmi, ctx.name, "01"))
        launchers.finish(ctx, vmi, source)
        pod = ctx.store.try_get("Pod", ns, target)
        active = {pod["metadata"]["uid"]: target_node} if pod is not None else {}
        mutate_state(ctx, vmi, lambda ms: ms.update({"targetPod": target, "sourcePod": source}))
        # The target handler reports the migrated domain's interfaces (same MACs) from the
        # target pod: its IP.
        moved = {"activePods": active, "interfaces": vmistatus.running_interfaces(
            vmi, str(((pod or {}).get("status") or {}).get("podIP") or ""), keep_macs=True)}
        ctx.store.mutate(VMI, ns, vname, lambda o: o.setdefault("status", {}).update(
            {k: v for k, v in moved.items() if v != []}))
    elif which == "source":
        launchers.finish(ctx, vmi, launchers.current_name(ctx, vmi))
    else:
        pod = ctx.store.try_get("Pod", ns, _target_pod(ctx, vmim, status, vmi))
        if pod is not None:
            ctx.store.mutate(VMI, ns, vname, lambda o: o.setdefault("status", {}).update(
                {"activePods": {pod["metadata"]["uid"]: target_node}}))
    state = (vmi.get("status") or {}).get("migrationState") or {}
    node = str(((state.get("targetState") or {}).get("node")) or target_node)
    launchers.handler_event(ctx, vmi, "Normal", "Migrated",
                            f"The VirtualMachineInstance migrated to node {node}.", node)
    launchers.controller_event(ctx, vmim, "Normal", "SuccessfulMigration",
                               "Source node reported migration succeeded")
