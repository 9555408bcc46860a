from __future__ import annotations
from statemachine.sim.controller import ClusterContext, Controller
class DataVolumeController(Controller):
    watches = ("DataVolume",)
    def reconcile(self, ctx, obj):
        return None
