"""The simulated VirtualMachine controller: VM ↔ VMI per runStrategy, and the VM status.

Run strategies (kubevirt-lifecycle.md §1.6 steps 21/25, §2):

- ``Always``: create the VMI when none exists (once every ``dataVolumeTemplates`` DV is Succeeded,
  WaitForFirstConsumer or PendingPopulation, creating missing template DVs and claiming existing
  ones); a final VMI is deleted so it restarts, except a decentralized migration source whose
  migration completed: then ``spec.runStrategy`` becomes ``Halted``.
- ``RerunOnFailure``: like Always, but a Succeeded VMI is kept (not restarted).
- ``Halted``: a non-final VMI is deleted (shown as ``Stopping``), a final one too.
- ``Manual`` / ``Once``: a VMI is created only for ``Once`` and only if none ever existed; nothing else.
- ``WaitAsReceiver``: create a receiver VMI (annotation ``kubevirt.io/create-migration-target``);
  when it is no longer a receiver and its migration completed without failure, ``spec.runStrategy``
  := annotation ``kubevirt.io/restore-run-strategy`` (kept on the VM).

Status: ``printableStatus`` by the first-match rules of §2.2, ``created``, ``ready``,
``runStrategy``, ``conditions`` (``Ready`` from the VMI; every other VMI condition copied
verbatim; ``Failure`` when an instancetype or preference is missing, in which case no VMI is made).

``status.stateChangeRequests`` (written by the ``start``/``stop``/``restart`` subresources,
``subresources.py``) are carried out first, one per tick: ``Stop`` deletes the VMI with that uid
and is popped once it is gone; ``Start`` creates a VMI (a final one is deleted first).

A VMI is created through KubeVirt's VMI admission (``webhooks.py``): a refusal (e.g. no memory)
leaves the VM without a VMI, with a Warning ``FailedCreate`` event and the ``Failure`` condition
(reason ``FailedCreate``), retried on every resync as upstream retries with backoff.

Events (component ``virtualmachine-controller``, kubevirt-fidelity.md §5.1): ``SuccessfulCreate``
when a VMI is created, ``SuccessfulDelete`` (with the VMI's uid) when one is deleted,
``FailedCreate``.

The new VMI gets the instancetype's CPU and memory and the instancetype/preference annotations
(``instancetype.py``), and ``status.virtualMachineRevisionName``.

The controller watches VMs and VMIs (a VMI event reconciles its owner VM). What it does not do:
ControllerRevisions, instancetype conflicts and preference device defaults, restart-required
detection, crash-loop backoff.
"""
from __future__ import annotations

from typing import Any

from statemachine.errors import ClusterError
from statemachine.sim import events, webhooks
from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim.controllers import instancetype, vmistatus
from statemachine.sim.controllers.conditions import annotations_of, get_condition, set_condition
from statemachine.sim.controllers.vmi import (
    FINAL_PHASES, RECEIVER_ANNOTATION, VM_FINALIZER, is_receiver)
from statemachine.sim.store import Obj

RESTORE_ANNOTATION = "kubevirt.io/restore-run-strategy"
DV_READY_PHASES = ("Succeeded", "WaitForFirstConsumer", "PendingPopulation")
_VM_OWNED_CONDITIONS = ("Ready", "Failure")
COMPONENT = "virtualmachine-controller"


def run_strategy(vm: Obj) -> str:
    spec = vm.get("spec") or {}
    if spec.get("runStrategy"):
        return str(spec["runStrategy"])
    if "running" in spec:
        return "Always" if spec.get("running") else "Halted"
    return "Halted"


def migration_completed(vmi: Obj) -> bool:
    return bool(((vmi.get("status") or {}).get("migrationState") or {}).get("completed"))


def is_decentralized_source(vmi: Obj) -> bool:
    state = (vmi.get("status") or {}).get("migrationState") or {}
    return bool((state.get("targetState") or {}).get("syncAddress")) and not (
        (state.get("sourceState") or {}).get("syncAddress"))


