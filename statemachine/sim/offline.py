"""Offline reads for a simulated plan: the objects its clusters would start with.

``SeedReads`` implements ``statemachine.render.ReadSource`` over a seed file plus the simulator's
default objects (KubeVirt CR, CA ConfigMaps, storage classes), so ``smrun render`` and the static
part of ``smrun validate`` work with no cluster. It starts no server and runs no controller.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from statemachine.errors import DefinitionError, KindNotServed
from statemachine.plan import Plan

__all__ = ["SeedReads", "seed_reads"]


class SeedReads:
    """A :class:`ReadSource` over the objects of a simulation seed file."""

    def __init__(self, objects: Mapping[str, Sequence[Mapping[str, Any]]], file: str = "<seed>") -> None:
        self.file = file
        self._objects = objects
        self._defined: dict[str, set[tuple[str, str]]] = {}  # per cluster: kinds its seed's CRDs add
        self._index: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        for cluster, items in objects.items():
            for obj in items:
                meta = obj.get("metadata") or {}
                key = (cluster, str(obj.get("apiVersion", "")), str(obj.get("kind", "")),
                       str(meta.get("namespace") or ""), str(meta.get("name", "")))
                self._index[key] = dict(obj)  # later objects replace earlier ones

    @classmethod
    def from_file(cls, path: Path) -> SeedReads:
        """The objects a simulated cluster starts with: the simulator's defaults (KubeVirt CR,
        CA ConfigMaps, storage classes), replaced by the seed file's objects of the same identity.

        A malformed seed is a :class:`DefinitionError` naming the file and field.
        """
        from statemachine.sim.seed import CLUSTERS, load_seed

        seed = load_seed(path)
        objects: dict[str, list[Mapping[str, Any]]] = {}
        for cluster in CLUSTERS:
            objects[cluster] = [*_simulator_defaults(cluster), *seed.get(cluster, [])]
        return cls(objects, str(path))

    def served(self, cluster: str, api_version: str, kind: str) -> bool:
        """Whether the simulated ``cluster`` serves the kind: the simulator's own kinds and
        those the seed's CustomResourceDefinitions for that cluster define."""
        from statemachine.sim.kinds import KindRegistry

        if KindRegistry.default().by_kind(api_version, kind) is not None:
            return True
        if cluster not in self._defined:
            objects = [dict(o) for o in self._objects.get(cluster, ())]
            defined: set[tuple[str, str]] = set()
            if any(o.get("kind") == "CustomResourceDefinition" for o in objects):
                from statemachine.sim import crd

                defined = crd.seed_kinds(objects)
            self._defined[cluster] = defined
        return (api_version, kind) in self._defined[cluster]

    def kinds_served(self, cluster: str, api_version: str) -> list[str]:
        """The kinds the simulated ``cluster`` serves in ``api_version`` (for a "did you mean")."""
        from statemachine.sim.kinds import KindRegistry

        group, _, version = api_version.rpartition("/")
        self.served(cluster, api_version, "")  # fills the seed's CRD kinds for this cluster
        return sorted({k.kind for k in KindRegistry.default().in_group_version(group, version)}
                      | {k for v, k in self._defined.get(cluster, set()) if v == api_version})

    def get(self, cluster: str, api_version: str, kind: str, namespace: str,
            name: str) -> dict[str, Any] | None:
        found = self._index.get((cluster, api_version, kind, namespace, name))
        if found is None and not self.served(cluster, api_version, kind):
            # As a live cluster's discovery would answer: preflight's one line, not "not found".
            raise KindNotServed(f"{kind} ({api_version}) is not served by the simulated {cluster} "
                                "cluster", cluster=cluster, api_version=api_version, kind=kind)
        if found is None and namespace == "default":
            # Seeds may leave namespaced objects' namespace out; the API server defaults it.
            found = self._index.get((cluster, api_version, kind, "", name))
        return found


def _simulator_defaults(cluster: str) -> list[Mapping[str, Any]]:
    from statemachine.sim.defaults import base_objects

    return list(base_objects(cluster))


def seed_reads(plan: Plan) -> SeedReads:
    """The offline read source of a simulated plan."""
    if plan.simulation is None:
        raise DefinitionError(f"{plan.path}: spec.simulation: required to read objects offline")
    return SeedReads.from_file(plan.simulation.seed)
