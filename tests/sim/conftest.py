"""Fixtures for the simulator's controller tests.

- ``shop_clusters``: both simulated clusters, fast ticks (0.02 s), namespace ``shop`` on each.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest

from statemachine.sim.cluster import SimulatedClusters


@pytest.fixture
def shop_clusters(make_sim: Callable[..., SimulatedClusters]) -> SimulatedClusters:
    sim = make_sim(tick=0.02)
    for name in ("source", "target"):
        sim.store(name).create("Namespace", {"metadata": {"name": "shop"}})
    return sim
