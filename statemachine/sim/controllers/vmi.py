"""The simulated VMI lifecycle (virt-controller's VMI controller plus virt-handler), one phase a tick.

Ordinary VMIs: ``"" → Pending → Scheduling → Scheduled → Running`` (kubevirt-lifecycle.md §2.1, §3.4):
``Ready=False/PodNotExists`` until "the pod" exists, ``False/GuestNotRunning`` while it starts, and
``True`` once Running, when ``LiveMigratable`` and ``StorageLiveMigratable`` are computed (§3.1-3.2)
and ``status.nodeName`` is set. A VMI created through the API already is ``Pending`` (the VMI
mutating webhook, ``webhooks.py``). The virt-launcher pod (``launchers.py``) is created at
``Scheduling`` and runs from ``Scheduled`` (``status.activePods``); a running VMI without one (a
seeded VMI) gets one at once. Events (kubevirt-fidelity.md §5.2-5.3): ``SuccessfulCreate`` (pod,
virtualmachine-controller), ``Created`` and ``Started`` (virt-handler) on the way up;
``ShuttingDown`` and ``Stopped`` on deletion, then ``SuccessfulDelete`` for the pod.

The other status fields come from ``vmistatus.py``, written with the phase change they belong to:
``qosClass`` and ``launcherContainerImageVersion`` at ``Scheduling``, the primary interface, the
volumes' claim info and ``migrationTransport`` at ``Scheduled``, the handler's report (interfaces
with the pod's IP, disk targets, ``migrationMethod``, ``selinuxContext``, ``machine``) at
``Running``; a seeded running VMI gets whatever it lacks once.

Receiver VMIs (annotation ``kubevirt.io/create-migration-target: "true"``): ``Pending`` (or ``""``)
``→ WaitingForSync`` only; every later phase belongs to the decentralized migration (``migration.py``), which moves the
VMI as the target pod appears and the migration completes or fails.

Deletion: a VMI that is still running first turns ``Succeeded`` (the guest shut down, its pod
``Succeeded``), then its pods are deleted and its finalizers removed on the next tick; a final,
unstarted or waiting receiver VMI loses its finalizers at once.

What it does not do: scheduling constraints, guest agents, freeze/reset subresources.
"""
from __future__ import annotations

from typing import Any

from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim.controllers import launchers, vmistatus
from statemachine.sim.controllers.conditions import (
    annotations_of, get_condition, remove_condition, set_condition)
from statemachine.sim.store import Obj

RECEIVER_ANNOTATION = "kubevirt.io/create-migration-target"
VM_FINALIZER = "kubevirt.io/virtualMachineControllerFinalize"
FINAL_PHASES = ("Succeeded", "Failed")
_NEXT = {"": "Pending", "Pending": "Scheduling", "Scheduling": "Scheduled", "Scheduled": "Running"}


def node_name(ctx: ClusterContext, *, receiver: bool = False) -> str:
    """The simulated node a VMI of this cluster runs on (targets of migrations use a second node)."""
    return f"{ctx.name}-node02" if receiver else f"{ctx.name}-node01"


def is_receiver(vmi: Obj) -> bool:
    return annotations_of(vmi).get(RECEIVER_ANNOTATION) == "true"


def claim_names(vmi_or_template_spec: dict[str, Any]) -> list[str]:
    """PVC names behind the ``persistentVolumeClaim``/``dataVolume`` volumes of a VMI spec."""
    out = []
    for vol in vmi_or_template_spec.get("volumes") or []:
        if "persistentVolumeClaim" in vol:
            out.append(str(vol["persistentVolumeClaim"].get("claimName", "")))
        elif "dataVolume" in vol:
            out.append(str(vol["dataVolume"].get("name", "")))
    return [c for c in out if c]


def migratability(ctx: ClusterContext, vmi: Obj) -> tuple[dict[str, str], dict[str, str]]:
    """(LiveMigratable, StorageLiveMigratable) condition fields for a running VMI (§3.1-3.2)."""
    spec = vmi.get("spec") or {}
    ns = vmi["metadata"].get("namespace")
    pod_nets = {n.get("name") for n in spec.get("networks") or [] if "pod" in n}
    for iface in (spec.get("domain") or {}).get("devices", {}).get("interfaces") or []:
        if iface.get("name") in pod_nets and "bridge" in iface and not annotations_of(vmi).get(
                "kubevirt.io/allow-pod-bridge-network-live-migration"):
            reason = "InterfaceNotLiveMigratable"
            msg = ("cannot migrate VMI which does not use masquerade or a migratable plugin to "
                   "connect to the pod network")
            return ({"status": "False", "reason": reason, "message": msg},
                    {"status": "False", "reason": "NotMigratable", "message": f"{reason}: {msg}"})
    for claim in claim_names(spec):
        pvc = ctx.store.peek("PersistentVolumeClaim", ns, claim)  # read-only: access modes
        modes = ((pvc or {}).get("spec") or {}).get("accessModes") or []
        if "ReadWriteMany" not in modes:
            msg = (f"cannot migrate VMI: PVC {claim} is not shared, live migration requires that "
                   "all PVCs must be shared (using ReadWriteMany access mode)")
            return ({"status": "False", "reason": "DisksNotLiveMigratable", "message": msg},
                    {"status": "True"})
    return {"status": "True"}, {"status": "True"}


