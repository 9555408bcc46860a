"""A plan's simulated clusters as :class:`~statemachine.k8s.Cluster` objects (public API).

``statemachine.SimulatedClusters`` lets a Python caller run a plan that has ``spec.simulation``
without the command line::

    with SimulatedClusters(plan) as clusters:
        clusters.source, clusters.target   # Cluster objects: the kubernetes client over HTTPS
        clusters.kubeconfig                # contexts "source", "target" (+ one per seeded user)
        clusters.servers                   # {"source": "https://127.0.0.1:PORT", "target": ...}
        clusters.simulator                 # statemachine.sim.cluster.SimulatedClusters

On entry it starts the two simulated clusters from the plan's seed (and ``tick``), waits until
their controllers have settled (seeded VMs running, as on a cluster that existed before smrun
looked) and connects to them through the kubeconfig it wrote, with the same client a real run
uses: never an in-process shortcut. On exit it closes the clients and stops the servers.
``smrun run`` gets its simulated clusters from here too (:mod:`statemachine.clusters`).

It runs nothing and checks nothing: preflight is :func:`statemachine.preflight`, running is
:class:`statemachine.Engine`. The simulator is imported on :meth:`start`, not with this module,
so ``statemachine.SimulatedClusters`` costs nothing until used.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from statemachine.errors import UsageError

if TYPE_CHECKING:
    from statemachine.k8s import Cluster
    from statemachine.k8s.retry import RetryPolicy
    from statemachine.plan import Plan
    from statemachine.sim.cluster import SimulatedClusters as Simulator

logger = logging.getLogger(__name__)

__all__ = ["SimulatedClusters"]

_T = TypeVar("_T")


class SimulatedClusters:
    """The ``source`` and ``target`` simulated clusters of ``plan.simulation`` (a context manager).

    ``plan`` is a loaded :class:`~statemachine.plan.Plan` or the path of a plan file.
    ``cache_dir`` holds the clients' discovery cache and the kubeconfig (default: a temporary
    folder removed on :meth:`stop`). ``settle_timeout`` bounds the wait for the controllers
    (a warning is logged, not raised, when they do not settle in time). ``retry_policy``: how
    long the clients retry a transient error (default: theirs).
    """

    def __init__(self, plan: Plan | str | Path, *, cache_dir: str | Path | None = None,
                 settle_timeout: float = 15.0, retry_policy: RetryPolicy | None = None) -> None:
        if isinstance(plan, (str, Path)):
            from statemachine.plan import load_plan

            plan = load_plan(plan)
        if plan.simulation is None:
            raise UsageError(f"{plan.path}: the plan has no spec.simulation: connect to its "
                             "clusters with statemachine.connect instead")
        self.plan = plan
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._settle_timeout = settle_timeout
        self._retry_policy = retry_policy
        self._tmp: str | None = None
        self._simulator: Simulator | None = None
        self._source: Cluster | None = None
        self._target: Cluster | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> SimulatedClusters:
        """Start the clusters and connect to them; on any failure, undo what was started."""
        if self._simulator is not None:
            return self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from statemachine.k8s.client import connect
        from statemachine.sim.cluster import SimulatedClusters as Simulator

        simulation = self.plan.simulation
        assert simulation is not None
        if self._cache_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="smrun-cache-")
            self._cache_dir = Path(self._tmp)
        options: dict[str, Any] = {"kubeconfig_out": self._cache_dir / "sim-kubeconfig"}
        if simulation.tick is not None:
            options["tick"] = simulation.tick
        self._simulator = Simulator(seed=simulation.seed, **options)
        self._simulator.start()
        # A seed says what exists (VMs that should run...); let the simulated controllers bring
        # it there before anyone looks, as on a real cluster.
        if not self._simulator.settle(timeout=self._settle_timeout):
            logger.warning("simulated clusters did not settle; continuing")
        kubeconfig = self._simulator.kubeconfig_path
        self._source = connect(name="source", kubeconfig=kubeconfig, context="source",
                               cache_dir=self._cache_dir, retry_policy=self._retry_policy)
        self._target = connect(name="target", kubeconfig=kubeconfig, context="target",
                               cache_dir=self._cache_dir, retry_policy=self._retry_policy)

    def stop(self) -> None:
        """Close the clients, stop the servers and remove the temporary folder (idempotent)."""
        for cluster in (self._source, self._target):
            if cluster is not None:
                try:
                    cluster.close()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    logger.debug("closing a simulated cluster's client failed", exc_info=True)
        self._source = self._target = None
        if self._simulator is not None:
            self._simulator.stop()
            self._simulator = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> SimulatedClusters:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what a caller uses -----------------------------------------------------------------
    @property
    def source(self) -> Cluster:
        return self._running(self._source)

    @property
    def target(self) -> Cluster:
        return self._running(self._target)

    @property
    def clusters(self) -> dict[str, Cluster]:
        """``{"source": ..., "target": ...}``, the mapping preflight and the engine take."""
        return {"source": self.source, "target": self.target}

    @property
    def simulator(self) -> Simulator:
        """The running simulator (its stores, users and tokens), for tests and demos."""
        return self._running(self._simulator)

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig of both clusters: contexts ``source``, ``target`` (user admin) and
        ``<cluster>-<user>`` for every user the seed's RBAC names (kubectl works with it)."""
        return self.simulator.kubeconfig_path

    @property
    def servers(self) -> dict[str, str]:
        """The API server URLs, ``{"source": ..., "target": ...}`` (the engine's ``servers``)."""
        return {name: self.simulator.url(name) for name in ("source", "target")}

    def _running(self, value: _T | None) -> _T:
        if value is None:
            raise UsageError("the simulated clusters are not running: use `with "
                             "SimulatedClusters(plan) as clusters:` (or call start())")
        return value
