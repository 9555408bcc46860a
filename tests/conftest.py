"""Shared pytest fixtures: simulated clusters and a kubectl runner.

- ``sim``: a running :class:`statemachine.sim.cluster.SimulatedClusters` (function scope) whose
  kubeconfig is ``tmp_path / "kubeconfig"``; stopped after the test.
- ``kubectl``: ``kubectl(*args, context="source", check=True, timeout=30)`` runs /usr/bin/kubectl
  against ``sim`` with its own cache dir and returns the ``CompletedProcess`` (text mode).
- ``make_sim``: a factory for tests that need options (seed, tick, fault_rate, ...).
- ``dynamic_client``: ``dynamic_client(sim, cluster="source", user="admin")`` builds a
  ``kubernetes`` DynamicClient from the sim's kubeconfig with a per-test discovery cache file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


@pytest.fixture(scope="session", autouse=True)
def _template_code_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite keeps compiled template code in its own folder, not the user's ~/.cache
    (subprocesses inherit the variable). Tests that exercise the cache set their own."""
    if "SMRUN_CACHE_DIR" in os.environ:
        yield
        return
    os.environ["SMRUN_CACHE_DIR"] = str(tmp_path_factory.mktemp("smrun-cache"))
    try:
        yield
    finally:
        os.environ.pop("SMRUN_CACHE_DIR", None)


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[Callable[..., SimulatedClusters]]:
    started: list[SimulatedClusters] = []

    def make(**options: Any) -> SimulatedClusters:
        options.setdefault("kubeconfig_out", tmp_path / f"kubeconfig-{len(started)}")
        sim = SimulatedClusters(**options)
        sim.start()
        started.append(sim)
        return sim
    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> SimulatedClusters:
    return make_sim(kubeconfig_out=tmp_path / "kubeconfig")


def run_kubectl(sim: SimulatedClusters, cache_dir: Path, *args: str, context: str = "source",
                check: bool = True, timeout: float = 30,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run kubectl against ``sim`` with its own cache dir; raise with its output on failure."""
    env = dict(os.environ, KUBECACHEDIR=str(cache_dir), HOME=str(cache_dir))
    cmd = [KUBECTL, "--kubeconfig", str(sim.kubeconfig_path), "--context", context,
           "--cache-dir", str(cache_dir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def kubectl_for(sim: SimulatedClusters,
                tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """kubectl bound to ``sim`` (:func:`run_kubectl`'s keywords), with a cache dir under
    ``tmp_path``; skips the test where kubectl is not installed."""
    if not Path(KUBECTL).exists():
        pytest.skip("kubectl is not installed (.ci/run installs it)")
    cache = tmp_path / "kubectl-cache"
    cache.mkdir(exist_ok=True)

    def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_kubectl(sim, cache, *args, **kw)
    return run


@pytest.fixture
def kubectl(sim: SimulatedClusters, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    return kubectl_for(sim, tmp_path)


@pytest.fixture
def dynamic_client(tmp_path: Path) -> Callable[..., Any]:
    from kubernetes import config
    from kubernetes.dynamic import DynamicClient

    def make(sim: SimulatedClusters, cluster: str = "source", user: str = "admin") -> Any:
        api = config.new_client_from_config(config_file=str(sim.kubeconfig_path),
                                            context=sim.context_name(cluster, user))
        cache = tmp_path / f"discovery-{cluster}-{user}-{id(sim)}.json"
        return DynamicClient(api, cache_file=str(cache))
    return make
