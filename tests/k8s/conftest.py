"""Fixtures for the Kubernetes client tests.

- ``make_kube(sim, context="source", watch_timeout=(60, 60))``: a ``KubeCluster`` connected to a
  simulated cluster with fast retries and its own discovery cache dir; closed after the test.
- ``kube``: ``make_kube(sim)`` for the default ``sim``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine.k8s.client import KubeCluster, connect
from statemachine.k8s.retry import RetryPolicy

# Retries in tests: fast backoff, but the same bounded shape as production.
FAST_RETRY = RetryPolicy(attempts=8, base=0.01, cap=0.2, total=20.0)


@pytest.fixture
def make_kube(tmp_path: Path) -> Iterator[Callable[..., KubeCluster]]:
    made: list[KubeCluster] = []

    def make(sim: Any, *, context: str = "source",
             watch_timeout: tuple[int, int] = (60, 60)) -> KubeCluster:
        cluster = connect(name=context, kubeconfig=sim.kubeconfig_path, context=context,
                          cache_dir=tmp_path / f"cache-{context}-{len(made)}",
                          retry_policy=FAST_RETRY, watch_timeout=watch_timeout)
        made.append(cluster)
        return cluster
    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture
def kube(sim: Any, make_kube: Callable[..., KubeCluster]) -> KubeCluster:
    return make_kube(sim)
