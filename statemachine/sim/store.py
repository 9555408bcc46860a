"""The in-memory object store of one simulated cluster.

Everything the API server and the simulated controllers read or write goes through one
:class:`Store`. It keeps what etcd plus the generic apiserver registry would: objects by kind,
namespace and name; one global ``resourceVersion`` counter that bumps by exactly one per committed
write (so event *n* in the history has resourceVersion *n*); ``uid``, ``creationTimestamp``,
``generation`` on the kinds that have one (bumped only when something outside
``metadata``/``status`` changes); the status-subresource rules; finalizers and
``deletionTimestamp``; ``generateName``; delete propagation and preconditions, with the garbage
collector and namespace controller of ``deletion.py`` running beside it; the apiserver's object
validation (``validation.py``) for writes made with ``validate=True``; and a bounded event
history for watches and consistent lists (``history.History``: the last ``history``
events of each kind; older → ``Gone``/410).

Contract for callers (the HTTP layer and the controllers):

- ``kind`` arguments are a :class:`~statemachine.sim.kinds.Kind` or a string: ``"VirtualMachine"``
  (kind names are unique in the registry) or ``"kubevirt.io/v1/VirtualMachine"``.
- Every read returns a deep copy: mutate it freely, then write it back. Except ``peek`` and
  ``peek_list`` (and ``snapshot``, ``by_uid``, ``in_namespace``, ``StoreEvent.obj``): they hand out
  the stored snapshot itself, for code that only reads, which must never change it. The store
  never changes a committed snapshot either: a write stores a new object.
- Errors are ``statemachine.errors`` classes with ``status`` and ``reason`` set as the apiserver
  would answer (``NotFound`` 404, ``Conflict`` 409 ``AlreadyExists``/``Conflict``, ``Invalid`` 422,
  ``Gone`` 410, ``PermanentClusterError`` 400/405/415); their message is the upstream message.
- A write that changes nothing does not bump the resourceVersion and emits no event.
- ``subscribe(callback)``: the callback gets every :class:`StoreEvent` synchronously, in commit order,
  while the store lock is held. It must be quick and must NOT write to the store (queue work for
  another thread instead; ``controller.Runner`` does exactly that).

Every write records ``metadata.managedFields`` for its manager (``manager=`` on the write methods,
else the thread's ``managedfields.acting_manager()``); apply patches go through
``managedfields.apply`` (ownership, conflicts, removal of dropped fields).

What it does not do: admission (``admission.py``, through the ``admission`` hook), authorization
(``auth.py``), defaulting of kind-specific fields (controllers own that).
"""
from __future__ import annotations

import datetime as _dt
import json
import marshal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from statemachine.errors import Conflict, Invalid, NotFound, PermanentClusterError
from statemachine.sim import (coredefaults, deletion, managedfields, patches, selectors,
                              serviceregistry, validation, volumes)
from statemachine.sim.history import History
from statemachine.sim.kinds import Kind, KindRegistry

Obj = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
PatchType = Literal["merge", "json", "strategic", "apply"]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds

#: Watch events kept per kind. Like a watch cache of a quiet cluster (upstream keeps at least 100
#: per resource, and etcd compacts every 5 minutes): a watch or continue token older than this
#: many changes of its kind gets 410 Expired.
DEFAULT_HISTORY = 1000


def clone(obj: Any) -> Any:
    """A deep copy of a JSON value (a JSON round trip is faster than ``copy.deepcopy``), for
    values that come from outside the store (a caller's body): tuples become lists, dict keys
    become strings, as the wire would have them. See :func:`copy_stored` for the store's own.

    An object's ``metadata.managedFields`` entries are shared, not copied: they are never changed
    in place (``managedfields`` builds new ones), so snapshots share them and a write does not
    pay for copying them twice (a list of 1,000 VMs copies in half the time of one JSON round
    trip over it). Callers must not edit them in place either.
    """
    return _copy(obj, _json_copy)


def copy_stored(obj: Any) -> Any:
    """A deep copy of a stored snapshot (or a list of them): the same result as :func:`clone`,
    about twice as fast.

    Decision: a stored snapshot is already a plain JSON value (every body entered through
    :func:`clone`; what the store adds are strings, numbers, dicts and lists), and for those a
    ``marshal`` round trip makes exactly the copy a JSON round trip makes, in half the time
    (reads of snapshots were most of the simulator's CPU). Format version 2 writes no
    back-references, so shared sub-objects come back as separate copies, as from JSON. A value
    marshal refuses (a subclass of str or dict, say) falls back to the JSON round trip.
    ``tests/sim/test_store_reads.py`` checks that every snapshot a migration commits is a plain
    JSON value. Do not use it on a caller's body: a tuple there would stay a tuple.
    """
    return _copy(obj, _marshal_copy)


