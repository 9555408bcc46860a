"""One tick of each side of a migration: which phase comes next and what the VMI gets.

``source_step``, ``target_step`` and ``local_step`` take the VMIM, a mutable copy of its
``status`` and its VMI, and return the next phase (or ``None`` to stay). They may write the VMI
(as virt-controller's ``sync()`` and virt-handler do) but never the VMIM: the caller writes the
VMIM status once. Predicates follow kubevirt-lifecycle.md §1.4; the writes follow §1.6 and §8.1.
The handler-side work that upstream does between two controller phases (target proxy address,
migration start, domain ready/completion) is done at the start of the tick that needs it, and the
phase moves on the following tick.
"""
from __future__ import annotations

from typing import Any

from statemachine.sim.controller import ClusterContext
from statemachine.sim.controllers import vmistatus
from statemachine.sim.controllers.conditions import now, remove_condition, set_condition
from statemachine.sim.controllers.migration_sync import VMI, mutate_state
from statemachine.sim.controllers.vmi import RECEIVER_ANNOTATION, claim_names, node_name
from statemachine.sim.store import Obj

FINAL = ("Succeeded", "Failed")
BLOCKED = "DecentralizedLiveMigrationFailure"
WAITING_MESSAGE = "waiting for incoming synchronization, unable to proceed"
TARGET_ADDRESS = "10.244.1.20"
_LOCAL_ORDER = ("Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running",
                "Succeeded")


def _state(vmi: Obj) -> dict[str, Any]:
    return dict((vmi.get("status") or {}).get("migrationState") or {})


def _pod(vmi: Obj, cluster: str, suffix: str) -> str:
    return f"virt-launcher-{vmi['metadata']['name']}-{cluster[:3]}{suffix}"


def _set_vmi(ctx: ClusterContext, vmi: Obj, change: Any) -> None:
    """Apply ``change`` to the stored VMI; a phase it enters gets its transition timestamp."""
    md = vmi["metadata"]

    def changed(o: Obj) -> None:
        change(o)
        vmistatus.stamp_phase(o.setdefault("status", {}))
    ctx.store.mutate(VMI, md.get("namespace"), md["name"], changed, copy=False)  # result dropped


# ---------------------------------------------------------------------------- source side
def source_start(ctx: ClusterContext, vmim: Obj, vmi: Obj) -> None:
    """``"" → Synchronizing``: reset the source VMI's migrationState (§1.6 step 7)."""
    md, uid = vmi["metadata"], vmim["metadata"]["uid"]
    url = str(((vmim.get("spec") or {}).get("sendTo") or {}).get("connectURL", ""))

    def reset(o: Obj) -> None:
        o.setdefault("status", {})["migrationState"] = {
            "sourceState": {"migrationUID": uid, "virtualMachineInstanceUID": md["uid"],
                            "domainName": md["name"], "domainNamespace": md.get("namespace")},
            "targetState": {"syncAddress": url}}
    _set_vmi(ctx, vmi, reset)


def source_step(ctx: ClusterContext, vmim: Obj, status: dict[str, Any], vmi: Obj) -> str | None:
    phase = status.get("phase", "")
    state = _state(vmi)
    target = state.get("targetState") or {}
    uid = vmim["metadata"]["uid"]
    vmi_phase = (vmi.get("status") or {}).get("phase", "")
    if state.get("failed") and phase != "":
        return "Failed"
    if phase == "Synchronizing":
        return "Pending" if target.get("migrationUID") else None
    if phase == "Pending":
        status.setdefault("migrationState", {})["sourcePod"] = _pod(vmi, ctx.name, "01")
        if vmi_phase != "Running":
            return None
        node = (vmi.get("status") or {}).get("nodeName") or node_name(ctx)
        pod = _pod(vmi, ctx.name, "01")
        volumes = claim_names(vmi.get("spec") or {})

        def scheduling(o: Obj) -> None:
            st = o.setdefault("status", {})
            ms = st.setdefault("migrationState", {})
            ms.update({"sourceNode": node, "sourcePod": pod, "migrationUid": uid})
            ms.setdefault("sourceState", {}).update(
                {"node": node, "pod": pod, "nodeSelectors": {"kubernetes.io/arch": "amd64"}})
            st["migratedVolumes"] = [{"volumeName": v, "sourcePVCInfo": {"claimName": v},
                                      "destinationPVCInfo": {"claimName": v}} for v in volumes]
            st["migrationMethod"] = "BlockMigration"
        _set_vmi(ctx, vmi, scheduling)
        return "Scheduling"
    if phase == "Scheduling":
        return "Scheduled" if target.get("pod") else None
    if phase == "Scheduled":
        return "PreparingTarget" if target.get("pod") and target.get("node") else None
    if phase == "PreparingTarget":
        return "TargetReady" if target.get("nodeAddress") else None
    if phase == "TargetReady":
        if not state.get("startTimestamp"):
            mutate_state(ctx, vmi, lambda ms: ms.update({"startTimestamp": now(),
                                                         "mode": "PreCopy"}))
            return None
        return "Running"
    if phase == "Running" and state.get("completed"):
        if vmi_phase != "Succeeded":
            def done(o: Obj) -> None:
                st = o.setdefault("status", {})
                st["phase"] = "Succeeded"
                set_condition(st, "Ready", "False", "PodTerminating",
                              "virt-launcher pod is terminating")
            _set_vmi(ctx, vmi, done)
            return None
        return "Succeeded"
    return None


