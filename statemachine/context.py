"""Build the variables templates and expressions see (docs/itinerary.md, "Context").

``vm_context(plan, vm, ...)`` gives the context of one VM; ``setup_context(plan, ...)`` the
once-per-plan context of ``spec.setup`` (no ``vm``). Both return plain ``dict``/``list``/scalar
data (never the frozen dataclasses, never tuples) so that Jinja's sandbox, ``tojson`` and
``toyaml`` handle every value. The engine and ``render.py`` call these; neither template nor
expression code ever sees a :class:`~statemachine.plan.Plan` object.

Decisions recorded here:

- **Plan map lookups.** ``storage_for``/``network_for`` are defined in ``statemachine.expressions``
  and read ``plan.map`` from the context; this module therefore puts ``plan.map`` in the plan's own
  shape (``{storage: [{source, destination: {storageClass, accessMode, volumeMode}}], network:
  [{source: {type, name}, destination: {type, name}}]}``). No callables are put in the context.
- **Settings** keep the plan's camelCase names, with defaults applied; durations are **seconds**
  (numbers), so ``wait: {seconds: "settings.precopyInterval"}`` and
  ``activeDeadlineSeconds: {{ settings.stepTimeout }}`` work without parsing -- except
  ``exportTTL``, a Kubernetes duration string (``12h``) that goes into a VirtualMachineExport.
- Optional fields are present with ``none`` (``vm.cutover``, ``hook.playbook``...), so strict
  templates can test them (``{% if vm.cutover %}``) instead of failing on an undefined name.
- ``vm.key`` is ``dns_name("<namespace>-<name>")``.
- ``run.labels`` are the labels the engine stamps (``smrun.io/plan``, ``smrun.io/vm``,
  ``smrun.io/vm-namespace``, ``smrun.io/run``); ``smrun.io/state`` is per state and added by
  the engine. Values longer than a label allows are shortened with :func:`dns_name`.
- ``clusters.intercluster``: a simulated plan always has two clusters; otherwise it is true when
  the servers differ (if known) or else when the two kubeconfig/context references differ.

It does not resolve reads, evaluate predicates or render anything.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statemachine.expressions import dns_name
from statemachine.plan import VM, ClusterRef, Hook, Plan, Settings

#: A template or expression context (``plan``, ``vm``, ``reads``, ``outputs``...), and the named
#: values kept in one (``reads``, ``outputs``): JSON-like data from YAML and clusters.
Context = dict[str, Any]
Values = dict[str, Any]

__all__ = ["Context", "Values", "DEFAULT_RUN_ID", "clusters_context", "hook_context", "labels_for", "plan_context",
           "settings_context", "setup_context", "vm_context", "vm_value", "with_item"]

DEFAULT_RUN_ID = "render"
"""The run id used when there is no run (``smrun render``, ``smrun graph``)."""

_LABEL_MAX = 63


def _seconds(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def settings_context(settings: Settings) -> dict[str, Any]:
    """``settings``: camelCase names, defaults applied, durations in seconds."""
    return {
        "maxInFlight": settings.max_in_flight,
        "stepTimeout": _seconds(settings.step_timeout),
        "requireMatchingInstanceTypes": settings.require_matching_instance_types,
        "precopyInterval": _seconds(settings.precopy_interval),
        "maxPrecopyRounds": settings.max_precopy_rounds,
        "maxConsecutiveRoundFailures": settings.max_consecutive_round_failures,
        "autoCutoverDeltaBytes": settings.auto_cutover_delta_bytes,
        "cutoverMethod": settings.cutover_method,
        "exportTTL": settings.export_ttl,  # a Kubernetes duration string, not seconds
        "importRestartLimit": settings.import_restart_limit,
        "submariner": settings.submariner,
        "backupTTL": settings.backup_ttl,  # a Kubernetes duration string, not seconds
        "scratchStorageClass": settings.scratch_storage_class,
        "scratchSize": settings.scratch_size,
        "copyImage": settings.copy_image,
        "copyParallelism": settings.copy_parallelism,
        "quiescePrecopy": settings.quiesce_precopy,
    }


def hook_context(hook: Hook) -> dict[str, Any]:
    """A hook as templates see it; ``playbook`` is the playbook's text (or none)."""
    return {"name": hook.name, "image": hook.image, "playbook": hook.playbook,
            "serviceAccount": hook.service_account, "deadline": _seconds(hook.deadline)}


