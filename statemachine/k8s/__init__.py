"""The seam between smrun and a Kubernetes cluster.

``Cluster`` is the small interface the engine and preflight use; ``statemachine.k8s.client`` is
its only implementation and the only module in smrun that imports the ``kubernetes`` library
(imported lazily, so ``smrun validate`` and ``smrun render`` never load it). Nothing here talks to
a cluster. Objects are plain ``dict`` (JSON as the API server returns it).

The implementation is split by concern: ``client.py`` (``connect`` and ``KubeCluster``),
``errormap.py`` (every client failure → ``statemachine.errors``), ``retry.py`` (bounded backoff
with jitter, retries logged at WARNING) and ``informer.py`` (one shared list+watch per key).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

Obj = dict[str, Any]
PatchType = Literal["merge", "json"]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identifies one object on one cluster. ``namespace`` is ``""`` for cluster-scoped kinds."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any], *, default_namespace: str = "") -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(str(obj.get("apiVersion", "")), str(obj.get("kind", "")),
                   str(meta.get("namespace") or default_namespace), str(meta.get("name", "")))

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0] if "/" in self.api_version else ""

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True)
class ResourceKey:
    """What one shared watch covers: a kind in a namespace (``""`` = all namespaces)."""

    api_version: str
    kind: str
    namespace: str = ""


class Subscription(Protocol):
    def close(self) -> None: ...


WatchHandler = Callable[[EventType, Obj], None]


def resource_matches(rule_resources: Iterable[str], resource: str) -> bool:
    """Whether a rule's ``resources`` match ``resource`` (``"pods"``, or ``"pods/status"`` for a
    subresource), as Kubernetes' RBAC matches them (``ResourceMatches``). The one home of this
    rule in smrun: authorization (:meth:`ResourceRule.allows`) and a Role's grant
    (:meth:`ResourceRule.covers`) both ask here.

    ``*`` matches every resource and every subresource; a name matches only itself (``pods``
    not ``pods/status``, ``pods/status`` not ``pods``); ``*/sub`` matches the subresource ``sub``
    of any resource (not the resources themselves). Nothing else is a pattern: ``pods/*``
    matches only a subresource literally named ``*``, as upstream (no "every subresource of
    pods" wildcard)."""
    sub = resource.partition("/")[2]
    return any(r == "*" or r == resource or bool(sub and r == f"*/{sub}")
               for r in rule_resources)


@dataclass(frozen=True)
class ResourceRule:
    """One rule of a rules review: these verbs on these resources of these API groups."""

    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: frozenset[str]
    #: A rule limited to named objects grants nothing on the kind as a whole.
    resource_names: frozenset[str] = frozenset()

    def allows(self, verb: str, group: str, resource: str, name: str = "") -> bool:
        """Whether this rule allows ``verb`` on ``resource`` (``res`` or ``res/sub``, matched by
        :func:`resource_matches`) of ``group``, for the object ``name`` (``""``: the kind as a
        whole, which a rule limited to names never allows)."""
        return (("*" in self.verbs or verb in self.verbs)
                and ("*" in self.api_groups or group in self.api_groups)
                and resource_matches(self.resources, resource)
                and (not self.resource_names or bool(name and name in self.resource_names)))

    def covers(self, verb: str, group: str, resource: str, name: str = "") -> bool:
        """Whether this rule covers the permission to ``verb`` ``resource`` named ``name`` (""
        for any name), as Kubernetes' escalation check judges a Role's grant. Decision: the
        same judgement as :meth:`allows`, one permission at a time (upstream's Covers breaks a
        rule into single permissions and matches each as the authorizer does: ``*`` covers its
        field, ``*/sub`` any resource's ``sub``, a rule limited to names covers only those
        names, never "any name"); kept as its own name for what the caller asks."""
        return self.allows(verb, group, resource, name)


@dataclass(frozen=True)
class RulesReview:
    """What the current user may do in one namespace (a SelfSubjectRulesReview's answer).

    ``incomplete``: the server could not list every rule (an authorizer other than RBAC, or an
    error evaluating one): a verb it does not show may still be allowed, so ask for that one
    (SelfSubjectAccessReview)."""

    rules: tuple[ResourceRule, ...] = ()
    incomplete: bool = True

    def allows(self, verb: str, group: str, resource: str, name: str = "") -> bool:
        """Whether a rule allows the request (:meth:`ResourceRule.allows`)."""
        return any(r.allows(verb, group, resource, name) for r in self.rules)

    def covers(self, verb: str, group: str, resource: str, name: str = "") -> bool:
        """Whether a rule covers a Role's grant (:meth:`ResourceRule.covers`)."""
        return any(r.covers(verb, group, resource, name) for r in self.rules)

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> RulesReview:
        rules = tuple(ResourceRule(frozenset(r.get("verbs") or ()),
                                   frozenset(r.get("apiGroups") or ()),
                                   frozenset(r.get("resources") or ()),
                                   frozenset(r.get("resourceNames") or ()))
                      for r in status.get("resourceRules") or ())
        return cls(rules, bool(status.get("incomplete")))