# ---------------------------------------------------------------------------- target side
def target_start(ctx: ClusterContext, vmim: Obj, vmi: Obj) -> None:
    """``"" → WaitingForSync``: initialise the target state and the waiting condition (steps 4-5)."""
    uid = vmim["metadata"]["uid"]

    def init(o: Obj) -> None:
        st = o.setdefault("status", {})
        st["migrationState"] = {"targetState": {"migrationUID": uid, "pod": "", "node": ""}}
        set_condition(st, BLOCKED, "True", "DecentralizedNotLiveMigratable", WAITING_MESSAGE)
    _set_vmi(ctx, vmi, init)


def target_reset(ctx: ClusterContext, vmi: Obj, reason: str) -> None:
    """After a failed or canceled migration: the target VMI goes back to WaitingForSync with
    ``failed=completed=true`` and the target pod gone (§1.8)."""
    def back(o: Obj) -> None:
        st = o.setdefault("status", {})
        ms = st.setdefault("migrationState", {})
        ms.update({"failed": True, "completed": True})
        ms.setdefault("endTimestamp", now())
        ms.setdefault("failureReason", reason)
        if st.get("phase") in ("Scheduling", "Scheduled", "WaitingForSync", ""):
            st["phase"] = "WaitingForSync"
            st.pop("nodeName", None)
            set_condition(st, "Ready", "False", "PodNotExists",
                          "virt-launcher pod has not yet been scheduled")
        remove_condition(st, BLOCKED)
        (o["metadata"].get("labels") or {}).pop("kubevirt.io/migrationTargetNodeName", None)
    _set_vmi(ctx, vmi, back)


def target_step(ctx: ClusterContext, vmim: Obj, status: dict[str, Any], vmi: Obj) -> str | None:
    phase = status.get("phase", "")
    state = _state(vmi)
    mine = (state.get("targetState") or {}).get("migrationUID") == vmim["metadata"]["uid"]
    if mine and state.get("failed"):
        target_reset(ctx, vmi, str(state.get("failureReason") or "source reported failure"))
        return "Failed"
    source = state.get("sourceState") or {}
    if phase == "WaitingForSync":
        if all(source.get(k) for k in ("migrationUID", "pod", "node")) \
                and source.get("nodeSelectors") is not None:
            _set_vmi(ctx, vmi, lambda o: remove_condition(o.setdefault("status", {}), BLOCKED))
            return "Pending"
        return None
    if phase == "Pending":
        def pod_created(o: Obj) -> None:
            st = o.setdefault("status", {})
            st["phase"] = "Scheduling"
            set_condition(st, "Ready", "False", "GuestNotRunning",
                          "Guest VM is not reported as running")
        _set_vmi(ctx, vmi, pod_created)
        return "Scheduling"
    if phase == "Scheduling":
        node, pod = node_name(ctx, receiver=True), _pod(vmi, ctx.name, "02")
        uid, md = vmim["metadata"]["uid"], vmi["metadata"]
        # The VMI controller's Scheduling/Scheduled writes for the target pod (lifecycle §8.1
        # step 13): qosClass, launcher image, primary interface, volumes with their claims.
        target_pod = ctx.store.peek("Pod", md.get("namespace"), pod)
        scheduled = {**vmistatus.scheduling_fields(target_pod),
                     **vmistatus.scheduled_fields(ctx, vmi)}

        def handoff(o: Obj) -> None:
            st = o.setdefault("status", {})
            ms = st.setdefault("migrationState", {})
            ms.update({"migrationUid": uid, "targetNode": node, "targetPod": pod,
                       "sourceNode": source.get("node", ""), "completed": False, "failed": False})
            ms.setdefault("targetState", {}).update(
                {"migrationUID": uid, "node": node, "pod": pod,
                 "virtualMachineInstanceUID": md["uid"], "domainName": md["name"],
                 "domainNamespace": md.get("namespace")})
            st["phase"], st["nodeName"] = "Scheduled", node
            st.update(scheduled)
            o["metadata"].setdefault("labels", {})["kubevirt.io/migrationTargetNodeName"] = node
        _set_vmi(ctx, vmi, handoff)
        return "Scheduled"
    if phase == "Scheduled":
        return "PreparingTarget"
    if phase == "PreparingTarget":
        if not state.get("targetNodeAddress"):
            def proxy_up(ms: dict[str, Any]) -> None:
                ms.update({"targetNodeAddress": TARGET_ADDRESS,
                           "targetDirectMigrationNodePorts": {"49152": 0, "49153": 49153}})
                ms.setdefault("targetState", {}).update(
                    {"nodeAddress": TARGET_ADDRESS,
                     "directMigrationNodePorts": {"49152": 0, "49153": 49153}})
            mutate_state(ctx, vmi, proxy_up)
            return None
        return "TargetReady"
    if phase == "TargetReady":
        return "Running" if state.get("startTimestamp") else None
    if phase == "Running":
        if not state.get("completed"):
            target_complete(ctx, vmi)
            return None
        return "Succeeded"
    return None


