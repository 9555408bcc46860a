"""The simulated migration controller: VirtualMachineInstanceMigration phases, both sides.

Per VMIM and tick (kubevirt-lifecycle.md §1):

1. First reconcile: only metadata — label ``kubevirt.io/vmi-name``, finalizer
   ``kubevirt.io/migrationJobFinalize`` (+ ``synchronization.kubevirt.io/migrationFinalizer`` when
   decentralized) and the observed-API-version annotations (§1.2).
2. Deletion of a non-final VMIM = cancel: ``migrationAbortRequested=True``, phase ``Failed``, the
   VMIs marked (source: abort succeeded and keeps running; target: back to WaitingForSync), and
   the peer VMIM deleted through the sync channel; then finalizers go and the object disappears.
3. Otherwise one phase step of the source (``spec.sendTo``), target (``spec.receive``) or local
   side (``migration_sides.py``); a decentralized source also runs one sync :func:`exchange` and
   shows ``decentralizedMigrationBlocked`` while the peer cannot be reached.
4. Every status write sets ``phaseTransitionTimestamps`` (each phase once) and
   ``synchronizationAddresses`` (this cluster's KubeVirt CR addresses, absent when it has none).
5. Final: finalizers removed; ``status.migrationState`` = the VMI's when it belongs to this VMIM.
   A VMIM whose VMI is deleted is deleted too (§1.6 step 26).

Pausing: annotation ``sim.smrun.io/hold-migration-at: <phase>`` on the source VM stops the source
side at that phase (it keeps syncing) until the annotation is removed; ``TargetReady`` holds both
sides mid-migration, which makes cancel tests deterministic.

Fault injection: annotation ``sim.smrun.io/fail-migration-at: <phase>`` on the source VM fails the
migration when the source VMIM is in that phase (``WaitingForSync`` counts as ``Synchronizing``);
the target holds at that phase until the failure reaches it, so the outcome is deterministic.

What it does not do: parallel-migration limits, migration policies, GC of old final VMIMs, target
pod timeouts, post-copy.
"""
from __future__ import annotations

from typing import Any

from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim.controllers import kubevirt, migration_pods
from statemachine.sim.controllers.conditions import (
    FAIL_MIGRATION_AT, HOLD_MIGRATION_AT, annotations_of, event, now, remove_condition, set_condition)
from statemachine.sim.controllers.migration_sides import (
    BLOCKED, FINAL, WAITING_MESSAGE, local_step, source_start, source_step, target_reset,
    target_start, target_step)
from statemachine.sim.controllers.migration_sync import (
    VMI, VMIM, Unreachable, cancel_peer, exchange, find_target, mutate_state)
from statemachine.sim.controllers.vmi import FINAL_PHASES
from statemachine.sim.store import Obj, copy_stored

JOB_FINALIZER = "kubevirt.io/migrationJobFinalize"
SYNC_FINALIZER = "synchronization.kubevirt.io/migrationFinalizer"
VMI_NAME_LABEL = "kubevirt.io/vmi-name"
BLOCKED_TYPE = "decentralizedMigrationBlocked"


def side(vmim: Obj) -> str:
    """``source``, ``target`` or ``local`` (both or neither of sendTo/receive, §1.1)."""
    spec = vmim.get("spec") or {}
    if bool(spec.get("sendTo")) == bool(spec.get("receive")):
        return "local"
    return "source" if spec.get("sendTo") else "target"


def _migration_uids(state: dict[str, Any]) -> tuple[Any, ...]:
    """The VMIM uids a VMI's ``migrationState`` speaks for (local, source or target side)."""
    return (state.get("migrationUid"), (state.get("sourceState") or {}).get("migrationUID"),
            (state.get("targetState") or {}).get("migrationUID"))


def _set_phase(status: dict[str, Any], phase: str) -> None:
    status["phase"] = phase
    stamps = list(status.get("phaseTransitionTimestamps") or [])
    if phase and not any(s.get("phase") == phase for s in stamps):
        stamps.append({"phase": phase, "phaseTransitionTimestamp": now()})
    status["phaseTransitionTimestamps"] = stamps


def _blocked(status: dict[str, Any], message: str | None) -> None:
    if message is None:
        remove_condition(status, BLOCKED_TYPE)
    else:
        set_condition(status, BLOCKED_TYPE, "True", "DecentralizedNotLiveMigratable", message)


