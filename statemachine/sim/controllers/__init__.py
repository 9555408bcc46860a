"""The simulated KubeVirt, CDI, export, backup and Job controllers.

``all_controllers()`` is what :func:`statemachine.sim.controller.load_controllers` calls once per
simulated cluster; every call returns fresh instances. The behaviour of each controller, tick by
tick, and the fault-injection annotations are described in ``docs/simulator-controllers.md`` and
in each module's docstring. Everything here talks to the cluster only through its
:class:`~statemachine.sim.store.Store` (so every write is a real watch event) and to the other
cluster through :class:`~statemachine.sim.controller.ClusterContext.clusters` and the shared
:class:`~statemachine.sim.controller.SimNetwork`.
"""
from __future__ import annotations

from statemachine.sim.controller import Controller


def all_controllers() -> list[Controller]:
    """Fresh instances of every simulated controller, in a stable order."""
    from statemachine.sim.controllers.backup import BackupController
    from statemachine.sim.controllers.cdi import (
        DataVolumeController, PersistentVolumeClaimController)
    from statemachine.sim.controllers.export import ExportController
    from statemachine.sim.controllers.job import JobController
    from statemachine.sim.controllers.kubevirt import KubeVirtController
    from statemachine.sim.controllers.migration import MigrationController
    from statemachine.sim.controllers.pause import PauseJobController, PausedStartController
    from statemachine.sim.controllers.pv import PersistentVolumeController
    from statemachine.sim.controllers.vm import VirtualMachineController
    from statemachine.sim.controllers.vmi import VirtualMachineInstanceController

    return [KubeVirtController(), VirtualMachineController(), VirtualMachineInstanceController(),
            MigrationController(), DataVolumeController(),
            PersistentVolumeClaimController(), PersistentVolumeController(), ExportController(),
            BackupController(), JobController(), PausedStartController(), PauseJobController()]
