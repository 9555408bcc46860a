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
import threading
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
    # Decision (issue 17, preflight round trips): the two clusters are connected at the same time
    # (the target on a helper thread). Each connect is ~13 sequential discovery requests (the
    # client's /version, /apis and one per group version); against real clusters those are round
    # trips, so two in parallel halve the wait. Errors are reported as before: the source's first.
    # A failed source does not wait for the target (Ctrl-C, an unreachable server being retried):
    # the helper closes its cluster when it gets one.
    lock = threading.Lock()
    abandoned = False
    outcome: dict[str, Any] = {}

    def target_side() -> None:
        try:
            cluster = connect(name="target", kubeconfig=plan.target.kubeconfig,
                              context=plan.target.context, cache_dir=cache_dir,
                              retry_policy=retry_policy)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc
            return
        with lock:
            if not abandoned:
                outcome["cluster"] = cluster
                return
        _close_quietly(cluster)

    helper = threading.Thread(target=target_side, name="smrun-connect-target", daemon=True)
    helper.start()
    try:
        source = connect(name="source", kubeconfig=plan.source.kubeconfig,
                         context=plan.source.context, cache_dir=cache_dir,
                         retry_policy=retry_policy)
        helper.join()
        if "error" in outcome:
            _close_quietly(source)
            raise outcome["error"]
        target: Cluster = outcome["cluster"]
    except BaseException:
        with lock:
            abandoned = True
            if "cluster" in outcome:
                _close_quietly(outcome.pop("cluster"))
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Connection(source, target, None, {}, tmp)


def _close_quietly(cluster: Cluster) -> None:
    try:
        cluster.close()
    except Exception:  # noqa: BLE001 - best effort: the connect error is what matters
        pass


class Pending:
    """A plan's clusters being connected on a helper thread (:func:`connect_ahead`).

    :meth:`result` waits for the :class:`Connection` or raises what connecting raised, exactly as
    :func:`connect_plan` would have at that point; :meth:`abandon` gives it up (a connection that
    arrives later is closed by the helper). Exactly one of the two decides its fate: after
    :meth:`result` returned, :meth:`abandon` does nothing.
    """

    def __init__(self, plan: Plan, cache_dir: Path | None,
                 retry_policy: RetryPolicy | None) -> None:
        self._lock = threading.Lock()
        self._outcome: dict[str, Any] = {}
        self._taken = False
        self._abandoned = False
        self._thread = threading.Thread(
            target=self._connect, args=(plan, cache_dir, retry_policy),
            name="smrun-connect", daemon=True)
        self._thread.start()

    def _connect(self, plan: Plan, cache_dir: Path | None,
                 retry_policy: RetryPolicy | None) -> None:
        try:
            conn = connect_plan(plan, cache_dir=cache_dir, retry_policy=retry_policy)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._outcome["error"] = exc
            return
        with self._lock:
            if not self._abandoned:
                self._outcome["connection"] = conn
                return
        conn.close()

    def result(self) -> Connection:
        self._thread.join()
        with self._lock:
            if "error" in self._outcome:
                raise self._outcome.pop("error")
            self._taken = True
            conn: Connection = self._outcome["connection"]
            return conn

    def abandon(self) -> None:
        with self._lock:
            if self._taken or self._abandoned:
                return
            self._abandoned = True
            conn = self._outcome.pop("connection", None)
        if conn is not None:
            conn.close()


def connect_ahead(plan: Plan, *, cache_dir: Path | None = None,
                  retry_policy: RetryPolicy | None = None) -> Pending:
    """Start connecting to a kubeconfig plan's clusters while the caller goes on (issue 17).

    Decision: ``smrun run`` and ``smrun validate`` connect as soon as the plan is loaded, and load
    the itinerary, import the engine and read the journal while discovery's round trips are under
    way (against a real cluster each is a network round trip; ~13 per cluster without a discovery
    cache). Connecting only reads (the server's version and API groups), so starting before the
    local checks are done applies nothing; their errors still come first, because the caller takes
    the connection (and any error connecting raised) where it connected before. The client
    library is imported here, on the caller's thread, before the helper starts (see
    :func:`statemachine.k8s.client.load_library`). Not for ``spec.simulation`` plans, whose
    clusters start in this process (use :func:`connect_plan`).
    """
    if plan.simulation is not None:
        raise ValueError("connect_ahead: a simulated plan's clusters start in-process")
    from statemachine.k8s.client import load_library

    load_library()
    return Pending(plan, cache_dir, retry_policy)
