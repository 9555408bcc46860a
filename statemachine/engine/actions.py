"""The itinerary's actions over a :class:`~statemachine.k8s.Cluster`, as cooperative generators.

``apply`` creates and, on a name clash, adopts only an object carrying this plan's and VM's labels
(never overwrites anything else: :class:`OwnershipConflict`); ``ensure`` accepts an existing object
(warning when its content differs) and never counts it as created; ``patch``; ``delete`` and wait
until gone; ``delete: created`` from the journal, newest first; ``wait`` timers. Every create is
announced in the journal (``intent``, fsync'ed) before the request, so a kill -9 at any point leaves
enough to adopt or clean up. Transient cluster errors are retried here with backoff, bounded by the
state's deadline, and logged. This module does not choose states or evaluate readiness.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Generator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeVar, cast

from statemachine.engine.journal import ref_to_json
from statemachine.engine.scheduler import Wait
from statemachine.errors import (
    Conflict,
    OwnershipConflict,
    ReadinessTimeout,
    TransientClusterError,
)
from statemachine.itinerary import Action, RefSpec, StateSpec
from statemachine.k8s import Cluster, Obj, ObjectRef, copy_obj
from statemachine.readiness import format_duration

if TYPE_CHECKING:
    from statemachine.engine.runtime import Runtime, VmModel

T = TypeVar("T")
Gen = Generator[Wait, None, T]
Ctx = Mapping[str, object]

OWNER_LABELS = ("smrun.io/plan", "smrun.io/vm", "smrun.io/vm-namespace")


def manifest_hash(manifest: Obj) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()


def stamp(manifest: Obj, labels: Mapping[str, str]) -> Obj:
    """A copy of ``manifest`` with smrun's labels and the manifest-hash annotation."""
    out: Obj = copy_obj(dict(manifest))
    meta = out.setdefault("metadata", {})
    digest = manifest_hash(manifest)
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), "smrun.io/manifest-hash": digest}
    return out


def is_ours(obj: Obj | None, labels: Mapping[str, str]) -> bool:
    have = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == labels.get(k) for k in OWNER_LABELS if k in labels) and \
        all(k in have for k in OWNER_LABELS if k in labels)


def obj_key(cluster: str, ref: ObjectRef) -> tuple[str, str, str, str]:
    return (cluster, ref.kind, ref.namespace, ref.name)


# -- retries ------------------------------------------------------------------------------------
def offload(rt: Runtime, fn: Callable[[], T], vm: VmModel | None = None, *,
            durable: bool = False) -> Gen[T]:
    """Run a blocking request on the runtime's small I/O pool; the task waits, the loop runs on.

    The request goes to the pool at once. A ``durable`` one (a create, announced by an intent)
    is sent only after an fsync of the journal covers that intent (``groupcommit``); the others
    (reads, patches, deletes) do not wait for it: an fsync can take a second on a busy disk.
    The worker wakes the task through the scheduler's queue, which the loop drains only between
    steps, after this task's wait is registered: the wake-up cannot be lost.
    """
    if rt.pool is None:
        if durable:
            rt.journal.sync()  # durable before the write it announces
        else:
            rt.journal.before_request(lambda: None)()  # a `created` on record first
        return fn()
    box: dict[str, object] = {}
    key = ("io", "", "", str(id(box)))
    owner = vm.key if vm is not None else None
    if owner is not None:
        # Counted so that undo can wait for a cancelled task's in-flight create to land first.
        rt.inflight[owner] = rt.inflight.get(owner, 0) + 1

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the task
            box["error"] = e
        rt.scheduler.call_soon(landed)

    def landed() -> None:
        if owner is not None:
            rt.inflight[owner] -= 1
        rt.scheduler.notify(key)

    rt.submit_write(work, durable=durable)
    while "value" not in box and "error" not in box:
        yield Wait((key,))
    if "error" in box:
        raise cast(BaseException, box["error"])
    return cast(T, box["value"])


