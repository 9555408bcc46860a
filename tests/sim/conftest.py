"""Fixtures for the simulator's tests.

- ``shop_clusters``: both simulated clusters, fast ticks (0.02 s), namespace ``shop`` on each.
- ``quiet``: clusters without the KubeVirt/CDI controllers (the garbage collector and namespace
  controller still run), and three real clients of its source cluster: ``core`` (the
  ``kubernetes`` client's CoreV1Api), ``light`` (lightkube) and ``kube`` (kubectl).
"""
from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from lightkube import Client as LightClient
from lightkube import KubeConfig

from statemachine.sim.cluster import SimulatedClusters
from tests.conftest import kubectl_for

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def shop_clusters(make_sim: Callable[..., SimulatedClusters]) -> SimulatedClusters:
    sim = make_sim(tick=0.02)
    for name in ("source", "target"):
        sim.store(name).create("Namespace", {"metadata": {"name": "shop"}})
    return sim


@pytest.fixture
def quiet(make_sim: Callable[..., SimulatedClusters]) -> SimulatedClusters:
    """Clusters without KubeVirt controllers: objects stay as the test writes them."""
    return make_sim(controllers=False)


@pytest.fixture
def core(quiet: SimulatedClusters) -> Iterator[client.CoreV1Api]:
    api = config.new_client_from_config(config_file=str(quiet.kubeconfig_path), context="source")
    yield client.CoreV1Api(api)
    api.close()


@pytest.fixture
def light(quiet: SimulatedClusters) -> LightClient:
    return LightClient(config=KubeConfig.from_file(quiet.kubeconfig_path), namespace="default")


@pytest.fixture
def kube(quiet: SimulatedClusters, tmp_path: Path) -> Kubectl:
    return kubectl_for(quiet, tmp_path)