def plan_context(plan: Plan) -> dict[str, Any]:
    """``plan``: name, type, targetNamespace, map, hooks, settings, cutover (and provider)."""
    storage = []
    for m in plan.storage_map:
        dest: dict[str, Any] = {"storageClass": m.storage_class}
        if m.access_mode is not None:
            dest["accessMode"] = m.access_mode
        if m.volume_mode is not None:
            dest["volumeMode"] = m.volume_mode
        storage.append({"source": m.source, "destination": dest})
    network = []
    for n in plan.network_map:
        src = {k: v for k, v in (("type", n.source_type), ("name", n.source_name)) if v is not None}
        dst = {k: v for k, v in (("type", n.destination_type), ("name", n.destination_name))
               if v is not None}
        network.append({"source": src, "destination": dst})
    return {
        "name": plan.name,
        "type": plan.type,
        "provider": plan.provider,
        "description": plan.description,
        "targetNamespace": plan.target_namespace,
        "map": {"storage": storage, "network": network},
        "hooks": [hook_context(h) for h in plan.hooks],
        "settings": settings_context(plan.settings),
        "cutover": plan.cutover,
    }


def vm_value(vm: VM) -> dict[str, Any]:
    """``vm``: name, namespace, targetName, targetNamespace, hooks, cutover, key."""
    return {
        "name": vm.name,
        "namespace": vm.namespace,
        "targetName": vm.target_name,
        "targetNamespace": vm.target_namespace,
        "hooks": [{"step": h.step, "hook": hook_context(h.hook)} for h in vm.hooks],
        "cutover": vm.cutover,
        "key": dns_name(vm.key),
    }


def _label_value(text: str) -> str:
    return text if len(text) <= _LABEL_MAX else dns_name(text)


def labels_for(plan: Plan, vm: VM | None, *, run_id: str, state: str | None = None) -> dict[str, str]:
    """The labels the engine stamps on what it creates (without ``smrun.io/vm*`` for setup)."""
    labels = {"smrun.io/plan": _label_value(plan.name)}
    if vm is not None:
        labels["smrun.io/vm"] = _label_value(vm.name)
        labels["smrun.io/vm-namespace"] = vm.namespace
    if state is not None:
        labels["smrun.io/state"] = _label_value(state)
    labels["smrun.io/run"] = _label_value(run_id)
    return labels


def _cluster_name(ref: ClusterRef, side: str) -> str:
    return ref.context or side


def clusters_context(plan: Plan, servers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``clusters``: ``source``/``target`` as ``{name, server}`` and ``intercluster``.

    ``servers`` maps ``source``/``target`` to API server URLs when the caller knows them.
    """
    servers = servers or {}
    if plan.simulation is not None:
        names = {"source": "source", "target": "target"}
        intercluster = True
    else:
        names = {"source": _cluster_name(plan.source, "source"),
                 "target": _cluster_name(plan.target, "target")}
        if servers.get("source") and servers.get("target"):
            intercluster = servers["source"] != servers["target"]
        else:
            intercluster = plan.source != plan.target
    return {
        "source": {"name": names["source"], "server": servers.get("source", "")},
        "target": {"name": names["target"], "server": servers.get("target", "")},
        "intercluster": intercluster,
    }


def _run(plan: Plan, vm: VM | None, run_id: str) -> dict[str, Any]:
    return {"id": run_id, "plan": plan.name, "labels": labels_for(plan, vm, run_id=run_id)}


def vm_context(plan: Plan, vm: VM, *, reads: Mapping[str, Any] | None = None,
               outputs: Mapping[str, Any] | None = None,
               predicates: Mapping[str, bool] | None = None, run_id: str = DEFAULT_RUN_ID,
               servers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The full context of one VM.

    ``outputs`` is used as given (not copied), so a caller may pass a mapping that answers
    unknown names itself (``render.py`` passes one that renders ``<output:NAME>``).
    """
    plan_value = plan_context(plan)
    return {
        "plan": plan_value,
        "vm": vm_value(vm),
        "settings": plan_value["settings"],
        "params": dict(plan.parameters),
        "values": {},
        "reads": dict(reads or {}),
        "outputs": outputs if outputs is not None else {},
        "predicates": dict(predicates or {}),
        "run": _run(plan, vm, run_id),
        "clusters": clusters_context(plan, servers),
    }


def setup_context(plan: Plan, *, reads: Mapping[str, Any] | None = None,
                  outputs: Mapping[str, Any] | None = None, run_id: str = DEFAULT_RUN_ID,
                  servers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The context of ``spec.setup`` states: like a VM's, without ``vm`` and ``predicates``."""
    plan_value = plan_context(plan)
    return {
        "plan": plan_value,
        "settings": plan_value["settings"],
        "params": dict(plan.parameters),
        "reads": dict(reads or {}),
        "outputs": outputs if outputs is not None else {},
        "run": _run(plan, None, run_id),
        "clusters": clusters_context(plan, servers),
    }


def with_item(ctx: Mapping[str, Any], item: Any, index: int) -> dict[str, Any]:
    """``ctx`` plus ``item`` and ``index`` (inside ``forEach``)."""
    return {**ctx, "item": item, "index": index}