def retrying(rt: Runtime, vm: VmModel, what: str, fn: Callable[[], T], deadline: float, *,
             blocking: bool = False, durable: bool = False) -> Gen[T]:
    """Call ``fn``; on a transient cluster error wait (exponential backoff with jitter, honouring
    Retry-After) and call again, until ``deadline``. The engine thread is never blocked by the wait.
    ``blocking`` calls (writes: always a round trip) run on the I/O pool; ``durable`` ones (creates)
    after the journal's fsync (see :func:`offload`)."""
    attempt = 0
    while True:
        try:
            if blocking:
                return (yield from offload(rt, fn, vm, durable=durable))
            return fn()
        except TransientClusterError as e:
            attempt += 1
            delay = min(rt.backoff_max, rt.backoff_base * 2 ** attempt) * (0.5 + random.random() / 2)
            if e.retry_after:
                # The server's Retry-After is a minimum: jitter may lengthen it, never shorten it.
                delay = e.retry_after * (1 + random.random() / 2)
            if rt.clock() + delay > deadline:
                raise
            vm.logger.warning("%s failed (%s); retry %d in %.2fs", what, e, attempt, delay)
            rt.emit(vm, "retry", message=f"{what}: {e}", attempt=attempt)
            yield Wait(until=rt.clock() + delay)


# -- helpers ------------------------------------------------------------------------------------
def render_ref(rt: Runtime, ref: RefSpec, ctx: Ctx) -> ObjectRef:
    r = rt.lang.render_value({"apiVersion": ref.api_version, "kind": ref.kind,
                              "namespace": ref.namespace or "", "name": ref.name}, ctx)
    return ObjectRef(str(r["apiVersion"]), str(r["kind"]), str(r["namespace"] or ""), str(r["name"]))


def action_cluster(state: StateSpec, action: Action) -> str:
    if action.cluster:
        return action.cluster
    if action.object is not None and action.object.cluster:
        return action.object.cluster
    return state.cluster


