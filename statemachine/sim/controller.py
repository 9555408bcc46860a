"""A tiny controller framework for the simulated clusters.

How simulated controllers are written (the KubeVirt/CDI/Job controllers live in
``statemachine/sim/controllers/``; that package exposes ``all_controllers() -> list[Controller]``,
called once per cluster so every cluster gets fresh instances; when the package does not exist the
clusters run with no controllers):

.. code-block:: python

    class JobController(Controller):
        watches = ("Job",)                      # kind names (or "group/version/Kind")

        def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
            ...                                 # read/write ctx.store (or ctx.clusters["target"].store)
            return None                         # True = "call me again next tick even if nothing changes"

        def deleted(self, ctx: ClusterContext, obj: Obj) -> None:
            ...                                 # optional: the object is gone

Scheduling rules (one :class:`Runner` thread per cluster runs every controller of that cluster):

- A store event on a watched kind marks that object dirty; every ``tick`` seconds the runner calls
  ``reconcile`` once for each dirty object with a fresh copy read at that moment (the stored
  snapshot itself, read-only, for a controller with ``reads_only``; objects that vanished in
  between get ``deleted`` instead). So ``reconcile`` runs **at most once per tick per
  object**: write at most one phase per call, and the next phase follows a tick later, as upstream
  advances one phase per reconcile. Every write is a real watch event.
- ``reconcile`` returning truthy requeues the object for the next tick (use it when waiting on
  time or on another object without writing anything).
- Every ``resync_ticks`` ticks every object of every watched kind is reconciled (a safety net for
  cross-cluster conditions, e.g. a target store change a source-side controller waits for).
- Exceptions from a controller are logged and the object is retried next tick; they never stop
  the runner. ``Conflict``/``NotFound`` from racing writes are expected and logged at debug level.

What it does not do: leader election, rate limiting, work queues with backoff.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from statemachine.errors import Conflict, NotFound
from statemachine.sim import events, managedfields
from statemachine.sim.kinds import Kind
from statemachine.sim.store import Obj, Store, StoreEvent

log = logging.getLogger("statemachine.sim.controller")

DEFAULT_TICK = 0.05


class SimNetwork:
    """The simulated network between clusters: a table ``address -> cluster name``.

    A controller that serves something on an address (e.g. the KubeVirt synchronization
    controller, whose address goes into the KubeVirt CR ``status.synchronizationAddresses``)
    calls ``listen(address, cluster_name)``; a controller on the other cluster calls
    ``connect(address)`` to get the :class:`ClusterContext` behind it, or ``None`` when nothing
    listens there (a dial failure). ``partition``/``heal`` make ``connect`` fail on purpose.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, str] = {}
        self._down: set[str] = set()
        self.clusters: dict[str, ClusterContext] = {}

    def listen(self, address: str, cluster_name: str) -> None:
        with self._lock:
            self._listeners[address] = cluster_name

    def unlisten(self, address: str) -> None:
        with self._lock:
            self._listeners.pop(address, None)

    def connect(self, address: str) -> ClusterContext | None:
        with self._lock:
            name = self._listeners.get(address)
            if name is None or address in self._down:
                return None
        return self.clusters.get(name)

    def partition(self, address: str) -> None:
        with self._lock:
            self._down.add(address)

    def heal(self, address: str) -> None:
        with self._lock:
            self._down.discard(address)


@dataclass
class ClusterContext:
    """What a controller sees of its cluster and the world.

    ``clusters`` holds every simulated cluster by name (``"source"``, ``"target"``), this one
    included, so a controller can read or write the other cluster's store.
    """

    name: str
    store: Store
    network: SimNetwork
    clusters: dict[str, ClusterContext] = field(default_factory=dict)
    tick: float = DEFAULT_TICK
    #: Free-form shared state for controllers of this cluster (e.g. counters per object).
    state: dict[str, Any] = field(default_factory=dict)

    def others(self) -> list[ClusterContext]:
        """The other clusters."""
        return [c for n, c in self.clusters.items() if n != self.name]


class Controller:
    """Base class of simulated controllers; see the module docstring for the rules."""

    #: Kinds whose events trigger ``reconcile`` (kind names or ``group/version/Kind``).
    watches: tuple[str, ...] = ()
    #: The manager its writes are recorded for in managedFields (that of the upstream component
    #: it stands for); ``None``: chosen by module, see :func:`field_manager`.
    field_manager: str | None = None
    #: ``True``: ``reconcile`` is handed the store's own snapshot (``Store.peek``) instead of a
    #: copy. Only for controllers whose ``reconcile`` never changes the object it is handed or
    #: anything in it (their writes go through the store, which copies); it saves a deep copy per
    #: object, controller and tick.
    reads_only: bool = False

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        raise NotImplementedError

    def deleted(self, ctx: ClusterContext, obj: Obj) -> None:
        """Called once after a watched object was removed from the store."""

    def __repr__(self) -> str:
        return type(self).__name__


