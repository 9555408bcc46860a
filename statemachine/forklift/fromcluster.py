"""Reading one Forklift Plan and what it refers to from a cluster (``--from-cluster CONTEXT``).

Everything goes through smrun's cluster layer (``statemachine.k8s.client``, the only importer of
the ``kubernetes`` library): objects are fetched one by one as the conversion asks for them, so
only the Plan's own Providers, maps, Hooks and Secrets are read, plus the Migrations of the
Plan's namespace (listed once: a Migration names its Plan, not the other way round). Ids are resolved by listing the
kind once on the *source* cluster: the context itself for a ``host`` source Provider, else the
cluster its URL and token reach (through a kubeconfig written to a private temporary folder and
removed afterwards).

It writes nothing to any cluster.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from statemachine.errors import DefinitionError, NotFound, PreflightError, Problem
from statemachine.forklift.credentials import is_host, kubeconfig_for
from statemachine.forklift.documents import InputObject, Origin
from statemachine.forklift.inventory import Inventory
from statemachine.forklift.objectset import ObjectSet
from statemachine.forklift.shape import API_VERSION
from statemachine.k8s import ObjectRef

__all__ = ["ClusterReader"]


class ClusterReader:
    """The Forklift objects of one cluster context; use as a context manager (closes clients)."""

    def __init__(self, *, context: str, kubeconfig: Path | None, namespace: str) -> None:
        self.context = context
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self._tmp = tempfile.TemporaryDirectory(prefix="smrun-import-")
        os.chmod(self._tmp.name, 0o700)
        self._clusters: list[Any] = []
        self.where = f"cluster {context}"
        self._cluster = self._connect("forklift", kubeconfig, context)

    def __enter__(self) -> ClusterReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for cluster in self._clusters:
            cluster.close()
        self._clusters.clear()
        self._tmp.cleanup()

    def _connect(self, name: str, kubeconfig: Path | None, context: str | None) -> Any:
        from statemachine.k8s.client import connect

        cache = Path(self._tmp.name) / f"cache-{len(self._clusters)}"
        cluster = connect(name=name, kubeconfig=kubeconfig, context=context, cache_dir=cache)
        self._clusters.append(cluster)
        return cluster

    def fetch(self, api_version: str, kind: str, namespace: str, name: str) -> InputObject | None:
        try:
            obj = self._cluster.get(ObjectRef(api_version, kind, namespace, name))
        except NotFound:  # the kind itself is not served
            if api_version == API_VERSION:
                raise PreflightError(f"{self.where}: {kind} ({api_version}) is not served: is "
                                     "Forklift installed there?") from None
            return None
        if obj is None:
            return None
        # A GET answer names its kind; keep the identity we asked for in any case.
        return InputObject({**obj, "apiVersion": api_version, "kind": kind}, Origin(self.where))

    def objects(self) -> ObjectSet:
        """The cluster's objects, fetched on demand; the namespace's Migrations (which carry a
        warm plan's cutover and are found by the Plan they name, not by name) listed at once."""
        try:
            items = self._cluster.list(API_VERSION, "Migration", namespace=self.namespace)
        except NotFound:
            items = []
        migrations = [InputObject({**m, "apiVersion": API_VERSION, "kind": "Migration"},
                                  Origin(self.where)) for m in items]
        return ObjectSet(migrations, fetcher=self.fetch, where=self.where)

    def plan(self, objects: ObjectSet, name: str) -> InputObject:
        plan = objects.find(API_VERSION, "Plan", self.namespace, name)
        if plan is None:
            problem = Problem(self.where, "", f"no Plan {self.namespace}/{name} ({API_VERSION})")
            raise DefinitionError(str(problem), [problem])
        return plan

    def inventory(self, objects: ObjectSet, plan: InputObject) -> Inventory:
        """Ids resolved on the source Provider's cluster, connected to on first need."""
        cluster: list[Any] = []

        def lister(api_version: str, kind: str) -> Sequence[Mapping[str, Any]]:
            if not cluster:
                cluster.append(self._source_cluster(objects, plan))
            try:
                items: Sequence[Mapping[str, Any]] = cluster[0].list(api_version, kind)
            except NotFound:
                return []
            return items

        return Inventory(lister=lister, where="the source provider's cluster")

    def _source_cluster(self, objects: ObjectSet, plan: InputObject) -> Any:
        raw = plan.spec["provider"]["source"]
        ns = str(raw.get("namespace") or plan.namespace)
        provider = objects.need(API_VERSION, "Provider", ns, str(raw["name"]), referrer=plan,
                                path=("spec", "provider", "source"))
        if is_host(provider):
            return self._cluster
        secret_ref = provider.spec["secret"]
        secret = objects.need("v1", "Secret", str(secret_ref.get("namespace") or ns),
                              str(secret_ref.get("name")), referrer=provider, path=("spec", "secret"))
        config = kubeconfig_for(provider, secret)
        path = Path(self._tmp.name) / "source.kubeconfig"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(config.text)
        return self._connect("source", path, config.context)
