from __future__ import annotations
from statemachine.sim.controller import ClusterContext, Controller
class ExportController(Controller):
    watches = ("VirtualMachineExport",)
    def reconcile(self, ctx, obj):
        return None
