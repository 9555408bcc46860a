"""Two simulated clusters in one process: :class:`SimulatedClusters`.

.. code-block:: python

    with SimulatedClusters(seed="seed.yaml", kubeconfig_out=tmp / "kubeconfig") as sim:
        sim.kubeconfig_path      # contexts "source", "target" (user admin), "<cluster>-<user>"
        sim.url("source")        # http://127.0.0.1:PORT
        sim.store("target")      # the Store behind the target API server
        sim.token("source", "viewer")

Each cluster gets a :class:`~statemachine.sim.store.Store`, an
:class:`~statemachine.sim.apiserver.ApiServer` on its own random loopback port, and a controller
:class:`~statemachine.sim.controller.Runner` (controllers from ``statemachine.sim.controllers``).
Both share one :class:`~statemachine.sim.controller.SimNetwork`. Seeding order per cluster: the
namespaces ``default`` and ``kube-system`` and the ``default/kubernetes`` Service (10.96.0.1);
``statemachine.sim.defaults.base_objects(cluster)`` if
that module exists (the KubeVirt CR, CA ConfigMaps, ...); then the seed file's objects (a seed
object replaces a default with the same identity); every namespace they reference is created.
Seeded objects keep their ``status``; a seeded ``Bound`` claim gets its PersistentVolume
(``volumes.seed_volumes``). Before all of them, the bootstrap RBAC roles
(``rbacdefaults``). Users: ``admin`` (cluster-admin) plus every ``User`` subject
of a seeded binding, each with its own bearer token per cluster.
"""
from __future__ import annotations

import base64
import importlib
import importlib.util
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from statemachine.sim import auth, crd, events, rbacdefaults, volumes
from statemachine.sim.apiserver import IDLE_TIMEOUT, ApiServer
from statemachine.sim.controller import (DEFAULT_TICK, ClusterContext, Runner, SimNetwork,
                                         load_controllers)
from statemachine.sim.faults import FaultInjector
from statemachine.sim.requestlog import RequestLog
from statemachine.sim.seed import CLUSTERS, load_seed
from statemachine.sim.store import DEFAULT_HISTORY, Obj, Store
from statemachine.sim.tls import ServerCert, make_cert


def _default_objects(cluster: str) -> list[Obj]:
    bootstrap = rbacdefaults.bootstrap_objects()
    if importlib.util.find_spec("statemachine.sim.defaults") is None:
        return bootstrap
    module = importlib.import_module("statemachine.sim.defaults")
    return [*bootstrap, *module.base_objects(cluster)]


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace") or "",
            meta.get("name", ""))


#: ``default/kubernetes``, which kube-apiserver creates and keeps: the first IP of the service
#: range (so a Service naming 10.96.0.1 is refused as already allocated), port 443 to 6443.
KUBERNETES_SERVICE: dict[str, Any] = {
    "metadata": {"name": "kubernetes", "namespace": "default",
                 "labels": {"component": "apiserver", "provider": "kubernetes"}},
    "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
             "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
             "sessionAffinity": "None", "type": "ClusterIP"}}


