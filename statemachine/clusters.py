"""From a Plan to its two :class:`~statemachine.k8s.Cluster` objects.

Real clusters: kubeconfig + context of ``spec.source``/``spec.target`` through
``statemachine.k8s.client.connect``. ``spec.simulation``: start them in this process
(:class:`statemachine.simulated.SimulatedClusters`, the public ``statemachine.SimulatedClusters``),
which connects through their kubeconfig with the same real client over HTTPS (never an
in-process shortcut), so a demo exercises exactly what a real run does.
It does not check permissions (see :mod:`statemachine.engine.preflight`). It sits beside the
command line, not in the engine: the caller composes the clusters, and the engine never imports
the simulator (tests/test_layers.py).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statemachine.k8s import Cluster
from statemachine.k8s.retry import RetryPolicy
from statemachine.plan import Plan


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
    if plan.simulation is not None:
        from statemachine.simulated import SimulatedClusters

        # The same object a Python caller uses (statemachine.SimulatedClusters): it owns its
        # temporary folder, and Connection.close() stops it.
        sim = SimulatedClusters(plan, cache_dir=cache_dir, retry_policy=retry_policy).start()
        return Connection(sim.source, sim.target, sim, sim.servers)

    from statemachine.k8s.client import connect

    tmp = None
    if cache_dir is None:
        tmp = tempfile.mkdtemp(prefix="smrun-cache-")
        cache_dir = Path(tmp)
    try:
        source = connect(name="source", kubeconfig=plan.source.kubeconfig,
                         context=plan.source.context, cache_dir=cache_dir,
                         retry_policy=retry_policy)
        target = connect(name="target", kubeconfig=plan.target.kubeconfig,
                         context=plan.target.context, cache_dir=cache_dir,
                         retry_policy=retry_policy)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Connection(source, target, None, {}, tmp)
