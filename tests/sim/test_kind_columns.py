"""Printer columns, selectable fields and categories on the kind registry, as the KubeVirt and CDI
operators install them (kubevirt-fidelity.md §1.2-§1.3), and the categories discovery shows."""
from __future__ import annotations

from typing import Any

from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.kinds import lookup


def test_kubevirt_printer_columns_are_upstream() -> None:
    vm = lookup("kubevirt.io/v1", "VirtualMachine")
    assert [c["name"] for c in vm.printer_columns] == ["Age", "Status", "Ready"]
    vmi = lookup("kubevirt.io/v1", "VirtualMachineInstance")
    assert [(c["name"], c.get("priority", 0)) for c in vmi.printer_columns] == [
        ("Age", 0), ("Phase", 0), ("IP", 0), ("NodeName", 0), ("Ready", 0),
        ("Live-Migratable", 1), ("Paused", 1)]
    dv = lookup("cdi.kubevirt.io/v1beta1", "DataVolume")
    assert [c["name"] for c in dv.printer_columns] == ["Phase", "Progress", "Restarts", "Age"]
    assert lookup("kubevirt.io/v1", "VirtualMachineInstanceMigration").printer_columns[1][
        "jsonPath"] == ".spec.vmiName"
    assert lookup("instancetype.kubevirt.io/v1beta1",
                  "VirtualMachineClusterPreference").printer_columns == ()
    assert hash(vm)  # the dict-valued fields stay out of the hash: Kind is still a dict key


def test_discovery_categories(sim: SimulatedClusters, dynamic_client: Any) -> None:
    dyn = dynamic_client(sim)
    vm = dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachine")
    assert vm.categories == ["all"]
    pref = dyn.resources.get(api_version="instancetype.kubevirt.io/v1beta1",
                             kind="VirtualMachineClusterPreference")
    assert not pref.categories
    assert pref.short_names == ["vmcp", "vmcps"]
