"""What happens around a DELETE: options, preconditions, garbage collection, namespace termination.

- :func:`delete_options` reads ``DeleteOptions`` (body and query) as the apiserver does:
  ``propagationPolicy``, the legacy ``orphanDependents``, ``preconditions``, ``dryRun``; 422 for
  invalid combinations; a batch/v1 Job without a policy orphans its dependents (upstream keeps
  that default for API clients, with a ``Warning`` header; kubectl always sends ``Background``).
- :func:`finalizers_for` turns the policy into the ``orphan``/``foregroundDeletion`` finalizers;
  :func:`check_preconditions` answers 409 with the storage layer's message.
- :class:`GarbageCollector` plays kube-controller-manager's garbage collector and namespace
  controller for one store, on its own thread, started on first need: dependents whose owners
  are gone (by uid, or in another namespace) are deleted, or lose the dangling reference when
  another owner remains (a cluster-scoped dependent naming a namespaced owner kind is never
  collected for it, as upstream); ``Orphan`` owners release their dependents, then lose the finalizer;
  ``Foreground`` owners get their dependents deleted and stay until no dependent with
  ``blockOwnerDeletion`` is left; a ``Terminating`` namespace has its content deleted
  (respecting the content's finalizers), its ``status.conditions`` kept as upstream words them,
  and is removed once empty. The store calls into here; this module never touches the store's
  internals, only its public methods.
- Namespace admission: :func:`namespace_terminating` (403 for creates in a Terminating
  namespace) and :func:`check_deletable` (``default``, ``kube-system``, ``kube-public``);
  the ``/finalize`` subresource (:func:`finalize_namespace`).

What it does not do: graceful deletion of Pods (no kubelet: they go at once), validation of
the finalizer names sent to ``/finalize``, Events about GC (``OwnerRefInvalidNamespace``).
"""
from __future__ import annotations

import datetime as _dt
import logging
import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from statemachine.errors import ClusterError, Conflict, Forbidden, NotFound
from statemachine.sim import admission, validation
from statemachine.sim.kinds import Kind

if TYPE_CHECKING:
    from statemachine.sim.store import Store, StoreEvent

log = logging.getLogger("statemachine.sim.deletion")

Obj = dict[str, Any]
ORPHAN, FOREGROUND = "orphan", "foregroundDeletion"
POLICIES = ("Foreground", "Background", "Orphan")
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
JOB_ORPHAN_WARNING = ("child pods are preserved by default when jobs are deleted; set "
                      "propagationPolicy=Background to remove them or set "
                      "propagationPolicy=Orphan to suppress this warning")
#: ``names.SimpleNameGenerator``: 5 characters from this alphabet after a prefix of at most 58.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_PREFIX = 58


def generate_name(prefix: str) -> str:
    return prefix[:_MAX_PREFIX] + "".join(random.choice(_NAME_ALPHABET) for _ in range(5))


# --------------------------------------------------------------------------- DeleteOptions
@dataclass(frozen=True)
class DeleteRequest:
    propagation: str | None
    preconditions: dict[str, Any] | None
    dry_run: bool


def delete_options(kind: Kind, body: Any, query: Mapping[str, str],
                   query_dry_run: list[str] | None = None) -> DeleteRequest:
    """The effective options of a DELETE (body fields win over query parameters).
    ``query_dry_run``: every ``dryRun`` value of the query (``dryrun.from_query``)."""
    from statemachine.sim import dryrun

    opts: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    policy = opts.get("propagationPolicy", query.get("propagationPolicy"))
    orphan = opts.get("orphanDependents", query.get("orphanDependents"))
    if isinstance(orphan, str):
        orphan = orphan == "true"
    causes: list[validation.Cause] = []
    if orphan is not None and policy is not None:
        causes.append(validation.invalid_value(
            "propagationPolicy", policy, "orphanDependents and deletionPropagation cannot be both set"))
    elif policy is not None and policy not in POLICIES:
        causes.append(validation.not_supported("propagationPolicy", policy, [*POLICIES, "nil"]))
    body_dry = opts.get("dryRun")
    dry = ([str(v) for v in body_dry] if isinstance(body_dry, list) else
           query_dry_run if query_dry_run is not None else
           [query["dryRun"]] if "dryRun" in query else None)
    bad_dry_run = dryrun.cause(dry)
    if bad_dry_run is not None:
        causes.append(bad_dry_run)
    if causes:
        raise validation.invalid("DeleteOptions", "meta.k8s.io", "", causes)
    if orphan is not None:
        policy = "Orphan" if orphan else "Background"
    if policy is None and kind.group == "batch" and kind.kind == "Job":
        policy = "Orphan"  # batch/v1 Job's DefaultGarbageCollectionPolicy, kept for old clients
        admission.warn(JOB_ORPHAN_WARNING)
    pre = opts.get("preconditions")
    return DeleteRequest(policy, pre if isinstance(pre, dict) else None, dryrun.is_dry(dry))