def _content(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


# -- actions ------------------------------------------------------------------------------------
def create(rt: Runtime, vm: VmModel, state: StateSpec, action: Action, ctx: Ctx,
           deadline: float) -> Gen[list[tuple[str, ObjectRef]]]:
    """``apply`` / ``ensure``: returns the (cluster, ref) of every object of the template."""
    cluster_name = action_cluster(state, action)
    cluster = rt.clusters[cluster_name]
    assert action.template is not None
    out: list[tuple[str, ObjectRef]] = []
    labels = vm.labels(state.name)
    for manifest in _stamped(rt, vm, state, action, ctx, labels):
        ref = ObjectRef.of(manifest)
        rt.ensure_watch(cluster_name, ref)
        prior = [c for c in vm.record.created if c.cluster == cluster_name and c.ref == ref]
        if prior and not any(c.confirmed for c in prior):
            # Only the intent was journaled (killed around the create): the create may have
            # landed. Look before creating again: admission webhooks judge a create before the
            # apiserver checks the name, so a second create of a live migration is refused with
            # KubeVirt's "in-flight migration" error instead of a 409 we could adopt from.
            existing = yield from retrying(rt, vm, f"get {ref}", lambda: cluster.fetch(ref), deadline)
            if existing is not None:
                ours = _accept_existing(vm, cluster_name, existing, manifest, ref, action.kind, labels)
                vm.log("created", state=state.name, cluster=cluster_name, ref=ref_to_json(ref),
                       ours=ours)
                vm.last_object = (cluster_name, ref)
                out.append((cluster_name, ref))
                continue
        if any(c.confirmed for c in prior):
            # This run created it before (we are resuming, or looping back). If the cluster has
            # removed it since (KubeVirt deletes a finished source migration), creating it again
            # would start the work a second time: never create an object twice.
            existing = yield from retrying(rt, vm, f"get {ref}", lambda: cluster.fetch(ref), deadline)
            if existing is None:
                vm.logger.info("%s on %s was created by this run and has since been removed; "
                               "not creating it again", ref, cluster_name)
                vm.last_object = (cluster_name, ref)
                out.append((cluster_name, ref))
                continue
        vm.log("intent", state=state.name, cluster=cluster_name, ref=ref_to_json(ref),
               action=action.kind, hash=manifest["metadata"]["annotations"]["smrun.io/manifest-hash"])
        ours = yield from _create_one(rt, vm, cluster_name, cluster, manifest, ref, action.kind,
                                      labels, deadline)
        vm.log("created", state=state.name, cluster=cluster_name, ref=ref_to_json(ref), ours=ours)
        vm.last_object = (cluster_name, ref)
        out.append((cluster_name, ref))
    return out


def _stamped(rt: Runtime, vm: VmModel, state: StateSpec, action: Action, ctx: Ctx,
             labels: Mapping[str, str]) -> list[Obj]:
    """The action's documents with smrun's labels and hash: rendered ahead while the VM waited
    (``engine/ahead.py``) when the context is still equal, else rendered now."""
    ahead = vm.ahead.pop((state.name, id(action)), None)
    if ahead is not None and ahead[0] == ctx and not rt.cutover_file_seen:
        return ahead[1]
    assert action.template is not None
    return [stamp(doc, labels) for doc in rt.lang.render_manifests(action.template, ctx)]


def _create_one(rt: Runtime, vm: VmModel, cluster_name: str, cluster: Cluster,
                manifest: Obj, ref: ObjectRef, kind: str, labels: Mapping[str, str],
                deadline: float) -> Gen[bool]:
    shared = (cluster_name, ref)
    if kind == "ensure":
        # Shared objects (ConfigMaps, Secrets, namespaces) usually exist already, made by another
        # VM of the plan: the shared watch answers that without a request, sparing a 409 per VM.
        # When another VM of this run is creating it right now, wait for that create to land
        # (it wakes us) instead of sending a second one: ten VMs sharing a ConfigMap made ten
        # POSTs, nine of them 409s, and each 409 cost a read and a pause.
        while shared in rt.ensuring:
            vm.waiting_for = f"{ref} (being created for another VM)"
            yield Wait((obj_key(cluster_name, ref),), min(deadline, rt.clock() + 1.0))
        existing = yield from retrying(rt, vm, f"get {ref}", lambda: cluster.get(ref), deadline)
        if existing is not None:
            return _accept_existing(vm, cluster_name, existing, manifest, ref, kind, labels)
    while True:
        rt.ensuring.add(shared)
        try:
            yield from retrying(rt, vm, f"create {ref}", lambda: cluster.create(manifest), deadline,
                                blocking=True, durable=True)
            vm.logger.info("created %s on %s", ref, cluster_name)
            return True
        except Conflict:
            pass
        finally:
            rt.ensuring.discard(shared)
            rt.scheduler.notify(obj_key(cluster_name, ref))
        # Someone else made it: ask the server, not the cache (whose event may still be coming).
        existing = yield from retrying(rt, vm, f"get {ref}", lambda: cluster.fetch(ref), deadline)
        if existing is None:
            # Deleted between our create and get (or a cache that lags): try again shortly, but
            # only until the state's deadline (a 409 for an object we can never read must not
            # loop forever).
            if rt.clock() >= deadline:
                raise ReadinessTimeout(f"{vm.state_name}: timed out creating {ref} on {cluster_name}: "
                                       "it already exists (409) but cannot be read")
            yield Wait(until=rt.clock() + 0.05)
            continue
        return _accept_existing(vm, cluster_name, existing, manifest, ref, kind, labels)


def _accept_existing(vm: VmModel, cluster_name: str, existing: Obj,
                     manifest: Obj, ref: ObjectRef, kind: str,
                     labels: Mapping[str, str]) -> bool:
    """An object of that name exists: adopt it if it is ours (True), accept it for ``ensure``
    (False: not ours, so undo never deletes it), else refuse to overwrite it."""
    if is_ours(existing, labels):
        vm.logger.info("adopted %s on %s", ref, cluster_name)
        return True
    if kind == "ensure":
        if _content(existing) != _content(manifest):
            vm.logger.warning("%s exists on %s with different content; using it as is",
                              ref, cluster_name)
        return False
    raise OwnershipConflict(f"{ref} already exists on {cluster_name} and was not created by "
                            f"this plan for this VM; not overwriting it")


def patch(rt: Runtime, vm: VmModel, state: StateSpec, action: Action, ctx: Ctx,
          deadline: float) -> Gen[None]:
    assert action.object is not None
    cluster_name = action_cluster(state, action)
    cluster = rt.clusters[cluster_name]
    ref = render_ref(rt, action.object, ctx)
    body = (rt.lang.render_patch(action.template, ctx) if action.template is not None
            else rt.lang.render_value(action.patch, ctx))
    patch_type = action.patch_type or "merge"
    yield from retrying(rt, vm, f"patch {ref}",
                        lambda: cluster.patch(ref, body, patch_type=patch_type), deadline,
                        blocking=True)
    vm.logger.info("patched %s on %s", ref, cluster_name)


def delete_and_wait(rt: Runtime, vm: VmModel, cluster_name: str, ref: ObjectRef,
                    deadline: float) -> Gen[None]:
    cluster = rt.clusters[cluster_name]
    rt.ensure_watch(cluster_name, ref)
    yield from retrying(rt, vm, f"delete {ref}", lambda: cluster.delete(ref), deadline, blocking=True)
    key = obj_key(cluster_name, ref)
    while True:
        obj = yield from retrying(rt, vm, f"get {ref}", lambda: cluster.get(ref), deadline)
        if obj is None:
            if any(c.cluster == cluster_name and c.ref == ref for c in vm.record.created):
                # Ours and gone on purpose: a later apply of the same name creates it afresh.
                vm.log("deleted", state=vm.state_name, cluster=cluster_name, ref=ref_to_json(ref))
            return
        if rt.clock() >= deadline:
            raise ReadinessTimeout(f"{vm.state_name}: timed out waiting for {ref} on {cluster_name} "
                                   "to be deleted")
        vm.waiting_for = f"{ref} to be deleted"
        yield Wait((key,), deadline)


def delete_created(rt: Runtime, vm: VmModel, state_name: str, deadline: float) -> Gen[None]:
    """Delete what ``state_name`` created (journal order, newest first) and wait until gone."""
    for c in reversed([c for c in vm.record.created if c.state == state_name]):
        if not c.confirmed:
            # Only the intent was journaled: delete it only if the live object is ours. Asked of
            # the server, not the cache: an object of that name that the cache does not show yet
            # may be another VM's (a shared `ensure` that VM made after ours failed), and a
            # delete by name would take it away from under that VM.
            obj = yield from retrying(rt, vm, f"get {c.ref}",
                                      lambda: rt.clusters[c.cluster].fetch(c.ref), deadline)
            if obj is None or not is_ours(obj, vm.labels(state_name)):
                vm.log("deleted", state=state_name, cluster=c.cluster, ref=ref_to_json(c.ref))
                continue
        yield from delete_and_wait(rt, vm, c.cluster, c.ref, deadline)  # journals "deleted"


def wait_timer(rt: Runtime, vm: VmModel, action: Action, ctx: Ctx) -> Gen[None]:
    if action.until is not None:
        while True:
            # A fresh view of the VM on every wake: `smrun cutover` may have moved vm.cutover.
            fresh = vm.context()
            ctx = {**ctx, "vm": fresh.get("vm", ctx.get("vm")), "outputs": fresh["outputs"]}
            value = rt.lang.evaluate(action.until, ctx)
            if value in (None, "", "none"):
                return
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            left = (when - datetime.now(timezone.utc)).total_seconds()
            if left <= 0:
                return
            vm.waiting_for = f"until {value}"
            # Re-evaluated on every wake (resync), so a changed plan value is seen.
            yield Wait(until=rt.clock() + min(left, rt.resync))
    seconds = float((action.seconds if action.seconds_expr is None
                     else rt.lang.evaluate(action.seconds_expr, ctx)) or 0)
    end = rt.clock() + seconds
    vm.waiting_for = f"timer {format_duration(seconds)}"
    while rt.clock() < end:
        yield Wait(until=end)


def post_event(rt: Runtime, vm: VmModel, *, reason: str, message: str, warning: bool) -> None:
    """Best effort: a Kubernetes Event on the VM's most recent object, so ``kubectl describe``
    and ``kubectl get events`` tell the story too. Never waits, never fails the VM."""
    if vm.last_object is None:
        return
    cluster_name, ref = vm.last_object
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    suffix = hashlib.sha256((vm.key + now + reason).encode()).hexdigest()[:10]
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{ref.name[:200]}.smrun-{suffix}",
                     "namespace": ref.namespace or "default",
                     "labels": {k: v for k, v in vm.labels(vm.state_name).items()}},
        "involvedObject": {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name,
                           **({"namespace": ref.namespace} if ref.namespace else {})},
        "reason": reason, "message": message[:1000], "type": "Warning" if warning else "Normal",
        "source": {"component": "smrun"}, "reportingComponent": "smrun",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
    cluster = rt.clusters[cluster_name]

    def send() -> None:
        try:
            cluster.create(event)
        except Exception as e:  # noqa: BLE001 - events are informative only
            vm.logger.debug("could not post an Event: %s", e)

    if rt.pool is not None:
        rt.submit_write(send)
    else:
        send()
