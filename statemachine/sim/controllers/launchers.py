"""virt-launcher pods through a VMI's life and its migrations (kubevirt-fidelity.md §4.5, §5).

Called by the VMI and migration controllers at the moments upstream acts; every function writes the
pod (bodies from ``pods.py``) and records the Events the real components record then:

- :func:`create` — the VMI controller's pod (VMI ``Pending → Scheduling``), ``SuccessfulCreate``
  ``Created virtual machine pod <pod>`` on the VMI; a migration target pod instead gets
  ``Created migration target pod <pod>`` on the VMIM.
- :func:`schedule` — the pod runs on its node (``Scheduled``); the VMI's ``status.activePods``.
- :func:`finish` — the pod's containers exit (the VMI shut down, or the source of a completed
  migration): phase ``Succeeded``; the pod stays.
- :func:`delete` — ``SuccessfulDelete`` ``Deleted virtual machine pod <pod>`` on the VMI.

Pods already known to exist are remembered in ``ctx.state`` so a resync of many running VMIs does
not read every pod again.
"""
from __future__ import annotations

from statemachine.sim import events
from statemachine.sim.controller import ClusterContext
from statemachine.sim.controllers import pods
from statemachine.sim.store import Obj

COMPONENT = "virtualmachine-controller"
RECEIVER_ANNOTATION = "kubevirt.io/create-migration-target"
_KNOWN = "launcher-pods"


def _known(ctx: ClusterContext) -> set[tuple[str, str]]:
    known: set[tuple[str, str]] = ctx.state.setdefault(_KNOWN, set())
    return known


def current_name(ctx: ClusterContext, vmi: Obj) -> str:
    """The name of the pod the VMI runs in now (the target's after a completed migration)."""
    state = (vmi.get("status") or {}).get("migrationState") or {}
    if state.get("completed") and not state.get("failed") and state.get("targetPod"):
        return str(state["targetPod"])
    if ((vmi.get("metadata") or {}).get("annotations") or {}).get(RECEIVER_ANNOTATION) == "true":
        return pods.launcher_name(vmi, ctx.name, "02")  # its pod is the migration target pod
    return pods.launcher_name(vmi, ctx.name, "01")


def exists(ctx: ClusterContext, ns: str, name: str) -> bool:
    if (ns, name) in _known(ctx):
        return True
    if ctx.store.try_get("Pod", ns, name) is not None:
        _known(ctx).add((ns, name))
        return True
    return False


def create(ctx: ClusterContext, vmi: Obj, name: str, *, migration: Obj | None = None,
           source_node: str = "") -> None:
    """Create the launcher pod ``name`` (Pending) unless it exists; records the event."""
    ns = vmi["metadata"].get("namespace", "")
    if exists(ctx, ns, name):
        return
    ctx.store.create("Pod", pods.launcher_pod(vmi, name, migration=migration,
                                              source_node=source_node), keep_status=True)
    _known(ctx).add((ns, name))
    if migration is None:
        events.record(ctx.store, vmi, "Normal", "SuccessfulCreate",
                      f"Created virtual machine pod {name}", component=COMPONENT)
    else:
        events.record(ctx.store, migration, "Normal", "SuccessfulCreate",
                      f"Created migration target pod {name}", component=COMPONENT)


def running_since_start(ctx: ClusterContext, vmi: Obj, name: str, node: str) -> dict[str, str]:
    """The pod of a VMI that was already running when the cluster started (a seeded one): made
    Running in one write, with no creation event (it would have expired long ago); returns the
    ``activePods`` entry."""
    ns = vmi["metadata"].get("namespace", "")
    body = pods.launcher_pod(vmi, name)
    body["spec"]["nodeName"] = node
    body["status"] = pods.running_status(body, node, pods.pod_ip(ctx, name))
    pod = ctx.store.create("Pod", body, keep_status=True)
    _known(ctx).add((ns, name))
    return {pod["metadata"]["uid"]: node}


def schedule(ctx: ClusterContext, vmi: Obj, name: str, node: str) -> dict[str, str]:
    """Run pod ``name`` on ``node``; returns the ``activePods`` entry ``{pod uid: node}``."""
    ns = vmi["metadata"].get("namespace", "")
    pod = ctx.store.try_get("Pod", ns, name)
    if pod is None:
        return {}
    if (pod.get("status") or {}).get("phase") != "Running":
        ctx.store.mutate("Pod", ns, name, lambda o: _run(o, node, pods.pod_ip(ctx, name)))
    return {pod["metadata"]["uid"]: node}


def _run(pod: Obj, node: str, ip: str) -> None:
    pod["spec"]["nodeName"] = node
    pod["status"] = pods.running_status(pod, node, ip)


def finish(ctx: ClusterContext, vmi: Obj, name: str) -> None:
    """The pod's containers exited cleanly: phase Succeeded."""
    ns = vmi["metadata"].get("namespace", "")
    pod = ctx.store.try_get("Pod", ns, name)
    if pod is not None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
        ctx.store.update_status("Pod", ns, name, pods.finished_status(pod, failed=False))


def delete(ctx: ClusterContext, vmi: Obj, name: str, *, event: bool = True) -> None:
    ns = vmi["metadata"].get("namespace", "")
    _known(ctx).discard((ns, name))
    if ctx.store.try_get("Pod", ns, name) is None:
        return
    ctx.store.delete("Pod", ns, name)
    if event:
        events.record(ctx.store, vmi, "Normal", "SuccessfulDelete",
                      f"Deleted virtual machine pod {name}", component=COMPONENT)


def owned(ctx: ClusterContext, vmi: Obj) -> list[str]:
    """Names of the pods owned by ``vmi`` (a label-selected list: only used on deletion)."""
    md = vmi["metadata"]
    return [p["metadata"]["name"] for p in ctx.store.list(
        "Pod", md.get("namespace"), label_selector=f"{pods.CREATED_BY}={md['uid']}")]


def handler_event(ctx: ClusterContext, vmi: Obj, etype: str, reason: str, message: str,
                  node: str = "") -> None:
    """An event virt-handler records on the VMI (component ``virt-handler``, host = node)."""
    host = node or str((vmi.get("status") or {}).get("nodeName") or "")
    events.record(ctx.store, vmi, etype, reason, message, component="virt-handler", host=host)


def controller_event(ctx: ClusterContext, obj: Obj, etype: str, reason: str,
                     message: str) -> None:
    """An event of virt-controller (VMI and migration controllers share its recorder)."""
    events.record(ctx.store, obj, etype, reason, message, component=COMPONENT)