def target_complete(ctx: ClusterContext, vmi: Obj) -> None:
    """The target handler finishes the migration: domain ready, ``completed``, VMI Running,
    receiver annotation and target-node label removed (§1.6 step 19); the handler's report of the
    domain now running in the target pod (interfaces with that pod's IP, disk targets…)."""
    node = node_name(ctx, receiver=True)
    pod = str(((_state(vmi).get("targetState") or {}).get("pod")) or _pod(vmi, ctx.name, "02"))
    ns = str(vmi["metadata"].get("namespace") or "")
    source_uid = str((_state(vmi).get("sourceState") or {}).get("virtualMachineInstanceUID") or "")
    handler = vmistatus.handler_fields(ctx, vmi, dict(vmi.get("status") or {}),
                                       vmistatus.pod_ip(ctx, ns, pod), mac_seed=source_uid)

    def finish(o: Obj) -> None:
        st = o.setdefault("status", {})
        ms = st.setdefault("migrationState", {})
        stamp = now()
        ms.update({"targetNodeDomainDetected": True, "targetNodeDomainReadyTimestamp": stamp,
                   "endTimestamp": stamp, "completed": True, "failed": False})
        ms.setdefault("targetState", {}).update({"domainDetected": True,
                                                 "domainReadyTimestamp": stamp})
        st["phase"], st["nodeName"] = "Running", node
        st.update(handler)
        # Decentralized migrations copy every volume (migratedVolumes): always block migration.
        st["migrationMethod"], st["migrationTransport"] = "BlockMigration", "Unix"
        set_condition(st, "Ready", "True")
        (o["metadata"].get("annotations") or {}).pop(RECEIVER_ANNOTATION, None)
        labels = o["metadata"].setdefault("labels", {})
        labels.pop("kubevirt.io/migrationTargetNodeName", None)
        labels["kubevirt.io/nodeName"] = node
    _set_vmi(ctx, vmi, finish)


# ---------------------------------------------------------------------------- local migration
def local_step(ctx: ClusterContext, vmim: Obj, status: dict[str, Any], vmi: Obj) -> str | None:
    """A migration within one cluster: the VMI moves from node01 to node02."""
    phase = status.get("phase", "")
    if phase == "":
        return "Pending"
    if phase == "Pending" and (vmi.get("status") or {}).get("phase") != "Running":
        return None
    uid = vmim["metadata"]["uid"]
    if phase == "TargetReady":
        def started(ms: dict[str, Any]) -> None:
            ms.clear()
            ms.update({"migrationUid": uid, "startTimestamp": now(), "mode": "PreCopy",
                       "sourceNode": node_name(ctx), "targetNode": node_name(ctx, receiver=True)})
        mutate_state(ctx, vmi, started)
    if phase == "Running":
        node = node_name(ctx, receiver=True)

        def moved(o: Obj) -> None:
            st = o.setdefault("status", {})
            st.setdefault("migrationState", {}).update(
                {"endTimestamp": now(), "completed": True, "failed": False})
            st["nodeName"] = node
            o["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = node
        _set_vmi(ctx, vmi, moved)
    return _LOCAL_ORDER[_LOCAL_ORDER.index(phase) + 1] if phase in _LOCAL_ORDER[:-1] else None