class VirtualMachineInstanceController(Controller):
    """Advances VMIs one phase per tick (see module docstring)."""

    watches = ("VirtualMachineInstance",)
    # It reads the VMI: the status it edits is a shallow copy changed only at the top level
    # (set_condition/remove_condition build new lists), and the pods it creates are new bodies.
    reads_only = True

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        md = obj["metadata"]
        ns, name = md.get("namespace"), md["name"]
        status: dict[str, Any] = dict(obj.get("status") or {})
        phase = status.get("phase", "")
        if md.get("deletionTimestamp"):
            return self._deleting(ctx, obj, phase)
        if is_receiver(obj):
            if phase in ("", "Pending"):
                status["phase"] = "WaitingForSync"
                set_condition(status, "Ready", "False", "PodNotExists",
                              "virt-launcher pod has not yet been scheduled")
                vmistatus.stamp_phase(status)
                ctx.store.update_status("VirtualMachineInstance", ns, name, status, copy=False)
            return None  # the migration controller owns the rest
        if phase in _NEXT:
            nxt = _NEXT[phase]
            status["phase"] = nxt
            if nxt == "Pending":
                set_condition(status, "Ready", "False", "PodNotExists",
                              "virt-launcher pod has not yet been scheduled")
            elif nxt == "Scheduling":
                set_condition(status, "Ready", "False", "GuestNotRunning",
                              "Guest VM is not reported as running")
                pod = launchers.current_name(ctx, obj)
                launchers.create(ctx, obj, pod)
                status.update(vmistatus.scheduling_fields(ctx.store.peek("Pod", ns, pod)))
            elif nxt == "Scheduled":
                status["nodeName"] = node_name(ctx)
                status["activePods"] = launchers.schedule(
                    ctx, obj, launchers.current_name(ctx, obj), status["nodeName"])
                status.update(vmistatus.scheduled_fields(ctx, obj))
            else:
                # virt-handler's first report of the running domain, once.
                ip = vmistatus.pod_ip(ctx, ns or "", launchers.current_name(ctx, obj))
                status.update(vmistatus.handler_fields(ctx, obj, status, ip))
                self._running_status(ctx, obj, status)
            vmistatus.stamp_phase(status)
            ctx.store.update_status("VirtualMachineInstance", ns, name, status, copy=False)
            if nxt == "Running":
                launchers.handler_event(ctx, obj, "Normal", "Created",
                                        "VirtualMachineInstance defined.", status["nodeName"])
                launchers.handler_event(ctx, obj, "Normal", "Started",
                                        "VirtualMachineInstance started.", status["nodeName"])
            if nxt == "Scheduled":
                ctx.store.mutate("VirtualMachineInstance", ns, name, lambda o: o["metadata"]
                                 .setdefault("labels", {}).update(
                                     {"kubevirt.io/nodeName": status["nodeName"]}))
            return True
        if phase == "Running" and not is_receiver(obj):
            before = dict(status)
            pod = launchers.current_name(ctx, obj)
            if not launchers.exists(ctx, ns or "", pod):  # e.g. a seeded running VMI
                status["activePods"] = launchers.running_since_start(
                    ctx, obj, pod, str(status.get("nodeName") or node_name(ctx)))
            self._running_status(ctx, obj, status)
            vmistatus.fill_missing(ctx, obj, status, pod)
            if status != before:
                ctx.store.update_status("VirtualMachineInstance", ns, name, status, copy=False)
        return None

    def _running_status(self, ctx: ClusterContext, vmi: Obj, status: dict[str, Any]) -> None:
        status.setdefault("nodeName", node_name(ctx))
        set_condition(status, "Ready", "True")
        live, storage = migratability(ctx, vmi)
        for ctype, fields in (("LiveMigratable", live), ("StorageLiveMigratable", storage)):
            set_condition(status, ctype, fields["status"], fields.get("reason", ""),
                          fields.get("message", ""))
        spec = vmi.get("spec") or {}
        dvs = [v["dataVolume"]["name"] for v in spec.get("volumes") or [] if "dataVolume" in v]
        if dvs:
            set_condition(status, "DataVolumesReady", "True", "AllDVsReady")
        else:
            remove_condition(status, "DataVolumesReady")

    def _deleting(self, ctx: ClusterContext, vmi: Obj, phase: str) -> bool | None:
        md = vmi["metadata"]
        ns, name = md.get("namespace"), md["name"]
        if phase in ("Pending", "Scheduling", "Scheduled", "Running") and not is_receiver(vmi):
            status = dict(vmi.get("status") or {})
            status["phase"] = "Succeeded"
            set_condition(status, "Ready", "False", "PodTerminating",
                          "virt-launcher pod is terminating")
            vmistatus.stamp_phase(status)
            ctx.store.update_status("VirtualMachineInstance", ns, name, status, copy=False)
            if phase == "Running":
                launchers.handler_event(ctx, vmi, "Normal", "ShuttingDown",
                                        "Signaled Graceful Shutdown")
                launchers.handler_event(ctx, vmi, "Normal", "Stopped",
                                        "The VirtualMachineInstance was shut down.")
            for pod in launchers.owned(ctx, vmi):
                launchers.finish(ctx, vmi, pod)
            return True
        for pod in launchers.owned(ctx, vmi):
            launchers.delete(ctx, vmi, pod)
        vmistatus.forget(ctx, vmi)
        if md.get("finalizers"):
            ctx.store.mutate("VirtualMachineInstance", ns, name,
                             lambda o: o["metadata"].pop("finalizers", None))
        return None


def ready_condition(vmi: Obj | None) -> dict[str, Any] | None:
    return get_condition((vmi or {}).get("status"), "Ready")
