"""``smrun validate --server-dry-run``: the first states' writes, judged by the real clusters.

Each write of :func:`statemachine.diff.first.first_states` is sent as the engine would send it,
with ``dryRun=All``: the API server runs its schema validation, defaulting and admission
webhooks (KubeVirt's and CDI's among them) and answers as for the real write, storing nothing.

- ``apply``/``ensure`` of an absent object: a dry-run create of the stamped manifest;
- ``apply`` of someone else's object: refused by smrun itself (the run would never overwrite
  it); an object of this plan (``apply``) or any existing one (``ensure``): not sent, the engine
  adopts or uses it as it is, without writing;
- ``patch``: a dry-run patch (merge or JSON) of the live object; of an absent object: refused
  (the run's patch would get 404);
- not sent: a second action on an object that an earlier write of this preview creates, a write
  into a namespace that an earlier write of this preview creates (the server cannot judge a
  write on an object or in a namespace it does not have yet: it would answer 404), and
  ``delete`` (a dry-run delete tells nothing about what the run needs).

A refusal is one line naming the VM, the object, the cluster and the server's message. A cluster
that cannot be reached is raised (``ClusterUnreachable``), not reported as a refusal.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from statemachine.diff.changes import engine_manifest, owned, read_live, target_ref
from statemachine.diff.first import namespace_of
from statemachine.errors import PermanentClusterError
from statemachine.k8s import Cluster, ObjectRef
from statemachine.plan import Plan
from statemachine.render import RenderedManifest

__all__ = ["Outcome", "server_dry_run"]


@dataclass(frozen=True)
class Outcome:
    """One action of the preview: sent (``verb``: ``create``/``patch``) or not (``""``, with
    ``why``), and the refusal line if it was refused."""

    vm: str | None
    cluster: str
    ref: ObjectRef
    verb: str
    refusal: str | None = None
    why: str = ""


def _line(m: RenderedManifest, ref: ObjectRef, context: str, message: str) -> str:
    at = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    return f"{m.vm or 'setup'}: {m.state}: {ref.kind} {at} on {context}: {' '.join(message.split())}"


def server_dry_run(plan: Plan, manifests: Sequence[RenderedManifest],
                   clusters: Mapping[str, Cluster],
                   contexts: Mapping[str, str] | None = None) -> list[Outcome]:
    """Send each write with ``dryRun=All`` (see the module docstring) and collect the answers.

    ``contexts`` names each cluster in refusals (default the plan's side, ``source``/``target``).
    """
    contexts = contexts or {}
    made: set[tuple[str, ObjectRef]] = set()   # created by an earlier dry run of this preview
    seen: set[tuple[str, ObjectRef]] = set()
    out: list[Outcome] = []
    for m in manifests:
        ref = target_ref(m)
        key = (m.cluster, ref)
        cluster = clusters[m.cluster]
        context = contexts.get(m.cluster) or m.cluster

        def refused(verb: str, message: str) -> None:
            out.append(Outcome(m.vm, m.cluster, ref, verb, _line(m, ref, context, message)))

        if key in made or (m.action in ("apply", "ensure") and key in seen):
            out.append(Outcome(m.vm, m.cluster, ref, "", why="made by an earlier state"))
            continue
        if m.action == "delete":
            out.append(Outcome(m.vm, m.cluster, ref, "", why="deletes are not sent"))
            continue
        if (m.cluster, ObjectRef("v1", "Namespace", "", namespace_of(m))) in made:
            out.append(Outcome(m.vm, m.cluster, ref, "", why="its namespace is made by an "
                                                              "earlier state"))
            continue
        seen.add(key)
        live = read_live(cluster, ref)
        if m.action in ("apply", "ensure"):
            verb = "create"
            if live is not None:
                if m.action == "apply" and not owned(plan, m, live):
                    refused("", "exists and was not created by this plan for this VM; the run "
                            "would refuse to overwrite it")
                else:
                    out.append(Outcome(m.vm, m.cluster, ref, "", why="exists: used as it is"))
                continue
            try:
                cluster.create(engine_manifest(plan, m), dry_run=True)
                out.append(Outcome(m.vm, m.cluster, ref, verb))
            except PermanentClusterError as exc:
                refused(verb, str(exc))
            made.add(key)
            continue
        verb = "patch"
        if live is None:
            refused(verb, "not found: the run's patch would fail (404)")
            continue
        try:
            cluster.patch(ref, m.manifest.get("patch"),
                          patch_type="json" if m.manifest.get("type") == "json" else "merge",
                          dry_run=True)
            out.append(Outcome(m.vm, m.cluster, ref, verb))
        except PermanentClusterError as exc:
            refused(verb, str(exc))
    return out
