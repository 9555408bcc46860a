"""Fixtures for the cold itinerary's tests (helpers are in ``offline.py``)."""
from __future__ import annotations

from typing import Any

import pytest

from upstream import shipped_validator


@pytest.fixture(scope="session")
def upstream_validator() -> Any:
    """(registry, validator) over the upstream schemas the simulator ships (and admits with).

    The registry is the simulator's plus ``export.kubevirt.io/v1`` (the version the templates
    use and the only one the upstream swagger defines), so export manifests are checked too.
    """
    from statemachine.sim.kinds import KINDS, Kind, KindRegistry

    kinds = list(KINDS)
    if not any(k.group == "export.kubevirt.io" and k.version == "v1" for k in kinds):
        kinds.append(Kind(group="export.kubevirt.io", version="v1", kind="VirtualMachineExport",
                          plural="virtualmachineexports", singular="virtualmachineexport",
                          namespaced=True, status_subresource=True,
                          list_kind="VirtualMachineExportList"))
    registry = KindRegistry(tuple(kinds))
    return registry, shipped_validator()