def finalizers_for(finalizers: list[str], propagation: str | None) -> list[str]:
    """The object's finalizers once a DELETE with ``propagation`` is applied (``None`` keeps
    whatever GC finalizer is already there)."""
    if propagation is None:
        return list(finalizers)
    out = [f for f in finalizers if f not in (ORPHAN, FOREGROUND)]
    if propagation == "Orphan":
        out.append(ORPHAN)
    elif propagation == "Foreground":
        out.append(FOREGROUND)
    return out


def finalizers_pending(kind: Kind, obj: Obj) -> bool:
    """Whether something still holds the object: ``metadata.finalizers``, and for a Namespace
    also ``spec.finalizers`` (``kubernetes``: the namespace controller has not emptied it)."""
    if obj["metadata"].get("finalizers"):
        return True
    if kind.kind == "Namespace" and not kind.group:
        return bool((obj.get("spec") or {}).get("finalizers"))
    return False


def etcd_key(kind: Kind, namespace: str, name: str) -> str:
    """The storage key kube-apiserver names in precondition errors."""
    if kind.custom:
        prefix = f"{kind.group}/{kind.plural}"
    elif kind.plural == "services" and not kind.group:
        prefix = "services/specs"
    else:
        prefix = kind.plural
    return f"/registry/{prefix}/{namespace}/{name}" if kind.namespaced else \
        f"/registry/{prefix}/{name}"


def check_preconditions(kind: Kind, obj: Obj, pre: Mapping[str, Any]) -> None:
    """``metav1.Preconditions`` (uid, resourceVersion) against the stored object → 409."""
    meta = obj["metadata"]
    uid, rv = pre.get("uid"), pre.get("resourceVersion")
    if uid and uid != meta.get("uid"):
        detail = f"UID in precondition: {uid}, UID in object meta: {meta.get('uid', '')}"
    elif rv and str(rv) != meta.get("resourceVersion"):
        detail = (f"ResourceVersion in precondition: {rv}, ResourceVersion in object meta: "
                  f"{meta.get('resourceVersion', '')}")
    else:
        return
    key = etcd_key(kind, meta.get("namespace", ""), meta["name"])
    raise Conflict(f'Operation cannot be fulfilled on {kind.qualified_resource} '
                   f'"{meta["name"]}": StorageError: invalid object, Code: 4, Key: {key}, '
                   f"ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: {detail}",
                   status=409, reason="Conflict")


# --------------------------------------------------------------------------- namespace admission
def _forbidden(kind: Kind, name: str, why: str,
               causes: list[dict[str, str]] | None = None) -> Forbidden:
    res = kind.qualified_resource
    message = f'{res} "{name}" is forbidden: {why}' if name else f"{res} is forbidden: {why}"
    exc = Forbidden(message, status=403, reason="Forbidden")
    details: dict[str, Any] = {"name": name, "group": kind.group, "kind": kind.plural,
                               "causes": causes}
    exc.status_details = {k: v for k, v in details.items() if v}  # type: ignore[attr-defined]
    return exc


def namespace_terminating(kind: Kind, namespace: str, name: str) -> Forbidden:
    """NamespaceLifecycle admission's answer to a create in a Terminating namespace."""
    return _forbidden(kind, name, f"unable to create new content in namespace {namespace} "
                                  "because it is being terminated",
                      [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                        "message": f"namespace {namespace} is being terminated"}])