class Cluster(Protocol):
    """One Kubernetes cluster as smrun sees it.

    Errors are raised as ``statemachine.errors.ClusterError`` subclasses (transient or permanent);
    implementations retry transient errors themselves a bounded number of times before raising.
    An implementation may also offer ``peek(ref)``: ``get`` without the copy, for read-only
    callers (the engine uses it for readiness checks when present).
    """

    name: str

    def get(self, ref: ObjectRef) -> Obj | None:
        """The object, or ``None`` if it does not exist. Served from the watch cache when one covers it."""
        ...

    def fetch(self, ref: ObjectRef) -> Obj | None:
        """The object read from the API server, never from a cache: for decisions that must not
        act on a view even milliseconds old (the hand-off check before undo)."""
        ...

    def list(self, api_version: str, kind: str, *, namespace: str = "",
             label_selector: str = "") -> list[Obj]: ...

    def create(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> Obj:
        """Create; raises ``Conflict`` if it exists."""
        ...

    def patch(self, ref: ObjectRef, patch: Any, *, patch_type: PatchType = "merge",
              subresource: str = "", dry_run: bool = False) -> Obj:
        """Patch; ``dry_run``: judged by the server (``dryRun=All``), nothing stored."""
        ...

    def delete(self, ref: ObjectRef) -> bool:
        """Request deletion (background propagation). False if it was already gone."""
        ...

    def watch(self, key: ResourceKey, handler: WatchHandler) -> Subscription:
        """Share one list+watch per ``key``; ``handler`` is called (from a watch thread) with every
        event after an initial ADDED for each existing object. Re-watches from the last
        resourceVersion when a stream ends, re-lists on 410."""
        ...

    def served(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (discovery)."""
        ...

    def can_i(self, verb: str, api_version: str, kind: str, namespace: str = "") -> bool:
        """SelfSubjectAccessReview for the current user."""
        ...

    def can_i_resource(self, verb: str, group: str, resource: str, namespace: str = "",
                       name: str = "") -> bool:
        """SelfSubjectAccessReview of ``verb`` on ``resource`` (``res`` or ``res/sub``, ``*``
        allowed: as a Role rule names it) of API group ``group``, in ``namespace`` (``""``:
        cluster-wide), on the object ``name`` (``""``: any)."""
        ...

    def resource_of(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        """(plural resource name, namespaced) from discovery; ``None`` if not served."""
        ...

    def rules(self, namespace: str) -> RulesReview:
        """SelfSubjectRulesReview: what the current user may do in ``namespace``."""
        ...

    def close(self) -> None: ...


def copy_obj(obj: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists and immutable scalars).

    Objects from the API server are only ever JSON, so this skips everything ``copy.deepcopy`` does
    for arbitrary Python (memo, ``__deepcopy__``, reductions): about five times faster, and the
    watch cache hands out a copy on every read (docs/performance.md). Anything else is shared as is.
    """
    if type(obj) is dict:
        return {k: copy_obj(v) for k, v in obj.items()}
    if type(obj) is list:
        return [copy_obj(v) for v in obj]
    return obj


def iter_refs(objs: Iterable[Mapping[str, Any]]) -> list[ObjectRef]:
    return [ObjectRef.of(o) for o in objs]


def default_kubeconfig() -> Path:
    """The kubeconfig a cluster reference without one means, as kubectl reads it: the first
    non-empty entry of ``$KUBECONFIG`` (``~`` expanded), else ``~/.kube/config``. The one owner
    of this rule: the plan loader and the client both ask here."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), None)
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where a pod's service account token, CA and namespace are mounted. Read at call time (module
attribute), so that a test can point it at files of its own."""


def in_cluster_server() -> str | None:
    """The API server a pod reaches, from ``KUBERNETES_SERVICE_HOST``/``_PORT`` (as client-go's
    in-cluster configuration finds it), or ``None`` outside a pod (no host, or no token file)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (SERVICE_ACCOUNT_DIR / "token").is_file():
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def uses_service_account(kubeconfig: Path | None) -> bool:
    """Whether a cluster reference without a kubeconfig means the pod's service account: none
    given, no default kubeconfig (a kubeconfig, when present, wins, as kubectl decides), and
    running in a pod. The one owner of this rule: the client, the operator's kopf login and its
    Plans' own-cluster side all ask here."""
    return kubeconfig is None and not default_kubeconfig().is_file() \
        and in_cluster_server() is not None
