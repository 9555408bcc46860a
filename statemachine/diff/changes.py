"""What the first states would change on the clusters, object by object (``smrun diff``).

For each manifest of :func:`statemachine.diff.first.first_states`, the object is read from its
cluster (GETs only, straight from the API server) and the engine's own rule for that action is
applied to it locally:

- ``apply``/``ensure`` of an absent object: created as the engine would send it (smrun's labels
  and manifest-hash annotation stamped, :func:`statemachine.engine.actions.stamp`);
- ``apply`` of an existing object of this plan and VM: adopted as it is (no change); of someone
  else's object: the run would refuse (:class:`Change` with a ``note``, no diff);
- ``ensure`` of an existing object: used as it is (no change; a note when its content differs);
- ``patch``: the merge or JSON patch applied to the live object (a patch of an absent object is
  a note: the run's patch would fail with 404);
- ``delete``: the object gone.

Several actions on one object (the same shared ConfigMap for every VM, two patches) fold into one
change, from the live object to the last would-be one. Nothing is sent but GETs.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from statemachine.context import DEFAULT_RUN_ID, labels_for
from statemachine.errors import ClusterError, NotFound, PreflightError
from statemachine.k8s import Cluster, Obj, ObjectRef, copy_obj
from statemachine.plan import Plan
from statemachine.render import RenderedManifest

__all__ = ["Change", "changes", "engine_manifest", "owned", "read_live", "target_ref"]

Key = tuple[str, ObjectRef]


@dataclass
class Change:
    """One object: as it is (``live``, ``None`` if absent) and as the first states would leave
    it (``merged``, ``None`` if deleted). ``problems``: where the run would fail instead (a
    refusal to overwrite, a patch of an absent object); ``notes``: what it accepts as it is."""

    cluster: str
    ref: ObjectRef
    vm: str | None
    state: str
    live: Obj | None
    merged: Obj | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return self.live != self.merged


def target_ref(m: RenderedManifest) -> ObjectRef:
    """The object a rendered action is about."""
    if m.action in ("apply", "ensure"):
        return ObjectRef.of(m.manifest)
    ref = m.manifest["object"]
    return ObjectRef(str(ref["apiVersion"]), str(ref["kind"]), str(ref.get("namespace") or ""),
                     str(ref["name"]))


def engine_manifest(plan: Plan, m: RenderedManifest) -> Obj:
    """An ``apply``/``ensure`` manifest as the engine sends it: with smrun's labels."""
    from statemachine.engine.actions import stamp

    vm = plan.vm(m.vm) if m.vm else None
    return stamp(m.manifest, labels_for(plan, vm, run_id=DEFAULT_RUN_ID, state=m.state))


def owned(plan: Plan, m: RenderedManifest, live: Obj) -> bool:
    """Whether the live object carries this plan's and VM's labels (the engine adopts it)."""
    from statemachine.engine.actions import is_ours

    vm = plan.vm(m.vm) if m.vm else None
    return is_ours(live, labels_for(plan, vm, run_id=DEFAULT_RUN_ID, state=m.state))


def _covers(live: Any, wanted: Any) -> bool:
    """Whether every field ``wanted`` sets has that value in ``live`` (fields the server or
    others added, such as a Namespace's finalizers, do not count as a difference)."""
    if isinstance(wanted, Mapping) and isinstance(live, Mapping):
        return all(k in live and _covers(live[k], v) for k, v in wanted.items())
    return bool(live == wanted)


def _content(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _patched(obj: Obj, m: RenderedManifest) -> Obj:
    from statemachine.sim.patches import json_patch, merge_patch

    body = m.manifest.get("patch")
    result: Obj = (json_patch(obj, body) if m.manifest.get("type") == "json"
                   else merge_patch(obj, body))
    return result


def read_live(cluster: Cluster, ref: ObjectRef) -> Obj | None:
    """The object from the API server, ``None`` if absent; a kind the cluster does not serve is
    a ``PreflightError`` (exit 3, as preflight reports it), not a missing object."""
    try:
        return cluster.fetch(ref)
    except NotFound as exc:
        raise PreflightError(str(exc)) from None


def changes(plan: Plan, manifests: Sequence[RenderedManifest],
            clusters: Mapping[str, Cluster]) -> list[Change]:
    """One :class:`Change` per object the manifests touch, in the order first touched.

    Raises ``ClusterError`` (``ClusterUnreachable``...) when a cluster cannot be read."""
    out: dict[Key, Change] = {}
    for m in manifests:
        ref = target_ref(m)
        key = (m.cluster, ref)
        change = out.get(key)
        if change is None:
            live = read_live(clusters[m.cluster], ref)
            change = out[key] = Change(m.cluster, ref, m.vm, m.state, live,
                                       copy_obj(live) if live is not None else None)
        current = change.merged
        where = f"{ref.kind} {_name(ref)} on {m.cluster}"
        if m.action in ("apply", "ensure"):
            if current is None:
                change.merged = engine_manifest(plan, m)
            elif change.live is None:
                pass  # made by an earlier state of this preview: the engine finds it, done
            elif m.action == "apply" and not owned(plan, m, current):
                change.problems.append(f"{where} exists and was not created by this plan for this "
                                    "VM: the run would refuse to overwrite it")
            elif m.action == "ensure" and not _covers(_content(current), _content(m.manifest)):
                change.notes.append(f"{where} exists with different content: the run uses it "
                                    "as it is")
        elif m.action == "patch":
            if current is None:
                change.problems.append(f"{where} does not exist: the run's patch would fail (404)")
                continue
            try:
                change.merged = _patched(current, m)
            except ClusterError as exc:
                # A JSON patch's error may quote a value: never one of a Secret.
                detail = "" if ref.kind == "Secret" else f": {exc}"
                change.problems.append(f"{where}: the patch does not apply{detail}")
        elif m.action == "delete":
            change.merged = None
    return list(out.values())


def _name(ref: ObjectRef) -> str:
    return f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
