"""The built-in ``kubevirt`` provider: KubeVirt to KubeVirt, entirely declarative.

Every path it supports is a built-in itinerary (``itineraries/<path>.yaml``): the pipeline, the
predicates and every state are in that YAML, none in Python. It does not talk to a cluster.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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

    def itineraries(self) -> dict[str, Path]:
        """The built-in itineraries, installed under their names (``spec.itinerary: live``)."""
        return {name: builtin_itinerary_path(name) for name in builtin_itinerary_names()}
