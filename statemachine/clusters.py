"""From a Plan to its two :class:`~statemachine.k8s.Cluster` objects.

Real clusters: kubeconfig + context of ``spec.source``/``spec.target`` through
``statemachine.k8s.client.connect``. ``spec.simulation``: start ``SimulatedClusters`` in this
process from the seed and connect to them through their kubeconfig with the same real client
over HTTP (never an in-process shortcut), so a demo exercises exactly what a real run does.
It does not check permissions (see :mod:`statemachine.engine.preflight`). It sits beside the
command line, not in the engine: the caller composes the clusters, and the engine never imports
the simulator (tests/test_layers.py).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statemachine.k8s import Cluster
from statemachine.k8s.retry import RetryPolicy
from statemachine.plan import Plan

logger = logging.getLogger(__name__)


@dataclass
class Connection:
    """The clusters of one run; :meth:`close` closes them (and stops a simulator we started)."""

    source: Cluster
    target: Cluster
    simulator: Any = None
    servers: dict[str, str] = field(default_factory=dict)
    _tmp: str | None = None

    def close(self) -> None:
        for c in {id(self.source): self.source, id(self.target): self.target}.values():
            try:
                c.close()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_plan(plan: Plan, *, cache_dir: Path | None = None,
                 retry_policy: RetryPolicy | None = None) -> Connection:
    """Connect to the plan's clusters (starting simulated ones for ``spec.simulation``);
    ``retry_policy``: how long the clients retry a transient error (default theirs)."""
    from statemachine.k8s.client import connect

    tmp = None
    if cache_dir is None:
        tmp = tempfile.mkdtemp(prefix="smrun-cache-")
        cache_dir = Path(tmp)
    sim = None
    try:
        if plan.simulation is not None:
            from statemachine.sim.cluster import SimulatedClusters

            options: dict[str, Any] = {"kubeconfig_out": cache_dir / "sim-kubeconfig"}
            if plan.simulation.tick is not None:
                options["tick"] = plan.simulation.tick
            sim = SimulatedClusters(seed=plan.simulation.seed, **options)
            sim.start()
            # A seed says what exists (VMs that should run...); let the simulated controllers
            # bring it there before preflight looks, as on a real cluster.
            if not sim.settle():
                logger.warning("simulated clusters did not settle; continuing")
            refs: dict[str, tuple[Path | None, str | None]] = {
                "source": (sim.kubeconfig_path, "source"), "target": (sim.kubeconfig_path, "target")}
            servers = {n: sim.url(n) for n in ("source", "target")}
        else:
            refs = {"source": (plan.source.kubeconfig, plan.source.context),
                    "target": (plan.target.kubeconfig, plan.target.context)}
            servers = {}
        source = connect(name="source", kubeconfig=refs["source"][0], context=refs["source"][1],
                         cache_dir=cache_dir, retry_policy=retry_policy)
        target = connect(name="target", kubeconfig=refs["target"][0], context=refs["target"][1],
                         cache_dir=cache_dir, retry_policy=retry_policy)
    except BaseException:
        if sim is not None:
            sim.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Connection(source, target, sim, servers, tmp)