class MigrationController(Controller):
    """Drives VMIMs (see module docstring)."""

    watches = (VMIM, VMI)
    # Every step only reads the VMIM it is handed: the status it edits is its own deep copy, and
    # writes go through the store. Saves a copy per VMIM per tick (and per VMI event, ignored).
    reads_only = True

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        if obj["kind"] == VMI:
            return None  # only deletions matter (see ``deleted``)
        md = obj["metadata"]
        if "kubevirt.io/latest-observed-api-version" not in annotations_of(obj):
            self._observe(ctx, obj)
            return True
        if md.get("deletionTimestamp"):
            return self._cancel(ctx, obj)
        # A deep copy: the steps edit ``status["migrationState"]`` in place.
        status: dict[str, Any] = copy_stored(obj.get("status") or {})
        if status.get("phase") in FINAL:
            if md.get("finalizers"):
                ctx.store.mutate(VMIM, md.get("namespace"), md["name"],
                                 lambda o: o["metadata"].pop("finalizers", None))
            return None
        before = {**status}
        # The VMI is only read here and in every step it is passed to (they write it through
        # the store's mutate, from a fresh copy): the store's snapshot, uncopied.
        vmi = ctx.store.peek(VMI, md.get("namespace"), str((obj.get("spec") or {})
                                                           .get("vmiName", "")))
        nxt = self._step(ctx, obj, status, vmi)
        if nxt is not None and nxt != status.get("phase"):
            _set_phase(status, nxt)
            migration_pods.on_phase(ctx, obj, status, vmi, side(obj), nxt)
            if nxt in FINAL:
                self._finalise(ctx, obj, status, vmi)
        addrs = kubevirt.announce(ctx)
        if addrs:
            status["synchronizationAddresses"] = addrs
        else:
            status.pop("synchronizationAddresses", None)
        if status != before:
            ctx.store.update_status(VMIM, md.get("namespace"), md["name"], status, copy=False)
        return True

    def deleted(self, ctx: ClusterContext, obj: Obj) -> None:
        if obj["kind"] != VMI:
            return
        ns = obj["metadata"].get("namespace")
        state = (obj.get("status") or {}).get("migrationState") or {}
        for vmim in ctx.store.list(VMIM, ns, label_selector=f"{VMI_NAME_LABEL}="
                                                            f"{obj['metadata']['name']}"):
            vmd = vmim["metadata"]
            status = dict(vmim.get("status") or {})
            if status.get("phase") not in FINAL and state.get("completed") \
                    and not state.get("failed") and vmd["uid"] in _migration_uids(state):
                # The VMI went away right after this migration completed (the source VM halts
                # and its VMI is deleted) before the VMIM's own step to Succeeded: it succeeded.
                # Failing it here, as a cancel, would report a finished migration as failed.
                _set_phase(status, "Succeeded")
                status["migrationState"] = {**(status.get("migrationState") or {}), **state}
                ctx.store.update_status(VMIM, ns, vmd["name"], status)
                vmim = ctx.store.get(VMIM, ns, vmd["name"])
            if not vmd.get("deletionTimestamp"):
                ctx.store.delete(VMIM, ns, vmd["name"])
            if (vmim.get("status") or {}).get("phase") in FINAL:
                ctx.store.mutate(VMIM, ns, vmd["name"],
                                 lambda o: o["metadata"].pop("finalizers", None))

    # ------------------------------------------------------------------ steps
    def _observe(self, ctx: ClusterContext, vmim: Obj) -> None:
        def observe(o: Obj) -> None:
            md = o["metadata"]
            md.setdefault("annotations", {}).update({
                "kubevirt.io/latest-observed-api-version": "v1",
                "kubevirt.io/storage-observed-api-version": "v1"})
            md.setdefault("labels", {})[VMI_NAME_LABEL] = str(o.get("spec", {}).get("vmiName", ""))
            if md.get("deletionTimestamp"):
                return  # no new finalizers on an object being deleted
            fins = md.setdefault("finalizers", [])
            wanted = [JOB_FINALIZER] + ([SYNC_FINALIZER] if side(o) != "local" else [])
            for fin in wanted:
                if fin not in fins:
                    fins.append(fin)
        md = vmim["metadata"]
        ctx.store.mutate(VMIM, md.get("namespace"), md["name"], observe)

    def _step(self, ctx: ClusterContext, vmim: Obj, status: dict[str, Any],
              vmi: Obj | None) -> str | None:
        which, phase = side(vmim), status.get("phase", "")
        if vmi is None and phase != "":
            # The VMI went away while this migration ran, and its deletion is not handled yet
            # (it was deleted earlier in this very tick, by the VM controller once the source VM
            # halted after the hand-off). ``deleted`` decides from the VMI's last snapshot:
            # Succeeded if it had completed this migration, else a cancel. Failing it here
            # instead ("vmi does not exist") reported a finished migration as failed whenever
            # the deletion and this reconcile fell in the same tick.
            return None
        if vmi is None:
            status.setdefault("migrationState", {})["failureReason"] = (
                "Migration failed because vmi does not exist.")
            event(ctx.store, vmim, "FailedMigration", "Migration failed because vmi does not exist.",
                  "Warning")
            return "Failed"
        vmi_phase = (vmi.get("status") or {}).get("phase", "")
        if phase == "":
            reason = self._ineligible(ctx, vmim, vmi)
            if reason is None and vmi_phase in FINAL_PHASES and which != "target":
                reason = "Cannot migrate VMI in finalized state."
            if reason is not None:
                status.setdefault("migrationState", {})["failureReason"] = reason
                event(ctx.store, vmim, "FailedMigration", reason, "Warning")
                return "Failed"
            if which == "source":
                source_start(ctx, vmim, vmi)
                return "Synchronizing"
            if which == "target":
                target_start(ctx, vmim, vmi)
                _blocked(status, WAITING_MESSAGE)
                return "WaitingForSync"
        if which == "local":
            return local_step(ctx, vmim, status, vmi) if not self._fault(ctx, vmim, vmi, phase) \
                else "Failed"
        if which == "target":
            hold = annotations_of(vmim).get(FAIL_MIGRATION_AT)
            if hold == phase and not ((vmi.get("status") or {}).get("migrationState") or {}).get(
                    "failed"):
                return None  # the source is about to fail this migration at this phase
            nxt = target_step(ctx, vmim, status, vmi)
            if nxt is not None and nxt != "WaitingForSync":
                _blocked(status, None)
            return nxt
        # decentralized source: sync with the target, then one step
        try:
            peer = find_target(ctx, vmim)
            exchange(ctx, vmim, vmi, peer)
            _blocked(status, None)
            self._mirror_blocked(ctx, vmi, None)
            vmi = ctx.store.peek(VMI, vmi["metadata"].get("namespace"), vmi["metadata"]["name"])
        except Unreachable as exc:
            _blocked(status, str(exc))
            if vmi is not None:
                self._mirror_blocked(ctx, vmi, str(exc))
        if vmi is None:
            return None
        if self._fault(ctx, vmim, vmi, phase):
            return "Failed"
        if self._held(ctx, vmi, phase):
            return None
        return source_step(ctx, vmim, status, vmi)

    def _held(self, ctx: ClusterContext, vmi: Obj, phase: str) -> bool:
        """Whether the source VM pauses its migration here (``sim.smrun.io/hold-migration-at``)."""
        vm = ctx.store.peek("VirtualMachine", vmi["metadata"].get("namespace"),
                            vmi["metadata"]["name"])  # read-only: an annotation
        return bool(phase) and annotations_of(vm or {}).get(HOLD_MIGRATION_AT) == phase

    def _ineligible(self, ctx: ClusterContext, vmim: Obj, vmi: Obj) -> str | None:
        """``canMigrateVMI``: another non-final VMIM owns the VMI's migration state."""
        state = (vmi.get("status") or {}).get("migrationState") or {}
        if state.get("completed"):
            return None
        owners = {state.get("migrationUid"), (state.get("sourceState") or {}).get("migrationUID"),
                  (state.get("targetState") or {}).get("migrationUID")} - {None, ""}
        for other in ctx.store.peek_list(VMIM, vmim["metadata"].get("namespace")):  # read-only
            if other["metadata"]["uid"] in owners and other["metadata"]["uid"] != vmim[
                    "metadata"]["uid"] and (other.get("status") or {}).get("phase") not in FINAL:
                return ("VMI is not eligible for migration because another migration job is in "
                        "progress.")
        return None

    def _fault(self, ctx: ClusterContext, vmim: Obj, vmi: Obj, phase: str) -> bool:
        """Fail the migration here if the source VM asks for it (``sim.smrun.io/fail-migration-at``)."""
        vm = ctx.store.peek("VirtualMachine", vmi["metadata"].get("namespace"),
                            vmi["metadata"]["name"])  # read-only: an annotation
        fail_at = annotations_of(vm or {}).get(FAIL_MIGRATION_AT)
        if not fail_at or phase in ("", *FINAL):
            return False
        if fail_at != phase and not (fail_at == "WaitingForSync" and phase == "Synchronizing"):
            return False
        reason = f"injected failure at phase {phase} ({FAIL_MIGRATION_AT})"

        def failed(ms: dict[str, Any]) -> None:
            ms.update({"failed": True, "completed": True, "endTimestamp": now(),
                       "failureReason": reason})
        mutate_state(ctx, vmi, failed)
        if side(vmim) == "source":
            try:  # the failure reaches the target through the sync channel
                peer = find_target(ctx, vmim)
                mutate_state(peer.ctx, peer.vmi, failed)
            except Unreachable:
                pass
        event(ctx.store, vmim, "FailedMigration", reason, "Warning")
        return True

    def _mirror_blocked(self, ctx: ClusterContext, vmi: Obj, message: str | None) -> None:
        def mirror(o: Obj) -> None:
            st = o.setdefault("status", {})
            if message is None:
                remove_condition(st, BLOCKED)
            else:
                set_condition(st, BLOCKED, "True", "DecentralizedNotLiveMigratable", message)
        ctx.store.mutate(VMI, vmi["metadata"].get("namespace"), vmi["metadata"]["name"], mirror,
                         copy=False)  # result dropped

    def _finalise(self, ctx: ClusterContext, vmim: Obj, status: dict[str, Any],
                  vmi: Obj | None) -> None:
        if vmi is None:
            return
        vmi = ctx.store.try_get(VMI, vmi["metadata"].get("namespace"), vmi["metadata"]["name"])
        state = ((vmi or {}).get("status") or {}).get("migrationState") or {}
        uid = vmim["metadata"]["uid"]
        if uid in _migration_uids(state):
            status["migrationState"] = {**(status.get("migrationState") or {}), **state}
        if status.get("phase") == "Failed":
            remove_condition(status, BLOCKED_TYPE)

    def _cancel(self, ctx: ClusterContext, vmim: Obj) -> bool | None:
        """A VMIM being deleted: fail it if needed, cancel the peer, then drop the finalizers."""
        md = vmim["metadata"]
        ns = md.get("namespace")
        status: dict[str, Any] = copy_stored(vmim.get("status") or {})  # edited in place
        if status.get("phase") not in FINAL:
            set_condition(status, "migrationAbortRequested", "True")
            vmi = ctx.store.try_get(VMI, ns, str((vmim.get("spec") or {}).get("vmiName", "")))
            which = side(vmim)
            if vmi is not None and which != "local":
                state = (vmi.get("status") or {}).get("migrationState") or {}
                if which == "target":
                    if (state.get("targetState") or {}).get("migrationUID") == md["uid"]:
                        target_reset(ctx, vmi, "Migration failed due to being canceled")
                elif (state.get("sourceState") or {}).get("migrationUID") == md["uid"]:
                    running = bool(state.get("startTimestamp"))

                    def aborted(ms: dict[str, Any]) -> None:
                        ms.update({"failed": True, "completed": True, "endTimestamp": now()})
                        if running:
                            ms.update({"abortRequested": True, "abortStatus": "Succeeded"})
                        ms.setdefault("failureReason", "Migration failed due to being canceled")
                    mutate_state(ctx, vmi, aborted)
                cancel_peer(ctx, vmim)
            _set_phase(status, "Failed")
            migration_pods.on_phase(ctx, vmim, status, vmi, which, "Failed")
            self._finalise(ctx, vmim, status, vmi)
            event(ctx.store, vmim, "FailedMigration", "Migration failed due to being canceled",
                  "Warning")
            ctx.store.update_status(VMIM, ns, md["name"], status)
            return True
        if md.get("finalizers"):
            ctx.store.mutate(VMIM, ns, md["name"], lambda o: o["metadata"].pop("finalizers", None))
        return None


__all__ = ["MigrationController", "side"]