def finalize_namespace(store: Store, name: str, body: Obj) -> Obj:
    """``PUT namespaces/NAME/finalize``: the body's ``spec.finalizers`` replace the namespace's
    (what the namespace controller does once it has emptied it, and what an admin forcing a
    stuck namespace out sends). A Terminating namespace left with none is removed."""
    wanted = [f for f in (body.get("spec") or {}).get("finalizers") or [] if isinstance(f, str)]

    def change(obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if wanted:
            spec["finalizers"] = wanted
        else:
            spec.pop("finalizers", None)
    return store.mutate("Namespace", "", name, change)


def check_deletable(kind: Kind, name: str) -> None:
    if kind.kind == "Namespace" and not kind.group and name in PROTECTED_NAMESPACES:
        raise _forbidden(kind, name, "this namespace may not be deleted")


# --------------------------------------------------------------------------- the collector
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_Item = tuple[Any, ...]


class GarbageCollector:
    """The GC and namespace controller of one store (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[_Item, None] = {}  # an ordered set of work items
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._terminating: set[str] = set()
        store.subscribe(self._on_event)

    # Called by the store with its lock held: only look things up and queue work.
    def _on_event(self, ev: StoreEvent) -> None:
        meta = ev.obj["metadata"]
        is_namespace = ev.kind.kind == "Namespace" and not ev.kind.group
        if ev.type == "DELETED":
            uid = meta.get("uid", "")
            if self._store.has_dependents(uid):
                self._enqueue(("gone", uid))
            for ref in meta.get("ownerReferences") or ():
                owner = self._store.by_uid(ref.get("uid", ""))
                if owner is not None and owner[1]["metadata"].get("deletionTimestamp"):
                    self._enqueue(("owner", ref["uid"]))
            if is_namespace:
                self._terminating.discard(meta["name"])
            elif ev.kind.namespaced and meta.get("namespace") in self._terminating:
                self._enqueue(("namespace", meta["namespace"]))
            return
        for ref in meta.get("ownerReferences") or ():
            if not self._owner_exists(ref, meta.get("namespace", "")):
                self._enqueue(("dependent", ev.kind, meta.get("namespace", ""), meta["name"]))
                break
        if meta.get("deletionTimestamp"):
            if is_namespace:
                self._terminating.add(meta["name"])
                self._enqueue(("namespace", meta["name"]))
            elif ORPHAN in (meta.get("finalizers") or ()) or \
                    FOREGROUND in (meta.get("finalizers") or ()):
                self._enqueue(("owner", meta["uid"]))

    def _owner_exists(self, ref: Mapping[str, Any], namespace: str) -> bool:
        """Whether the owner is there; a namespaced owner in another namespace counts as absent,
        as the GC treats it."""
        found = self._store.by_uid(str(ref.get("uid") or ""))
        if found is None:
            return False
        kind, owner = found
        return not kind.namespaced or owner["metadata"].get("namespace") == namespace

    def _unresolvable(self, ref: Mapping[str, Any], namespace: str) -> bool:
        """A cluster-scoped dependent naming a namespaced owner kind: upstream's GC can never
        resolve it, so it never collects the dependent for it."""
        if namespace:
            return False
        kind = self._store.registry.by_kind(str(ref.get("apiVersion") or ""),
                                            str(ref.get("kind") or ""))
        return kind is not None and kind.namespaced

    def _enqueue(self, item: _Item) -> None:
        with self._cond:
            self._pending[item] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sim-gc", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while not self._store.closed:
            with self._cond:
                if not self._pending:
                    self._cond.wait(0.2)
                    continue
                item = next(iter(self._pending))
                del self._pending[item]
            try:
                self._process(item)
            except ClusterError as exc:  # a racing write: the next event brings it back
                log.debug("gc %s: %s", item[0], exc)
            except Exception as exc:  # noqa: BLE001 - the collector must outlive a bad object
                log.warning("gc %s failed: %s: %s", item[0], type(exc).__name__, exc)

    def _process(self, item: _Item) -> None:
        what = item[0]
        if what == "gone":
            for kind, ns, name in self._store.dependents(item[1]):
                self._attempt(kind, ns, name)
        elif what == "dependent":
            self._attempt(item[1], item[2], item[3])
        elif what == "owner":
            self._owner(item[1])
        elif what == "namespace":
            self._namespace(item[1])

    def _attempt(self, kind: Kind, namespace: str, name: str) -> None:
        """The GC's attemptToDeleteItem: delete a dependent without any owner left, or drop the
        dangling references of one that still has an owner."""
        store = self._store
        dep = store.try_get(kind, namespace, name)
        if dep is None:
            return
        meta = dep["metadata"]
        refs = meta.get("ownerReferences") or []
        dangling = {r.get("uid") for r in refs if not self._owner_exists(r, namespace)
                    and not self._unresolvable(r, namespace)}
        if not dangling:
            return
        if len(dangling) < len(refs):
            store.mutate(kind, namespace, name, lambda o: _drop_refs(o, dangling))
            return
        if meta.get("deletionTimestamp"):
            return
        fins = meta.get("finalizers") or []
        policy = "Orphan" if ORPHAN in fins else "Foreground" if FOREGROUND in fins else \
            "Background"
        store.delete(kind, namespace, name, propagation=policy)

    def _owner(self, uid: str) -> None:
        """An owner being deleted with the ``orphan`` or ``foregroundDeletion`` finalizer."""
        store = self._store
        found = store.by_uid(uid)
        if found is None:
            return
        kind, owner = found
        meta = owner["metadata"]
        if not meta.get("deletionTimestamp"):
            return
        ns, name = meta.get("namespace", ""), meta["name"]
        fins = meta.get("finalizers") or []
        if ORPHAN in fins:
            for dkind, dns, dname in store.dependents(uid):
                try:
                    store.mutate(dkind, dns, dname, lambda o: _drop_refs(o, {uid}))
                except NotFound:
                    pass
            store.remove_finalizer(kind, ns, name, ORPHAN)
        elif FOREGROUND in fins:
            blocked = False
            for dkind, dns, dname in store.dependents(uid):
                dep = store.try_get(dkind, dns, dname)
                if dep is None:
                    continue
                dmeta = dep["metadata"]
                if not dmeta.get("deletionTimestamp"):
                    # A dependent with dependents of its own is deleted in the foreground too.
                    policy = "Foreground" if store.has_dependents(dmeta["uid"]) else "Background"
                    try:
                        store.delete(dkind, dns, dname, propagation=policy)
                    except NotFound:
                        continue
                blocking = any(r.get("uid") == uid and r.get("blockOwnerDeletion") is True
                               for r in dmeta.get("ownerReferences") or ())
                if blocking and store.try_get(dkind, dns, dname) is not None:
                    blocked = True
            if not blocked:
                store.remove_finalizer(kind, ns, name, FOREGROUND)

    def _namespace(self, name: str) -> None:
        """The namespace controller: delete the content, report, and finalize when empty."""
        store = self._store
        ns = store.try_get("Namespace", "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if "kubernetes" not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        for kind, obj in store.in_namespace(name):
            if not obj["metadata"].get("deletionTimestamp"):
                try:
                    store.delete(kind, name, obj["metadata"]["name"], propagation="Background")
                except NotFound:
                    pass
        remaining: Counter[str] = Counter()
        finalizers: Counter[str] = Counter()
        for kind, obj in store.in_namespace(name):
            remaining[f"{kind.plural}.{kind.group}"] += 1
            for fin in obj["metadata"].get("finalizers") or ():
                finalizers[fin] += 1
        if not remaining:
            def finalize(o: Obj) -> None:
                spec = o.setdefault("spec", {})
                spec["finalizers"] = [f for f in spec.get("finalizers") or []
                                      if f != "kubernetes"]
                if not spec["finalizers"]:
                    del spec["finalizers"]
            store.mutate("Namespace", "", name, finalize)
            return
        status = dict(ns.get("status") or {})
        status["conditions"] = _conditions(status.get("conditions") or [], remaining, finalizers)
        store.update_status("Namespace", "", name, status)


def _drop_refs(obj: Obj, uids: set[Any]) -> None:
    meta = obj["metadata"]
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") not in uids]
    if refs:
        meta["ownerReferences"] = refs
    else:
        meta.pop("ownerReferences", None)


def _conditions(current: list[Obj], remaining: Counter[str],
                finalizers: Counter[str]) -> list[Obj]:
    """The namespace controller's five conditions, in its order and wording."""
    if remaining:
        left = ("True", "SomeResourcesRemain", "Some resources are remaining: " + ", ".join(
            f"{res} has {n} resource instances" for res, n in sorted(remaining.items())))
    else:
        left = ("False", "ContentRemoved", "All content successfully removed")
    if finalizers:
        held = ("True", "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining: " + ", ".join(
                    f"{fin} in {n} resource instances" for fin, n in sorted(finalizers.items())))
    else:
        held = ("False", "ContentHasNoFinalizers", "All content-preserving finalizers finished")
    wanted = [
        ("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered",
         "All resources successfully discovered"),
        ("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions",
         "All legacy kube types successfully parsed"),
        ("NamespaceDeletionContentFailure", "False", "ContentDeleted",
         "All content successfully deleted, may be waiting on finalization"),
        ("NamespaceContentRemaining", *left),
        ("NamespaceFinalizersRemaining", *held),
    ]
    before = {c.get("type"): c for c in current}
    out: list[Obj] = []
    for ctype, status, reason, message in wanted:
        old = before.get(ctype) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        out.append({"type": ctype, "status": status, "lastTransitionTime": since or _now(),
                    "reason": reason, "message": message})
    return out
