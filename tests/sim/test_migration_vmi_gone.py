"""A source VMI deleted right after its migration completed (the source VM halts) must leave the
source VMIM Succeeded, not Failed as if canceled (kubevirt-lifecycle §8.2 step 7: S-VMIM
Succeeded or NotFound). Driven by hand: the race with the VMIM's own step is not left to timing."""
from __future__ import annotations

from typing import Any

from statemachine.sim.controller import ClusterContext, SimNetwork
from statemachine.sim.controllers.migration import VMI_NAME_LABEL, MigrationController
from statemachine.sim.store import Store

NS = "shop"


def _setup(phase: str) -> tuple[ClusterContext, dict[str, Any]]:
    store = Store()
    store.create("Namespace", {"metadata": {"name": NS}})
    ctx = ClusterContext("source", store, SimNetwork())
    vmim = store.create("VirtualMachineInstanceMigration", {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": "web-source", "namespace": NS, "labels": {VMI_NAME_LABEL: "web"},
                     "finalizers": ["kubevirt.io/migrationJobFinalize"]},
        "spec": {"vmiName": "web", "sendTo": {"migrationID": "m1", "connectURL": "x"}}})
    store.update_status("VirtualMachineInstanceMigration", NS, "web-source",
                        {"phase": phase, "phaseTransitionTimestamps": [{"phase": phase}]})
    return ctx, vmim


def _vmi(uid: str, **state: Any) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "web", "namespace": NS},
            "status": {"phase": "Succeeded", "migrationState": {
                "sourceState": {"migrationUID": uid}, **state}}}


def test_vmi_deleted_after_a_completed_migration_leaves_the_vmim_succeeded() -> None:
    ctx, vmim = _setup("Running")
    MigrationController().deleted(ctx, _vmi(vmim["metadata"]["uid"], completed=True, failed=False))
    left = ctx.store.try_get("VirtualMachineInstanceMigration", NS, "web-source")
    # Succeeded, then deleted with its VMI (finalizers dropped): gone, or going, as Succeeded.
    assert left is None or (left.get("status") or {}).get("phase") == "Succeeded", left


def test_vmi_deleted_mid_migration_still_cancels_it() -> None:
    ctx, vmim = _setup("Running")
    MigrationController().deleted(ctx, _vmi(vmim["metadata"]["uid"], completed=False))
    left = ctx.store.try_get("VirtualMachineInstanceMigration", NS, "web-source")
    assert left is not None and left["metadata"].get("deletionTimestamp")
    assert (left.get("status") or {}).get("phase") == "Running"  # the cancel path fails it next