def load_controllers() -> list[Controller]:
    """Fresh controller instances from ``statemachine.sim.controllers.all_controllers()``.

    An absent package means no controllers; an error inside it propagates (it is a bug).
    """
    if importlib.util.find_spec("statemachine.sim.controllers") is None:
        return []
    module = importlib.import_module("statemachine.sim.controllers")
    factory: Callable[[], list[Controller]] | None = getattr(module, "all_controllers", None)
    return list(factory()) if factory is not None else []


_MANAGER_BY_MODULE = {"job": "kube-controller-manager", "pause": "kube-controller-manager",
                      "cdi": "cdi-controller", "import_source": "cdi-controller"}


def field_manager(controller: Controller) -> str:
    """The managedFields manager of ``controller``'s writes (virt-controller unless said)."""
    if controller.field_manager:
        return controller.field_manager
    module = type(controller).__module__.rpartition(".")[2]
    return _MANAGER_BY_MODULE.get(module, "virt-controller")


DirtyKey = tuple[int, Kind, str, str]  # (controller index, kind, namespace, name)


class Runner:
    """Runs the controllers of one cluster from one background thread."""

    def __init__(self, ctx: ClusterContext, controllers: list[Controller], *,
                 resync_ticks: int = 20) -> None:
        self.ctx = ctx
        self.controllers = controllers
        self.resync_ticks = max(1, resync_ticks)
        self._managers = [field_manager(c) for c in controllers]
        self._watch: dict[Kind, list[int]] = {}
        for i, c in enumerate(controllers):
            for name in c.watches:
                self._watch.setdefault(ctx.store.kind(name), []).append(i)
        self._dirty: dict[DirtyKey, Obj | None] = {}  # value: last DELETED snapshot, else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.ticks = 0
        self.quiet_ticks = 0  # consecutive ticks after which nothing was left to reconcile

    def _on_event(self, event: StoreEvent) -> None:
        idxs = self._watch.get(event.kind)
        if not idxs:
            return
        meta = event.obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        with self._lock:
            for i in idxs:
                self._dirty[(i, event.kind, ns, name)] = (
                    event.obj if event.type == "DELETED" else None)

    def start(self) -> None:
        if not self.controllers:
            return
        self._unsubscribe = self.ctx.store.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._loop, name=f"sim-controllers-{self.ctx.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.ctx.tick):
            self.step()
            events.sweep(self.ctx.store)  # expired Events go, as an apiserver's leases run out

    def step(self) -> None:
        """One tick: reconcile every dirty object once (and everything on resync ticks)."""
        self.ticks += 1
        with self._lock:
            batch, self._dirty = self._dirty, {}
        # Seeded objects produce no store events, so the first tick reconciles everything too.
        if self.ticks == 1 or self.ticks % self.resync_ticks == 0:
            for kind, idxs in self._watch.items():
                # Keys only: each object is read (copied) once below anyway.
                for ns, name in self.ctx.store.keys(kind):
                    for i in idxs:
                        batch.setdefault((i, kind, ns, name), None)
        for (i, kind, ns, name), deleted_obj in batch.items():
            if self._stop.is_set():
                return
            controller = self.controllers[i]
            current = (self.ctx.store.peek(kind, ns, name) if controller.reads_only
                       else self.ctx.store.try_get(kind, ns, name))
            try:
                with managedfields.acting_as(self._managers[i]):
                    if current is None:
                        if deleted_obj is not None:
                            controller.deleted(self.ctx, deleted_obj)
                        continue
                    requeue = controller.reconcile(self.ctx, current)
                if requeue:
                    with self._lock:
                        self._dirty.setdefault((i, kind, ns, name), None)
            except (Conflict, NotFound) as exc:
                log.debug("%s on %s %s/%s: %s (retrying)", controller, kind.kind, ns, name, exc)
                with self._lock:
                    self._dirty.setdefault((i, kind, ns, name), None)
            except Exception:  # a controller bug must not kill the cluster; retried next tick
                log.exception("%s failed on %s %s/%s", controller, kind.kind, ns, name)
                with self._lock:
                    self._dirty.setdefault((i, kind, ns, name), None)
        with self._lock:
            self.quiet_ticks = 0 if (self._dirty or batch) else self.quiet_ticks + 1