class VirtualMachineController(Controller):
    """VM ↔ VMI per runStrategy and VM status (see module docstring)."""

    watches = ("VirtualMachine", "VirtualMachineInstance")
    reads_only = True  # see ``_sync``: nothing here changes the VM or VMI it reads
    #: Why the last VMI create of this reconcile was refused (reason, message), if it was.
    _failure: tuple[str, str] | None = None

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        if obj["kind"] == "VirtualMachineInstance":
            vm = ctx.store.peek("VirtualMachine", obj["metadata"].get("namespace"),
                                obj["metadata"]["name"])
            return self._sync(ctx, vm) if vm is not None else None
        return self._sync(ctx, obj)

    def deleted(self, ctx: ClusterContext, obj: Obj) -> None:
        if obj["kind"] == "VirtualMachineInstance":
            vm = ctx.store.peek("VirtualMachine", obj["metadata"].get("namespace"),
                                obj["metadata"]["name"])
            if vm is not None:
                self._sync(ctx, vm)

    # ------------------------------------------------------------------ run strategy
    def _sync(self, ctx: ClusterContext, vm: Obj) -> bool | None:
        # Decision: ``_sync`` and every helper below only read ``vm`` and the VMI (writes go
        # through the store's create/mutate/update_status, which copy what they are given), so
        # both may be the store's own snapshots (``Store.peek``): most reconciles change nothing,
        # and copying them was a large part of the simulator's CPU.
        md = vm["metadata"]
        ns, name = md.get("namespace"), md["name"]
        vmi = ctx.store.peek("VirtualMachineInstance", ns, name)
        failure = self._missing_references(ctx, vm)
        requeue: bool | None = None
        rs = run_strategy(vm)
        self._failure = None
        pending = bool((vm.get("status") or {}).get("stateChangeRequests"))
        if not md.get("deletionTimestamp") and failure is None and pending:
            # Requests first; the run strategy takes over again once none are pending.
            requeue = self._state_change(ctx, vm, vmi) or None
            failure = self._failure
            vm = ctx.store.get("VirtualMachine", ns, name)
            vmi = ctx.store.peek("VirtualMachineInstance", ns, name)
        if not md.get("deletionTimestamp") and failure is None and not requeue:
            dvs_ready = self._data_volumes_ready(ctx, vm)
            vmi_phase = ((vmi or {}).get("status") or {}).get("phase", "")
            being_deleted = bool(vmi and vmi["metadata"].get("deletionTimestamp"))
            if rs == "Halted" or (rs == "Manual" and vmi is None):
                if vmi is not None and not being_deleted:
                    self._delete_vmi(ctx, vm, vmi)
            elif vmi is None:
                if rs in ("Always", "RerunOnFailure", "WaitAsReceiver") or (
                        rs == "Once" and not (vm.get("status") or {}).get("created")):
                    if dvs_ready:
                        vmi = self._create_vmi(ctx, vm, receiver=rs == "WaitAsReceiver")
                        failure = self._failure
                    else:
                        requeue = True
            elif being_deleted:
                requeue = True
            elif rs == "WaitAsReceiver":
                restore = annotations_of(vm).get(RESTORE_ANNOTATION)
                if (restore and not is_receiver(vmi) and migration_completed(vmi)
                        and not vmi["status"]["migrationState"].get("failed")):
                    ctx.store.mutate("VirtualMachine", ns, name,
                                     lambda o: o["spec"].update({"runStrategy": restore}))
                    vm = ctx.store.get("VirtualMachine", ns, name)
                    rs = restore
            elif vmi_phase in FINAL_PHASES and rs in ("Always", "RerunOnFailure"):
                if is_decentralized_source(vmi) and migration_completed(vmi):
                    if rs == "Always":
                        ctx.store.mutate("VirtualMachine", ns, name,
                                         lambda o: o["spec"].update({"runStrategy": "Halted"}))
                        vm = ctx.store.get("VirtualMachine", ns, name)
                        rs = "Halted"
                    else:
                        self._delete_vmi(ctx, vm, vmi)
                elif rs == "Always" or vmi_phase == "Failed":
                    self._delete_vmi(ctx, vm, vmi)
                    requeue = True
        elif md.get("deletionTimestamp") and vmi is not None:
            if not vmi["metadata"].get("deletionTimestamp"):
                self._delete_vmi(ctx, vm, vmi)
        self._write_status(ctx, vm, ctx.store.peek("VirtualMachineInstance", ns, name), rs,
                           failure)
        return requeue

    def _state_change(self, ctx: ClusterContext, vm: Obj, vmi: Obj | None) -> bool:
        """Carry out the first pending ``stateChangeRequests`` entry; whether any remain."""
        md = vm["metadata"]
        ns, name = md.get("namespace"), md["name"]
        requests = list((vm.get("status") or {}).get("stateChangeRequests") or [])
        first = requests[0] if isinstance(requests[0], dict) else {}
        final = ((vmi or {}).get("status") or {}).get("phase") in FINAL_PHASES
        if first.get("action") == "Stop":
            if vmi is not None and first.get("uid") in (None, "", vmi["metadata"]["uid"]):
                if not vmi["metadata"].get("deletionTimestamp"):
                    self._delete_vmi(ctx, vm, vmi)
                return True
            requests.pop(0)
        elif first.get("action") == "Start":
            if vmi is not None and final:
                if not vmi["metadata"].get("deletionTimestamp"):
                    self._delete_vmi(ctx, vm, vmi)
                return True
            if vmi is None:
                if not self._data_volumes_ready(ctx, vm):
                    return True
                if self._create_vmi(ctx, vm, receiver=False) is None:
                    return True
            requests.pop(0)
        else:
            requests.pop(0)

        def popped(o: Obj) -> None:
            st = o.setdefault("status", {})
            if requests:
                st["stateChangeRequests"] = requests
            else:
                st.pop("stateChangeRequests", None)
                st.pop("startFailure", None)
        ctx.store.mutate("VirtualMachine", ns, name, popped)
        return bool(requests)

    def _delete_vmi(self, ctx: ClusterContext, vm: Obj, vmi: Obj) -> None:
        md = vmi["metadata"]
        ctx.store.delete("VirtualMachineInstance", md.get("namespace"), md["name"])
        events.record(ctx.store, vm, "Normal", "SuccessfulDelete",
                      "Stopped the virtual machine by deleting the virtual machine instance "
                      f"{md['uid']}", component=COMPONENT)

    def _missing_references(self, ctx: ClusterContext, vm: Obj) -> tuple[str, str] | None:
        spec = vm.get("spec") or {}
        ns = vm["metadata"].get("namespace")
        for field, namespaced, cluster, reason in (
                ("instancetype", "virtualmachineinstancetype", "VirtualMachineClusterInstancetype",
                 "FailedFindInstancetype"),
                ("preference", "virtualmachinepreference", "VirtualMachineClusterPreference",
                 "FailedFindPreference")):
            ref = spec.get(field)
            if not ref or not ref.get("name"):
                continue
            kind = str(ref.get("kind") or "").lower().rstrip("s")
            if kind == namespaced:
                found = ctx.store.peek(
                    "VirtualMachineInstancetype" if field == "instancetype"
                    else "VirtualMachinePreference", ns, ref["name"])
            else:
                found = ctx.store.peek(cluster, None, ref["name"])
            if found is None:
                what = ref.get("kind") or cluster
                return reason, f'{what}.{"instancetype.kubevirt.io"} "{ref["name"]}" not found'
        return None

    def _data_volumes_ready(self, ctx: ClusterContext, vm: Obj) -> bool:
        md = vm["metadata"]
        ns = md.get("namespace")
        owner = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": md["name"],
                 "uid": md["uid"], "controller": True, "blockOwnerDeletion": True}
        ready = True
        for tpl in (vm.get("spec") or {}).get("dataVolumeTemplates") or []:
            tmd = tpl.get("metadata") or {}
            dv = ctx.store.try_get("DataVolume", ns, tmd.get("name", ""))
            if dv is None:
                body = {"metadata": {**tmd, "namespace": ns, "ownerReferences": [owner]},
                        "spec": tpl.get("spec") or {}}
                ctx.store.create("DataVolume", body)
                ready = False
                continue
            if not any(r.get("uid") == md["uid"] for r in dv["metadata"].get("ownerReferences")
                       or []):
                ctx.store.mutate("DataVolume", ns, dv["metadata"]["name"], lambda o: o[
                    "metadata"].setdefault("ownerReferences", []).append(owner))
            if (dv.get("status") or {}).get("phase") not in DV_READY_PHASES:
                ready = False
        return ready

    def _create_vmi(self, ctx: ClusterContext, vm: Obj, *, receiver: bool) -> Obj | None:
        """Create the VMI through the VMI admission webhooks; ``None`` (and ``self._failure``,
        a FailedCreate event) when they refuse it."""
        md = vm["metadata"]
        template = (vm.get("spec") or {}).get("template") or {}
        tmd = template.get("metadata") or {}
        notes = dict(tmd.get("annotations") or {})
        notes["kubevirt.io/vm-generation"] = str(md.get("generation", 1))
        if receiver:
            notes[RECEIVER_ANNOTATION] = "true"
        spec: dict[str, Any] = dict(template.get("spec") or {})
        domain = dict(spec.get("domain") or {})
        firmware = dict(domain.get("firmware") or {})
        firmware.setdefault("uuid", md["uid"])
        domain["firmware"] = firmware
        spec["domain"] = domain
        instancetype.apply(ctx, vm, spec, notes)
        body = {"metadata": {
            "name": md["name"], "namespace": md.get("namespace"),
            "labels": dict(tmd.get("labels") or {}), "annotations": notes,
            "finalizers": [VM_FINALIZER],
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                                 "name": md["name"], "uid": md["uid"], "controller": True,
                                 "blockOwnerDeletion": True}]}, "spec": spec,
            "status": {"virtualMachineRevisionName": vmistatus.revision_name(vm)}}
        webhooks.mutate_vmi(body)
        try:
            webhooks.validate_vmi_create(body)
        except ClusterError as exc:
            message = f"Error creating virtual machine instance: {exc}"
            events.record(ctx.store, vm, "Warning", "FailedCreate", message, component=COMPONENT)
            self._failure = ("FailedCreate", message)
            return None
        created = ctx.store.create("VirtualMachineInstance", body)
        events.record(ctx.store, vm, "Normal", "SuccessfulCreate",
                      "Started the virtual machine by creating the new virtual machine instance "
                      f"{md['name']}", component=COMPONENT)
        return created

    # ------------------------------------------------------------------ status
    def _write_status(self, ctx: ClusterContext, vm: Obj, vmi: Obj | None, rs: str,
                      failure: tuple[str, str] | None) -> None:
        md = vm["metadata"]
        status: dict[str, Any] = dict(vm.get("status") or {})
        vmi_status = (vmi or {}).get("status") or {}
        status["printableStatus"] = self._printable(ctx, vm, vmi, rs)
        status["created"] = vmi is not None
        ready = get_condition(vmi_status, "Ready")
        status["ready"] = bool(ready and ready.get("status") == "True")
        if vmi is not None or status.get("runStrategy"):
            status["runStrategy"] = rs
        conds = [c for c in status.get("conditions") or [] if c.get("type") in _VM_OWNED_CONDITIONS]
        status["conditions"] = conds
        if vmi is None:
            set_condition(status, "Ready", "False", "VMINotExists", "VMI does not exist")
        elif ready is None:
            set_condition(status, "Ready", "False", "VMIConditionMissing",
                          "VMI is missing the Ready condition")
        else:
            set_condition(status, "Ready", ready.get("status", "False"), ready.get("reason", ""),
                          ready.get("message", ""))
        if failure is not None:
            set_condition(status, "Failure", "True", failure[0], failure[1])
        else:
            status["conditions"] = [c for c in status["conditions"] if c["type"] != "Failure"]
        for cond in vmi_status.get("conditions") or []:
            if cond.get("type") not in _VM_OWNED_CONDITIONS:
                status["conditions"].append(dict(cond))
        cbt = self._cbt_state(ctx, vm, vmi)
        if cbt is None:
            status.pop("changedBlockTracking", None)
        else:
            status["changedBlockTracking"] = {"state": cbt}
        status["desiredGeneration"] = md.get("generation", 1)
        status["observedGeneration"] = md.get("generation", 1)
        if status != (vm.get("status") or {}):
            ctx.store.update_status("VirtualMachine", md.get("namespace"), md["name"], status,
                                    copy=False)  # result dropped

    def _cbt_state(self, ctx: ClusterContext, vm: Obj, vmi: Obj | None) -> str | None:
        """``status.changedBlockTracking.state`` (warm-migration.md §1.1), simplified: a VM selected
        by the KubeVirt CR's ``changedBlockTrackingLabelSelectors`` (``matchLabels`` only) is
        ``Enabled`` while its VMI runs and ``Initializing`` otherwise; unselected VMs report nothing."""
        for kv in ctx.store.peek_list("KubeVirt"):
            config = (kv.get("spec") or {}).get("configuration") or {}
            selectors = config.get("changedBlockTrackingLabelSelectors") or {}
            if not selectors:
                continue
            ns_obj = ctx.store.peek("Namespace", None, vm["metadata"].get("namespace", ""))
            matched = False
            for selector, obj in (("virtualMachineLabelSelector", vm),
                                  ("namespaceLabelSelector", ns_obj or {})):
                wanted = (selectors.get(selector) or {}).get("matchLabels") or {}
                have = (obj.get("metadata") or {}).get("labels") or {}
                if wanted and all(have.get(k) == v for k, v in wanted.items()):
                    matched = True
            if not matched:
                return None
            gates = (config.get("developerConfiguration") or {}).get("featureGates") or []
            if "IncrementalBackup" not in gates:
                return "IncrementalBackupFeatureGateDisabled"
            running = ((vmi or {}).get("status") or {}).get("phase") == "Running"
            return "Enabled" if running else "Initializing"
        return None

    def _printable(self, ctx: ClusterContext, vm: Obj, vmi: Obj | None, rs: str) -> str:
        """The first matching rule of kubevirt-lifecycle.md §2.2."""
        vmi_status = (vmi or {}).get("status") or {}
        phase = vmi_status.get("phase", "")
        final = phase in FINAL_PHASES
        if vm["metadata"].get("deletionTimestamp"):
            return "Terminating"
        if vmi is not None and not final and (vmi["metadata"].get("deletionTimestamp")
                                              or rs == "Halted"):
            return "Stopping"
        state = vmi_status.get("migrationState") or {}
        if state.get("startTimestamp") and not state.get("endTimestamp"):
            return "Migrating"
        paused = get_condition(vmi_status, "Paused")
        if paused and paused.get("status") == "True":
            return "Paused"
        if phase == "Running":
            return "Running"
        dv_phases = self._volume_dv_phases(ctx, vm)
        if "Failed" in dv_phases:
            return "DataVolumeError"
        if any(p not in ("Succeeded", "PendingPopulation", "WaitForFirstConsumer")
               for p in dv_phases):
            return "Provisioning"
        starts = rs in ("Always", "RerunOnFailure") or (rs == "Once" and vmi is None
                                                         and not (vm.get("status") or {})
                                                         .get("created"))
        if (vmi is None and starts) or (vmi is not None and phase in (
                "", "Pending", "Scheduling", "Scheduled")):
            return "Starting"
        if rs == "WaitAsReceiver" and vmi is not None and phase == "WaitingForSync":
            return "WaitingForReceiver"
        if final or vmi is None:
            return "Stopped"
        return "Unknown"

    def _volume_dv_phases(self, ctx: ClusterContext, vm: Obj) -> list[str]:
        spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        ns = vm["metadata"].get("namespace")
        out = []
        for vol in spec.get("volumes") or []:
            if "dataVolume" in vol:
                dv = ctx.store.peek("DataVolume", ns, vol["dataVolume"].get("name", ""))
                out.append(((dv or {}).get("status") or {}).get("phase", "Pending"))
        return out