class SimulatedClusters:
    """Context manager running the ``source`` and ``target`` clusters (see module docstring)."""

    def __init__(self, seed: str | Path | Mapping[str, Any] | None = None, *,
                 tick: float = DEFAULT_TICK,
                 fault_rate: float = 0.0, request_log: str | Path | None = None,
                 kubeconfig_out: str | Path | None = None, controllers: bool = True,
                 fault_seed: int | None = None, tls: bool = True,
                 history: int = DEFAULT_HISTORY, idle_timeout: float = IDLE_TIMEOUT,
                 event_ttl: float = events.DEFAULT_TTL) -> None:
        self._seed = load_seed(seed)  # validate before anything starts
        self.tick = tick
        self.fault_rate = fault_rate
        self.fault_seed = fault_seed
        self.request_log_path = Path(request_log) if request_log else None
        self._kubeconfig_out = Path(kubeconfig_out) if kubeconfig_out else None
        self._with_controllers = controllers
        self._tls = tls
        self._history = history
        self._event_ttl = event_ttl
        self._idle_timeout = idle_timeout
        self.cert: ServerCert | None = None
        self.network = SimNetwork()
        self.contexts: dict[str, ClusterContext] = {}
        self.servers: dict[str, ApiServer] = {}
        self.runners: dict[str, Runner] = {}
        self._tokens: dict[str, dict[str, str]] = {}  # cluster -> user -> token
        self._tmpdir: str | None = None
        self._log: RequestLog | None = None
        self.kubeconfig_path = Path()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> SimulatedClusters:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Seed, bind and start both clusters; on any failure, undo what was started."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        faults = FaultInjector(self.fault_rate, seed=self.fault_seed) if self.fault_rate else None
        self._log = RequestLog(self.request_log_path) if self.request_log_path else None
        self._tmpdir = tempfile.mkdtemp(prefix="smrun-sim-")
        self.cert = make_cert(Path(self._tmpdir)) if self._tls else None
        ssl_context = self.cert.server_context() if self.cert is not None else None
        for name in CLUSTERS:
            store = Store(history=self._history)
            events.configure(store, self._event_ttl)
            crd.attach(store)
            ctx = ClusterContext(name, store, self.network, self.contexts, self.tick)
            self.contexts[name] = ctx
            self.network.clusters[name] = ctx
            users = self._populate(name, store)
            self._tokens[name] = {u: f"sim-{name}-{u}-{secrets.token_hex(12)}" for u in users}
            server = ApiServer(name, store, tokens={t: u for u, t in self._tokens[name].items()},
                               faults=faults, request_log=self._log,
                               ssl_context=ssl_context, idle_timeout=self._idle_timeout)
            self.servers[name] = server
        for name, ctx in self.contexts.items():
            self.runners[name] = Runner(ctx, load_controllers() if self._with_controllers else [])
        for server in self.servers.values():
            server.start()
        for runner in self.runners.values():
            runner.start()
        self.kubeconfig_path = self._write_kubeconfig()

    def settle(self, *, quiet_ticks: int = 3, timeout: float = 15.0) -> bool:
        """Wait until every cluster's controllers have had nothing to do for ``quiet_ticks`` ticks:
        seeded VMs are running, DataVolumes imported, and so on, as on a real cluster whose
        objects existed before smrun looked. False if ``timeout`` passed first (a controller that
        keeps requeueing, e.g. something waiting on what will never come)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r.quiet_ticks >= quiet_ticks for r in self.runners.values() if r.controllers):
                return True
            time.sleep(self.tick)
        return False

    def stop(self) -> None:
        """Stop controllers and servers (ending every watch); idempotent."""
        for runner in self.runners.values():
            runner.stop()
        for server in self.servers.values():
            server.stop()
        for ctx in self.contexts.values():
            ctx.store.close()
        if self._log is not None:
            self._log.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _populate(self, cluster: str, store: Store) -> list[str]:
        objects: dict[tuple[str, str, str, str], Obj] = {}
        for obj in [*_default_objects(cluster), *self._seed[cluster]]:
            objects[_identity(obj)] = obj
        # Seeded CRDs first: the kinds they define are then known below.
        crd.seed(store, [o for o in objects.values() if crd.is_crd(o)])
        namespaces = ["default", "kube-system"]
        for obj in objects.values():
            kind = store.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
            if kind is None:
                continue
            ns = (obj.get("metadata") or {}).get("namespace") or "default"
            if kind.kind == "Namespace":
                ns = obj["metadata"]["name"]
            elif not kind.namespaced:
                continue
            if ns not in namespaces:
                namespaces.append(ns)
        for ns in namespaces:
            if ("v1", "Namespace", "", ns) not in objects:
                store.create("Namespace", {"metadata": {"name": ns}})
        if ("v1", "Service", "default", "kubernetes") not in objects:
            # kube-apiserver's own Service, which holds the range's first IP.
            store.create("Service", KUBERNETES_SERVICE, manager="kube-apiserver")
        for obj in sorted(objects.values(), key=lambda o: o.get("kind") != "Namespace"):
            if not crd.is_crd(obj):
                store.create(f"{obj['apiVersion']}/{obj['kind']}", obj, keep_status=True)
        # Seeded Bound claims get the PersistentVolumes a real cluster would have (volumes.py).
        volumes.seed_volumes(store)
        users = [auth.ADMIN]
        users += [u for u in auth.users_in(list(objects.values())) if u != auth.ADMIN]
        return users

    def _write_kubeconfig(self) -> Path:
        if self._kubeconfig_out is not None:
            path = self._kubeconfig_out
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            assert self._tmpdir is not None
            path = Path(self._tmpdir) / "kubeconfig"
        clusters, users, contexts = [], [], []
        for name in CLUSTERS:
            entry_cluster: dict[str, Any] = {"server": self.url(name)}
            if self.cert is not None:
                entry_cluster["certificate-authority-data"] = base64.b64encode(
                    self.cert.pem()).decode()
            clusters.append({"name": name, "cluster": entry_cluster})
            for user, token in self._tokens[name].items():
                entry = name if user == auth.ADMIN else f"{name}-{user}"
                users.append({"name": entry, "user": {"token": token}})
                contexts.append({"name": entry, "context": {"cluster": name, "user": entry,
                                                            "namespace": "default"}})
        doc = {"apiVersion": "v1", "kind": "Config", "clusters": clusters, "users": users,
               "contexts": contexts, "current-context": "source", "preferences": {}}
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        path.chmod(0o600)
        return path

    # ------------------------------------------------------------------ accessors
    def url(self, cluster: str) -> str:
        return self.servers[cluster].url

    @property
    def ca_path(self) -> Path | None:
        """The PEM file clients verify the servers with (``None`` when serving plain http)."""
        return self.cert.cert_path if self.cert is not None else None

    def store(self, cluster: str) -> Store:
        return self.contexts[cluster].store

    def token(self, cluster: str, user: str = auth.ADMIN) -> str:
        return self._tokens[cluster][user]

    def users(self, cluster: str) -> list[str]:
        return list(self._tokens[cluster])

    def context_name(self, cluster: str, user: str = auth.ADMIN) -> str:
        return cluster if user == auth.ADMIN else f"{cluster}-{user}"
