"""The built-in ``kubevirt`` provider: KubeVirt to KubeVirt, entirely declarative.

Every path it supports is a built-in itinerary (``itineraries/<path>.yaml``); the status pipeline
is that itinerary's ``steps``; it adds no predicates beyond the itinerary's and implements no
state in Python (``phase`` always answers ``None``). It does not talk to a cluster.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from statemachine.providers import builtin_itinerary_names, builtin_itinerary_path

if TYPE_CHECKING:
    from statemachine.itinerary import Itinerary


class KubevirtProvider:
    """Migrates KubeVirt VMs between clusters with the built-in cold, warm and live itineraries."""

    name = "kubevirt"

    def supports_path(self, path: str) -> bool:
        return path in builtin_itinerary_names()

    def itinerary(self, path: str) -> Itinerary:
        from statemachine.itinerary import load_itinerary

        return load_itinerary(builtin_itinerary_path(path))

    def pipeline(self, path: str) -> list[str]:
        itinerary = self.itinerary(path)
        declared = getattr(itinerary, "pipeline", None)
        if declared:
            return list(declared)
        # No explicit pipeline: the distinct `step` names in state order.
        steps: list[str] = []
        for state in itinerary.states:
            step = getattr(state, "step", None)
            if step and step not in steps:
                steps.append(step)
        return steps

    def predicate(self, path: str) -> Mapping[str, str]:
        return {}

    def phase(self, vm_status: Mapping[str, Any]) -> str | None:
        return None
