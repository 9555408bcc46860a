"""The simulated PV controller's volume side: released, deleted and available PersistentVolumes.

Provisioning and binding happen when the claim side binds a claim (``cdi.py`` calls
``volumes.provision``); this controller watches PersistentVolumes, and claims only to notice
their deletion, and runs ``volumes.sync_volume`` on them: a PV whose claim is gone goes
``Released``, then, with reclaim policy ``Delete``, is deleted as external-provisioner deletes
it; a deleted PV loses ``kubernetes.io/pv-protection`` once it is not ``Bound``; a PV without a
claim is ``Available``; a provisioned PV whose claim is not bound yet binds it. Writes are
recorded for kube-controller-manager or csi-provisioner (``volumes.py``).
"""
from __future__ import annotations

from statemachine.sim import volumes
from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim.store import Obj


class PersistentVolumeController(Controller):
    """``syncVolume`` on every PV change, and on the PV of every claim that goes away."""

    watches = ("PersistentVolume", "PersistentVolumeClaim")
    field_manager = volumes.CONTROLLER_MANAGER
    reads_only = True

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        if obj.get("kind") != volumes.PV:
            return None
        return volumes.sync_volume(ctx.store, obj) or None

    def deleted(self, ctx: ClusterContext, obj: Obj) -> None:
        if obj.get("kind") != volumes.PVC:
            return
        name = (obj.get("spec") or {}).get("volumeName")
        pv = ctx.store.peek(volumes.PV, None, name) if name else None
        if pv is not None:
            volumes.sync_volume(ctx.store, pv)
