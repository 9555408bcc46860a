from __future__ import annotations
from statemachine.sim.controller import ClusterContext, Controller
def dirty_bytes_of(ctx: ClusterContext, ns: str, backup: str, volume: str) -> int | None:
    return None
class BackupController(Controller):
    watches = ("VirtualMachineBackup",)
    def reconcile(self, ctx, obj):
        return None