def _json_copy(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _marshal_copy(obj: Any) -> Any:
    try:
        return marshal.loads(marshal.dumps(obj, 2))
    except ValueError:  # not a marshallable value (e.g. a str subclass), or nested too deep
        return json.loads(json.dumps(obj))


def _copy(obj: Any, deep: Callable[[Any], Any]) -> Any:
    if isinstance(obj, list):  # a list's items one by one, so each shares its managedFields
        return [_copy(item, deep) for item in obj]
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    managed = meta.get("managedFields") if isinstance(meta, dict) else None
    if not isinstance(managed, list):
        return deep(obj)
    rest = dict(obj)
    rest["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}  # type: ignore[union-attr]
    out = deep(rest)
    out["metadata"]["managedFields"] = list(managed)
    return out


def _same(obj: Any) -> Any:
    return obj


def _without_status(obj: Obj) -> Obj:
    return {key: value for key, value in obj.items() if key != "status"}


_now_cache: tuple[int, str] = (0, "")


def now_rfc3339() -> str:
    """The current UTC time, second precision (formatted once per second: every write
    stamps its managedFields entry with it)."""
    global _now_cache
    second = int(time.time())
    if second != _now_cache[0]:
        _now_cache = (second, _dt.datetime.fromtimestamp(second, _dt.timezone.utc)
                      .strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _now_cache[1]


@dataclass(frozen=True)
class StoreEvent:
    """One committed change. ``obj`` is the stored snapshot: treat it as read-only."""

    type: EventType
    kind: Kind
    obj: Obj
    resource_version: int
    #: The previous snapshot (``None`` for ADDED); watches use it for selector transitions.
    old: Obj | None = None


EventList = list[StoreEvent]  # module-level: ``Store.list`` shadows ``list`` in the class body
KeyList = list[Key]


def _not_found(kind: Kind, name: str) -> NotFound:
    return NotFound(f'{kind.qualified_resource} "{name}" not found', status=404, reason="NotFound")


def _conflict(kind: Kind, name: str) -> Conflict:
    return Conflict(f'Operation cannot be fulfilled on {kind.qualified_resource} "{name}": the '
                    "object has been modified; please apply your changes to the latest version "
                    "and try again", status=409, reason="Conflict")


def _invalid(kind: Kind, name: str, detail: str) -> Invalid:
    group = f".{kind.group}" if kind.group else ""
    return Invalid(f'{kind.kind}{group} "{name}" is invalid: {detail}', status=422,
                   reason="Invalid")


def _spec_part(obj: Obj) -> Obj:
    """What ``generation`` tracks: everything except metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Store:
    """Thread-safe object store of one cluster. See the module docstring for the contract."""

    def __init__(self, registry: KindRegistry | None = None, *,
                 history: int = DEFAULT_HISTORY) -> None:
        # Each store has its own registry: a CRD created on one cluster serves nothing on another.
        self.registry = KindRegistry(tuple(registry or KindRegistry.default()))
        self._by_name: dict[str, Kind] = {}
        for k in self.registry:  # first wins: "Event" is the core v1 kind, not events.k8s.io's
            self._by_name.setdefault(k.kind, k)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._objects: dict[Kind, dict[Key, Obj]] = {k: {} for k in self.registry}
        self._owned: dict[str, set[tuple[Kind, Key]]] = {}  # owner uid -> dependents
        self._uids: dict[str, tuple[Kind, Key]] = {}  # uid -> the object that has it
        self._kind_conds: dict[Kind, threading.Condition] = {}  # woken by that kind's events
        self._rv = 0
        self._history = History(history)
        self._subscribers: list[Callable[[StoreEvent], None]] = []
        self.closed = False
        #: Called with (kind, next object, previous object or None, subresource) before a create
        #: or update commits; may change the object or raise (``admission.admit``).
        self.admission: Callable[[Kind, Obj, Obj | None, str | None], None] | None = None
        #: Whether ``admission`` may act on a write made now (the API server's hook acts only
        #: inside an API request: ``admission.in_request``); ``None``: on every write.
        self.admission_active: Callable[[], bool] | None = None
        self.gc = deletion.GarbageCollector(self)

    # ----------------------------------------------------------------- lookup helpers
    def kind(self, kind: Kind | str) -> Kind:
        """Resolve a kind argument (see the module docstring); ``KeyError`` if not served."""
        if isinstance(kind, Kind):
            return kind
        if "/" in kind:
            api_version, _, name = kind.rpartition("/")
            found = self.registry.by_kind(api_version, name)
        else:
            found = self._by_name.get(kind)
        if found is None:
            raise KeyError(f"kind {kind!r} is not served by the simulator")
        return found

    def add_kind(self, kind: Kind) -> None:
        """Serve ``kind`` from now on (a CRD version); replaces an equal kind's registry entry."""
        with self._lock:
            self.registry.add(kind)
            self._objects.setdefault(kind, {})
            self._by_name.setdefault(kind.kind, kind)
            if self._by_name[kind.kind] == kind:
                self._by_name[kind.kind] = kind

    def serves(self, kind: Kind) -> bool:
        """Whether ``kind`` (this very object) is still served: a CRD change or delete replaces
        or removes it, and the watches on it end, as kube-apiserver ends them."""
        return self.registry.by_resource(kind.group, kind.version, kind.plural) is kind

    def remove_kind(self, kind: Kind) -> None:
        """Stop serving ``kind``; its objects must have been deleted first."""
        with self._lock:
            self.registry.remove(kind)
            self._objects.pop(kind, None)
            if self._by_name.get(kind.kind) == kind:
                del self._by_name[kind.kind]

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion (that of the last committed write)."""
        return self._rv

    def _key(self, kind: Kind, namespace: str | None, name: str) -> Key:
        return ((namespace or "") if kind.namespaced else "", name)

    # ----------------------------------------------------------------- subscriptions
    def subscribe(self, callback: Callable[[StoreEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` after every commit; returns a function that unsubscribes."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    def _commit(self, etype: EventType, kind: Kind, obj: Obj | None, key: Key) -> Obj:
        """Bump the RV, store (or drop) the snapshot, record and publish the event. Lock held."""
        assert obj is not None
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        table = self._objects[kind]
        old = table.get(key)
        if old is not None:
            self._unindex_owners(kind, key, old)
        if etype == "DELETED":
            table.pop(key, None)
            self._uids.pop(obj["metadata"].get("uid", ""), None)
        else:
            table[key] = obj
            self._index_owners(kind, key, obj)
            self._uids[obj["metadata"]["uid"]] = (kind, key)
        event = StoreEvent(etype, kind, obj, self._rv, old)
        self._history.append(event)
        for cb in list(self._subscribers):
            cb(event)
        self._cond.notify_all()
        kind_cond = self._kind_conds.get(kind)
        if kind_cond is not None:
            kind_cond.notify_all()
        return obj

    def _index_owners(self, kind: Kind, key: Key, obj: Obj) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            uid = ref.get("uid")
            if uid:
                self._owned.setdefault(uid, set()).add((kind, key))

    def _unindex_owners(self, kind: Kind, key: Key, obj: Obj) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            deps = self._owned.get(ref.get("uid", ""))
            if deps is not None:
                deps.discard((kind, key))
                if not deps:
                    self._owned.pop(ref["uid"], None)

    # ----------------------------------------------------------------- ownership (for the GC)
    def by_uid(self, uid: str) -> tuple[Kind, Obj] | None:
        """The kind and stored snapshot (read-only) of the object with ``uid``, if any."""
        with self._lock:
            found = self._uids.get(uid)
            if found is None:
                return None
            obj = self._objects[found[0]].get(found[1])
            return (found[0], obj) if obj is not None else None

    def has_dependents(self, uid: str) -> bool:
        return uid in self._owned

    def dependents(self, uid: str) -> list[tuple[Kind, str, str]]:
        """``(kind, namespace, name)`` of every object with an ownerReference to ``uid``."""
        with self._lock:
            return sorted(((k, ns, name) for k, (ns, name) in self._owned.get(uid, ())),
                          key=lambda d: (d[0].plural, d[1], d[2]))

    def in_namespace(self, namespace: str) -> list[tuple[Kind, Obj]]:
        """Every namespaced object in ``namespace`` (stored snapshots: read-only)."""
        with self._lock:
            return [(k, o) for k, table in self._objects.items() if k.namespaced
                    for (ns, _), o in table.items() if ns == namespace]

    # ----------------------------------------------------------------- reads
    def get(self, kind: Kind | str, namespace: str | None, name: str) -> Obj:
        """A copy of the object; raises ``NotFound``."""
        k = self.kind(kind)
        with self._lock:
            obj = self._objects[k].get(self._key(k, namespace, name))
            if obj is None:
                raise _not_found(k, name)
            return copy_stored(obj)  # type: ignore[no-any-return]

    def try_get(self, kind: Kind | str, namespace: str | None, name: str) -> Obj | None:
        """Like :meth:`get` but ``None`` when absent."""
        try:
            return self.get(kind, namespace, name)
        except NotFound:
            return None

    def peek(self, kind: Kind | str, namespace: str | None, name: str) -> Obj | None:
        """The stored snapshot itself (no copy), or ``None`` when absent.

        READ-ONLY: the caller must not change it or anything inside it (it is what every later
        read copies from). It stays a consistent snapshot: a write replaces the stored object
        rather than changing it. For controller code that only reads (most reads of a tick);
        anything that edits what it read must use :meth:`get`.
        """
        k = self.kind(kind)
        with self._lock:
            return self._objects[k].get(self._key(k, namespace, name))

    def peek_list(self, kind: Kind | str, namespace: str | None = None) -> list[Obj]:
        """The stored snapshots of ``kind`` (in ``namespace``; ``None``/``""``: all), sorted as
        :meth:`list` sorts them, without copies: READ-ONLY, as for :meth:`peek`."""
        k = self.kind(kind)
        with self._lock:
            items = [(key, o) for key, o in self._objects[k].items()
                     if not namespace or not k.namespaced or key[0] == namespace]
        items.sort(key=lambda item: item[0])
        return [o for _, o in items]

    def list_rv(self, kind: Kind | str, namespace: str | None = None, *,
                label_selector: str | None = None,
                field_selector: str | None = None) -> tuple[list[Obj], int]:
        """Copies of the matching objects (sorted by namespace, name) and the RV they were read at.

        ``namespace`` ``None`` or ``""`` means all namespaces.
        """
        k = self.kind(kind)
        match = selectors.combine(selectors.label_matcher(label_selector),
                                  selectors.field_matcher(field_selector))
        pinned = selectors.name_of_field_selector(field_selector)
        with self._lock:
            table = self._objects[k]
            if pinned is not None and namespace and k.namespaced:
                one = table.get((namespace, pinned))
                candidates = [one] if one is not None else []
            else:
                candidates = [o for (ns, _), o in table.items()
                              if not namespace or not k.namespaced or ns == namespace]
            items = [o for o in candidates if match is None or match(o)]
            out = copy_stored(items)
            rv = self._rv
        out.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return out, rv

    def list(self, kind: Kind | str, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None) -> list[Obj]:
        """Copies of the matching objects; see :meth:`list_rv`."""
        return self.list_rv(kind, namespace, label_selector=label_selector,
                            field_selector=field_selector)[0]

    def count(self, kind: Kind | str) -> int:
        with self._lock:
            return len(self._objects[self.kind(kind)])

    def keys(self, kind: Kind | str) -> KeyList:
        """``(namespace, name)`` of every object of ``kind`` (no copies: for resyncs)."""
        with self._lock:
            # .get: a CRD deleted while a controller resyncs its kind has no objects (not a KeyError)
            return list(self._objects.get(self.kind(kind), ()))

    # ----------------------------------------------------------------- writes
    def create(self, kind: Kind | str, obj: Obj, *, namespace: str | None = None,
               keep_status: bool = False, dry_run: bool = False, manager: str | None = None,
               applied: bool = False, validate: bool = False, uid: str | None = None) -> Obj:
        """Create ``obj``; returns a copy of what was stored.

        ``namespace`` overrides ``metadata.namespace`` (the HTTP layer passes the URL's).
        The server-set fields (uid, creationTimestamp, resourceVersion, generation where the kind
        has one, apiVersion, kind) are filled in; ``generateName`` is honoured. A kind with a
        status subresource drops the ``status`` of the body, as the apiserver does, unless
        ``keep_status`` (for seeding and controllers). ``applied``: the create is an apply by
        ``manager`` (an Apply entry). ``validate``: run the apiserver's object validation
        (``validation.check_create``; the HTTP layer sets it). ``uid``: the uid to give the
        object, for create-time defaulting that needs it (a Job's selector). Raises ``Conflict``
        (AlreadyExists), ``NotFound`` (namespace), ``Forbidden`` (namespace terminating) or
        ``Invalid``.
        """
        k = self.kind(kind)
        new = clone(obj)
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise _invalid(k, "", "metadata: must be an object")
        new["apiVersion"], new["kind"] = k.api_version, k.kind
        if k.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
            ns = ""
        with self._lock:
            if k.namespaced and (self.registry.by_kind("v1", "Namespace") is not None):
                ns_obj = self._objects[self._by_name["Namespace"]].get(("", ns))
                if ns_obj is None:
                    raise NotFound(f'namespaces "{ns}" not found', status=404, reason="NotFound")
                if ns_obj["metadata"].get("deletionTimestamp"):
                    raise deletion.namespace_terminating(k, ns, meta.get("name") or "")
            service = k.kind == "Service" and not k.group
            if validate and not service:
                validation.check_create(k, new)
            if not meta.get("name"):
                prefix = meta.get("generateName")
                if not prefix:
                    raise _invalid(k, "", "metadata.name: Required value: name or generateName "
                                          "is required")
                meta["name"] = deletion.generate_name(prefix)
            name = meta["name"]
            key = (ns, name)
            if service:
                # Upstream's Service registry allocates (beginCreate) before the strategy
                # validates, so validation sees the decoded object with its cluster IPs and
                # node ports; both refuse before storage's AlreadyExists.
                coredefaults.decode(k, new, status=not dry_run)
                serviceregistry.prepare_create(new, self.peek_list(k), check=validate)
                if validate:
                    validation.check_create(k, new)
            if validate and not dry_run:
                # Storage checks this before it looks for the key, so it wins over a 409.
                validation.check_create_resource_version(meta)
            if key in self._objects[k]:
                raise Conflict(f'{k.qualified_resource} "{name}" already exists', status=409,
                               reason="AlreadyExists")
            if k.status_subresource and not keep_status:
                new.pop("status", None)
            # Decoding's defaults; a dry run answers the prepared object, which storage never
            # decoded, so without the status ones.
            coredefaults.decode(k, new, status=not dry_run)
            volumes.stamp_phase(k, new, None)
            if k.kind == "Namespace":
                new.setdefault("status", {"phase": "Active"})
                spec = new.setdefault("spec", {})
                if isinstance(spec, dict) and "kubernetes" not in (spec.get("finalizers") or []):
                    spec["finalizers"] = [*(spec.get("finalizers") or []), "kubernetes"]
            if self.admission is not None:
                self.admission(k, new, None, None)
            meta["uid"] = uid or str(uuid.uuid4())
            meta["creationTimestamp"] = now = now_rfc3339()
            if validation.tracks_generation(k):
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            for server_set in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(server_set, None)
            managedfields.on_create(k, new, manager or managedfields.acting_manager(), now,
                                    applied=applied)
            if dry_run:
                # Upstream's dry-run storage hands back the prepared object as it is: no
                # resourceVersion of its own (only one the body carried), nothing stored.
                return copy_stored(new)  # type: ignore[no-any-return]
            return copy_stored(self._commit("ADDED", k, new, key))  # type: ignore[no-any-return]

    def install(self, kind: Kind | str, obj: Obj) -> None:
        """Store a large built-in object at start-up without copying it (the built-in CRDs).

        ``obj`` must be a fresh top-level dict with its own ``metadata`` and ``status``; the rest
        may be shared between stores, as the store never changes a stored object in place.
        No admission, no namespace; server-set metadata is filled in."""
        k = self.kind(kind)
        meta = obj["metadata"]
        with self._lock:
            key = self._key(k, meta.get("namespace"), meta["name"])
            if key in self._objects[k]:
                raise Conflict(f'{k.qualified_resource} "{meta["name"]}" already exists',
                               status=409, reason="AlreadyExists")
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
            self._commit("ADDED", k, obj, key)

    def _write(self, k: Kind, old: Obj, body: Obj, subresource: str | None,
               dry_run: bool = False, manager: str | None = None, applied: bool = False,
               validate: bool = False, copy: bool = True) -> Obj:
        """Turn ``body`` into the next version of ``old`` and commit it. Lock held.

        ``applied``: ``body`` already carries its managedFields (an apply); otherwise the write
        is recorded as an Update by ``manager``. ``validate``: the write came through the API, so
        the name and namespace in ``body`` must be the URL's (400 otherwise) and
        ``validation.check_update`` runs. Returns a copy of the stored result, or with
        ``copy=False`` (internal callers that only read it) the stored snapshot itself."""
        out = copy_stored if copy else _same
        meta_old = old["metadata"]
        name = meta_old["name"]
        if subresource not in (None, "", "status"):
            raise PermanentClusterError(f"subresource {subresource!r} is not served",
                                        status=404, reason="NotFound")
        if subresource == "status" and not k.status_subresource:
            raise _not_found(k, name)
        body_meta = body.get("metadata") or {}
        if not isinstance(body_meta, dict):
            body_meta = {}
        body_name = body_meta.get("name", "" if validate else name)
        if body_name != name:
            raise PermanentClusterError(f"the name of the object ({body_name or ''}) does not "
                                        f"match the name on the URL ({name})", status=400,
                                        reason="BadRequest")
        if validate and k.namespaced and body_meta.get("namespace") not in (
                None, "", meta_old.get("namespace")):
            raise PermanentClusterError("the namespace of the provided object does not match "
                                        "the namespace sent on the request", status=400,
                                        reason="BadRequest")
        body_uid = body_meta.get("uid")
        # Decision: the status that is about to be replaced is not copied first (a placeholder
        # keeps its key's place, so the JSON comes out in the same order as before).
        if subresource == "status":
            new = copy_stored({**old, "status": None})
            if "status" in body:
                new["status"] = clone(body["status"])
            else:
                new.pop("status", None)
            coredefaults.decode(k, new)
            if validate and k.kind == "Service" and not k.group:
                validation.raise_if(k, name, validation.service_status_causes(new))
        else:
            new = clone({**body, "status": None} if k.status_subresource and "status" in body
                        else body)
            new["apiVersion"], new["kind"] = k.api_version, k.kind
            if k.status_subresource:
                if "status" in old:
                    new["status"] = copy_stored(old["status"])
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            if not isinstance(meta, dict):
                meta = new["metadata"] = {}
            for server_set in ("uid", "creationTimestamp", "deletionTimestamp",
                               "deletionGracePeriodSeconds", "namespace", "name"):
                if server_set in meta_old:
                    meta[server_set] = meta_old[server_set]
                else:
                    meta.pop(server_set, None)
            if k.kind == "Namespace" and validate:
                # A Namespace's spec (its finalizers) changes only through /finalize.
                if "spec" in old:
                    new["spec"] = copy_stored(old["spec"])
                else:
                    new.pop("spec", None)
            validation.raise_if(k, name, validation.no_new_finalizers(meta_old, meta))
            coredefaults.decode(k, new)
            if k.kind == "Service" and not k.group:
                serviceregistry.prepare_update(new, old, self.peek_list(k), check=validate)
            if validate:
                checked = dict(new, metadata=dict(meta, uid=body_uid or meta_old.get("uid")))
                validation.check_update(k, old, checked)
        volumes.stamp_phase(k, new, old)
        if self.admission is not None:
            self.admission(k, new, old, subresource)
        meta = new["metadata"]
        if validation.tracks_generation(k):
            meta["generation"] = meta_old.get("generation", 1)
            if _spec_part(new) != _spec_part(old):
                meta["generation"] = meta_old.get("generation", 1) + 1
        else:
            meta.pop("generation", None)
        meta["resourceVersion"] = meta_old["resourceVersion"]
        if applied:
            if subresource == "status":
                new["metadata"]["managedFields"] = body["metadata"].get("managedFields")
        else:
            managedfields.on_update(k, old, new, manager or managedfields.acting_manager(),
                                    subresource, now_rfc3339())
        if new == old:
            return out(old)  # type: ignore[no-any-return]  # no-op: no RV bump, no event
        key = self._key(k, meta_old.get("namespace"), name)
        if dry_run:
            return out(new)  # type: ignore[no-any-return]
        if meta.get("deletionTimestamp") and not deletion.finalizers_pending(k, new):
            return out(self._commit("DELETED", k, new, key))  # type: ignore[no-any-return]
        return out(self._commit("MODIFIED", k, new, key))  # type: ignore[no-any-return]

    def _admitting(self) -> bool:
        """Whether a write made now goes through an admission hook that may act on it."""
        return self.admission is not None and (self.admission_active is None
                                               or self.admission_active())

    def _current(self, k: Kind, namespace: str | None, name: str) -> Obj:
        obj = self._objects[k].get(self._key(k, namespace, name))
        if obj is None:
            raise _not_found(k, name)
        return obj

    def replace(self, kind: Kind | str, obj: Obj, *, namespace: str | None = None,
                subresource: str | None = None, dry_run: bool = False,
                manager: str | None = None, validate: bool = False) -> Obj:
        """PUT semantics: replace the object (or only its status with ``subresource="status"``).

        If ``metadata.resourceVersion`` is set and is not the current one → ``Conflict`` 409.
        An empty resourceVersion means an unconditional update (as upstream allows for most kinds).
        ``validate`` (the HTTP layer): a ``metadata.uid`` in the body is a precondition (409 as
        upstream's storage answers it) and ``validation.check_update`` runs.
        """
        k = self.kind(kind)
        meta = obj.get("metadata") or {}
        ns = namespace if namespace is not None else meta.get("namespace")
        name = meta.get("name", "")
        with self._lock:
            old = self._current(k, ns, name)
            rv = meta.get("resourceVersion")
            if rv and str(rv) != old["metadata"]["resourceVersion"]:
                raise _conflict(k, name)
            if validate:
                deletion.check_preconditions(k, old, {"uid": meta.get("uid")})
            return self._write(k, old, obj, subresource, dry_run, manager, validate=validate)

    def patch(self, kind: Kind | str, namespace: str | None, name: str, patch: Any,
              patch_type: PatchType = "merge", subresource: str | None = None, *,
              dry_run: bool = False, manager: str | None = None, force: bool = False,
              validate: bool = False) -> Obj:
        """Apply a patch: ``merge`` (RFC 7386), ``json`` (RFC 6902), ``strategic`` (415 for
        custom resources; by each field's patch strategy, see ``patches``) or ``apply``
        (server-side apply by ``manager``, ``force`` taking over conflicting fields; creates the
        object if missing; see ``managedfields``). A ``metadata.resourceVersion`` in a merge,
        strategic or apply patch is a precondition (409 if stale). ``validate``: as for
        :meth:`replace`.
        """
        k = self.kind(kind)
        if patch_type == "strategic" and k.custom:
            raise PermanentClusterError(
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml", status=415, reason="UnsupportedMediaType")
        with self._lock:
            existing = self._objects[k].get(self._key(k, namespace, name))
            if existing is None:
                if patch_type == "apply" and not subresource and isinstance(patch, dict):
                    if validate and not dry_run and isinstance(patch.get("metadata"), dict):
                        # The applied configuration's resourceVersion reaches storage's create.
                        validation.check_create_resource_version(patch["metadata"])
                    body = managedfields.applied_config(patch)
                    body.setdefault("metadata", {})["name"] = name
                    return self.create(k, body, namespace=namespace, dry_run=dry_run,
                                       manager=manager, applied=True, validate=validate)
                raise _not_found(k, name)
            if patch_type == "json":
                new = patches.json_patch(existing, patch)
            else:
                if not isinstance(patch, dict):
                    raise PermanentClusterError("a merge patch body must be a JSON object",
                                                status=400, reason="BadRequest")
                precondition = (patch.get("metadata") or {}).get("resourceVersion")
                if precondition and str(precondition) != existing["metadata"]["resourceVersion"]:
                    raise _conflict(k, name)
                if patch_type == "apply":
                    new = managedfields.apply(k, existing, patch,
                                              manager or managedfields.acting_manager(),
                                              force=force, subresource=subresource,
                                              now=now_rfc3339())
                    return self._write(k, existing, new, subresource, dry_run, applied=True,
                                       validate=validate)
                new = (patches.strategic_merge_patch(existing, patch,
                                                     managedfields.schema_of(k).rules)
                       if patch_type == "strategic" else patches.merge_patch(existing, patch))
            if not isinstance(new, dict):
                raise _invalid(k, name, "the patched object is not a JSON object")
            return self._write(k, existing, new, subresource, dry_run, manager,
                               validate=validate)

    def update_status(self, kind: Kind | str, namespace: str | None, name: str,
                      status: Obj, *, copy: bool = True) -> Obj:
        """Controller helper: set ``.status`` to ``status`` (whole replacement, no RV check).

        Works for kinds without a status subresource too. A no-op emits nothing. Returns a copy
        of the result; ``copy=False``: the stored object itself, READ-ONLY (as :meth:`peek`),
        for callers that drop the result (no copy made for nothing).
        """
        k = self.kind(kind)
        with self._lock:
            old = self._current(k, namespace, name)
            body = dict(old)
            body["status"] = status
            return self._write(k, old, body, "status" if k.status_subresource else None,
                               copy=copy)

    def mutate(self, kind: Kind | str, namespace: str | None, name: str,
               change: Callable[[Obj], None], *, copy: bool = True) -> Obj:
        """Controller helper: read-modify-write atomically. ``change`` edits a copy in place
        (spec, metadata and status alike); the result is committed as one write (or none if
        nothing changed). Returns a copy of the result; ``copy=False``: the stored object
        itself, READ-ONLY, as :meth:`update_status`."""
        out = copy_stored if copy else _same
        k = self.kind(kind)
        with self._lock:
            old = self._current(k, namespace, name)
            body = copy_stored(old)
            change(body)
            if not self._admitting() and (old.get("apiVersion"), old.get("kind")) == (
                    k.api_version, k.kind):
                # Decision: unadmitted (every controller write), the main-resource write of a
                # body equal to ``old`` outside its status is a no-op (``_write`` would find
                # nothing to change: same fields, same managedFields, no event); skip it instead
                # of copying and comparing the whole object (most controller mutates change
                # nothing, or only the status).
                if body == old:
                    return out(old)  # type: ignore[no-any-return]
                if k.status_subresource and _without_status(body) == _without_status(old):
                    return self._write(k, old, body, "status", copy=copy)
            new = self._write(k, old, body, None, copy=False)  # only read below
            if k.status_subresource and body.get("status") != new.get("status"):
                cur = self._current(k, namespace, name)
                return self._write(k, cur, body, "status", copy=copy)
            return out(new)  # type: ignore[no-any-return]

    def delete(self, kind: Kind | str, namespace: str | None, name: str, *,
               dry_run: bool = False, propagation: str | None = None,
               preconditions: dict[str, Any] | None = None) -> Obj:
        """Delete; returns the object as of the delete.

        ``propagation`` (``Background``, ``Foreground``, ``Orphan`` or ``None`` = keep the
        object's GC finalizers as they are) adds or removes the ``orphan`` and
        ``foregroundDeletion`` finalizers as the apiserver does. ``preconditions`` (``uid``,
        ``resourceVersion``) → 409 when they do not hold. With finalizers pending (a Namespace's
        ``spec.finalizers`` count): sets ``deletionTimestamp`` (MODIFIED; a Namespace becomes
        ``Terminating``) and the object stays until they are removed (then DELETED). Without:
        removed now (DELETED). Dependents and a namespace's content are then handled by the
        garbage collector (``deletion.GarbageCollector``), asynchronously.
        """
        k = self.kind(kind)
        with self._lock:
            old = self._current(k, namespace, name)
            if preconditions:
                deletion.check_preconditions(k, old, preconditions)
            new = copy_stored(old)
            meta = new["metadata"]
            fins = deletion.finalizers_for(meta.get("finalizers") or [], propagation)
            if fins:
                meta["finalizers"] = fins
            else:
                meta.pop("finalizers", None)
            if dry_run:
                return new  # type: ignore[no-any-return]
            key = self._key(k, namespace, name)
            if deletion.finalizers_pending(k, new):
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = now_rfc3339()
                    meta["deletionGracePeriodSeconds"] = 0
                if k.kind == "Namespace" and not k.group:
                    new.setdefault("status", {})["phase"] = "Terminating"
                if new == old:
                    return new  # type: ignore[no-any-return]
                committed = self._commit("MODIFIED", k, new, key)
                return copy_stored(committed)  # type: ignore[no-any-return]
            return copy_stored(self._commit("DELETED", k, new, key))  # type: ignore[no-any-return]

    def remove_finalizer(self, kind: Kind | str, namespace: str | None, name: str,
                         finalizer: str) -> Obj | None:
        """Remove one finalizer; if the object is being deleted and none remain, it is removed.

        Returns the object after the write, or ``None`` if it was absent."""
        k = self.kind(kind)
        with self._lock:
            old = self._objects[k].get(self._key(k, namespace, name))
            if old is None:
                return None
            body = copy_stored(old)
            fins = [f for f in body["metadata"].get("finalizers") or [] if f != finalizer]
            if fins:
                body["metadata"]["finalizers"] = fins
            else:
                body["metadata"].pop("finalizers", None)
            return self._write(k, old, body, None)

    def add_finalizer(self, kind: Kind | str, namespace: str | None, name: str,
                      finalizer: str) -> Obj:
        """Add one finalizer (idempotent)."""
        k = self.kind(kind)
        with self._lock:
            old = self._current(k, namespace, name)
            body = copy_stored(old)
            fins = body["metadata"].setdefault("finalizers", [])
            if finalizer not in fins:
                fins.append(finalizer)
            return self._write(k, old, body, None)

    # ----------------------------------------------------------------- watch and list support
    def events_since(self, resource_version: int, kind: Kind | str | None = None) -> EventList:
        """Every event (of ``kind``, or of every kind) with a resourceVersion above
        ``resource_version``, in commit order.

        Raises ``Gone`` (410 Expired) if that version is older than a kind's retained history.
        """
        with self._lock:
            kinds = [self.kind(kind)] if kind is not None else list(self._objects)
            events = [e for k in kinds for e in self._history.since(k, resource_version)]
        if kind is None:
            events.sort(key=lambda e: e.resource_version)
        return events

    def watch_batch(self, kind: Kind, after_rv: int) -> tuple[EventList, int]:
        """The kind's events after ``after_rv`` and the resourceVersion they bring a watcher
        to (the current one), read atomically. Raises ``Gone`` as :meth:`events_since`."""
        with self._lock:
            return self._history.since(kind, after_rv), self._rv

    def snapshot(self, kind: Kind | str, resource_version: int | None = None, *,
                 key: Key | None = None) -> tuple[dict[Key, Obj], int]:
        """The kind's stored objects by (namespace, name) (only ``key``'s, if given), now
        (``None``) or as they were at ``resource_version``, and that version. The objects are the
        store's own snapshots: read-only. Raises ``Gone`` if the version was compacted out of
        the history."""
        k = self.kind(kind)
        with self._lock:
            table = self._objects[k]
            if key is not None:
                one = table.get(key)
                table = {key: one} if one is not None else {}
            if resource_version is None or resource_version >= self._rv:
                return dict(table), self._rv
            state = self._history.rollback(k, table, resource_version)
            if key is not None:
                state = {key: state[key]} if key in state else {}
            return state, resource_version

    def wait_for_change(self, after_rv: int, timeout: float,
                        kind: Kind | None = None) -> bool:
        """Block until the RV (that of ``kind``'s last event, if given) exceeds ``after_rv``,
        the store closes, or ``timeout`` passes. Returns whether there is something new."""
        with self._lock:
            if kind is None:
                cond = self._cond

                def changed() -> bool:
                    return self._rv > after_rv
            else:
                cond = self._kind_conds.get(kind) or self._kind_conds.setdefault(
                    kind, threading.Condition(self._lock))

                def changed() -> bool:
                    return self._history.last_rv(kind) > after_rv
            if not changed() and not self.closed:
                cond.wait(timeout)
            return changed()

    def close(self) -> None:
        """Wake every waiting watcher so it can end (used on shutdown)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
            for cond in self._kind_conds.values():
                cond.notify_all()
