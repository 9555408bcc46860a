"""An instancetype's CPU and memory applied to the VMI the VM controller creates.

KubeVirt's VM controller applies the VM's instancetype and preference to the new VMI's spec
(``ApplyToVMI``: ``applyCPU``/``applyGuestCPUTopology``, ``applyMemory``) and annotates the VMI
with their names (``kubevirt.io/instancetype-name`` or ``kubevirt.io/cluster-instancetype-name``,
``kubevirt.io/preference-name`` or ``kubevirt.io/cluster-preference-name``). The VMI's
``memory`` and ``currentCPUTopology`` status then follow from that spec (``vmistatus.py``).

Applied here: ``cpu.guest`` as the topology the preference's ``preferredCPUTopology`` asks for
(sockets by default, cores, threads, or spread with its ratio and ``across``), ``cpu.model``,
``cpu.dedicatedCPUPlacement``, ``cpu.maxSockets``; ``memory.guest``, ``hugepages``, ``maxGuest``
and the pod's memory request lowered by ``overcommitPercent``.

VM admission refuses a VM whose template sets a field its instancetype owns (:func:`conflicts`,
as ``ApplyToVMI``'s ``validate*`` steps find them), so the VMs the controller starts have none;
should one be stored anyway (a seed), the template's value is kept. An instancetype that is not
found, or one named through a ``revisionName`` (the sim serves no ControllerRevisions), is not
checked: upstream's admitter only logs a failed lookup. Preferences' device defaults (disk bus,
interface model…) are not applied.
"""
from __future__ import annotations

import copy
from typing import Any

from statemachine.sim.controller import ClusterContext
from statemachine.sim.controllers.conditions import parse_quantity
from statemachine.sim.store import Obj, Store

_NAMESPACED = {"instancetype": ("VirtualMachineInstancetype", "virtualmachineinstancetype"),
               "preference": ("VirtualMachinePreference", "virtualmachinepreference")}
_CLUSTER = {"instancetype": "VirtualMachineClusterInstancetype",
            "preference": "VirtualMachineClusterPreference"}
_ANNOTATIONS = {("instancetype", False): "kubevirt.io/instancetype-name",
                ("instancetype", True): "kubevirt.io/cluster-instancetype-name",
                ("preference", False): "kubevirt.io/preference-name",
                ("preference", True): "kubevirt.io/cluster-preference-name"}


def _find(store: Store, vm: Obj, field: str) -> tuple[dict[str, Any] | None, str]:
    """The referenced object's spec (``None`` when not referenced or missing) and the annotation
    naming it; an empty ``kind`` means the cluster kind (``find/spec.go``)."""
    ref = (vm.get("spec") or {}).get(field) or {}
    if not ref.get("name"):
        return None, ""
    kind = str(ref.get("kind") or "").lower().rstrip("s")
    namespaced = kind == _NAMESPACED[field][1]
    found = store.peek(_NAMESPACED[field][0], (vm.get("metadata") or {}).get("namespace"),
                       ref["name"]) if namespaced else store.peek(_CLUSTER[field], None,
                                                                  ref["name"])
    if found is None:
        return None, ""
    return (found.get("spec") or {}), _ANNOTATIONS[(field, not namespaced)]


def _topology(vcpus: int, preference: dict[str, Any]) -> dict[str, int]:
    """``applyGuestCPUTopology``: 1/1/1, then the vCPUs where the preference wants them."""
    topo = {"sockets": 1, "cores": 1, "threads": 1}
    if vcpus <= 1:
        return topo
    cpu = preference.get("cpu") or {}
    wanted = str(cpu.get("preferredCPUTopology") or "sockets").removeprefix("prefer").lower()
    if wanted in ("cores", "threads"):
        topo[wanted] = vcpus
    elif wanted == "spread":
        options = cpu.get("spreadOptions") or {}
        ratio = int(options.get("ratio") or preference.get("preferSpreadSocketToCoreRatio") or 2)
        across = str(options.get("across") or "SocketsCores")
        if across == "CoresThreads":
            topo.update(threads=ratio, cores=vcpus // ratio)
        elif across == "SocketsCoresThreads":
            topo.update(threads=2, cores=ratio, sockets=vcpus // 2 // ratio)
        else:
            topo.update(cores=ratio, sockets=vcpus // ratio)
    else:  # sockets, any
        topo["sockets"] = vcpus
    return topo


def apply(ctx: ClusterContext, vm: Obj, spec: dict[str, Any], annotations: dict[str, str]) -> None:
    """Apply the VM's instancetype and preference to the VMI ``spec`` (a copy the caller owns) and
    add their annotations to ``annotations``."""
    instancetype, it_note = _find(ctx.store, vm, "instancetype")
    preference, pref_note = _find(ctx.store, vm, "preference")
    names = {"instancetype": it_note, "preference": pref_note}
    for field, note in names.items():
        if note:
            annotations[note] = str(((vm.get("spec") or {}).get(field) or {}).get("name"))
    if instancetype is None:
        return
    domain = spec["domain"] = copy.deepcopy(spec.get("domain") or {})
    it_cpu = instancetype.get("cpu") or {}
    cpu = domain.setdefault("cpu", {})
    if it_cpu.get("guest") and not any(cpu.get(k) for k in ("sockets", "cores", "threads")):
        cpu.update(_topology(int(it_cpu["guest"]), preference or {}))
    for key in ("model", "dedicatedCPUPlacement", "isolateEmulatorThread", "maxSockets"):
        if key in it_cpu and key not in cpu:
            cpu[key] = copy.deepcopy(it_cpu[key])
    it_memory = instancetype.get("memory") or {}
    memory = domain.setdefault("memory", {})
    if it_memory.get("guest") and not memory.get("guest"):
        memory["guest"] = it_memory["guest"]
        percent = int(it_memory.get("overcommitPercent") or 0)
        if percent > 0:
            requests = domain.setdefault("resources", {}).setdefault("requests", {})
            requests.setdefault("memory", str(int(parse_quantity(it_memory["guest"])
                                                  * (1 - percent / 100))))
    for key in ("hugepages", "maxGuest"):
        if key in it_memory and key not in memory:
            memory[key] = copy.deepcopy(it_memory[key])


_BASE = "spec.template.spec"


def conflicts(store: Store, vm: Obj) -> list[str]:
    """The field paths of ``vm``'s template that its instancetype owns, in the order upstream's
    VM admitter reports them (``ApplyToVMI``: node selector, scheduler name, CPU, memory, I/O
    threads, I/O thread policy, launch security, GPUs, host devices, then the template's
    annotations); empty when there is no instancetype to check against (see the module's
    docstring). CPU reports every field it finds; memory only the first."""
    ref = (vm.get("spec") or {}).get("instancetype") or {}
    if ref.get("revisionName"):
        return []
    instancetype, _ = _find(store, vm, "instancetype")
    if instancetype is None:
        return []
    template = (vm.get("spec") or {}).get("template") or {}
    spec = template.get("spec") or {}
    domain = spec.get("domain") or {}
    resources = domain.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    cpu, memory = domain.get("cpu") or {}, domain.get("memory") or {}
    devices = domain.get("devices") or {}
    it_cpu, it_memory = instancetype.get("cpu") or {}, instancetype.get("memory") or {}
    found: list[str] = []
    if instancetype.get("nodeSelector") is not None and spec.get("nodeSelector") is not None:
        found.append(f"{_BASE}.nodeSelector")
    if instancetype.get("schedulerName") and spec.get("schedulerName"):
        found.append(f"{_BASE}.schedulerName")
    found += [f"{_BASE}.domain.{path}" for path, clash in (
        ("resources.requests.cpu", "cpu" in requests),
        ("resources.limits.cpu", "cpu" in limits),
        ("cpu.sockets", bool(cpu.get("sockets"))),
        ("cpu.cores", bool(cpu.get("cores"))),
        ("cpu.threads", bool(cpu.get("threads"))),
        ("cpu.model", bool(cpu.get("model")) and it_cpu.get("model") is not None),
        ("cpu.dedicatedCPUPlacement", bool(cpu.get("dedicatedCPUPlacement"))
         and it_cpu.get("dedicatedCPUPlacement") is not None),
        ("cpu.isolateEmulatorThread", bool(cpu.get("isolateEmulatorThread"))
         and it_cpu.get("isolateEmulatorThread") is not None),
        ("cpu.numa", cpu.get("numa") is not None and it_cpu.get("numa") is not None),
        ("cpu.realtime", cpu.get("realtime") is not None and it_cpu.get("realtime") is not None),
    ) if clash]
    memory_clash = next((path for path, clash in (
        ("memory.guest", memory.get("guest") is not None),
        ("memory.hugepages", memory.get("hugepages") is not None
         and it_memory.get("hugepages") is not None),
        ("memory.maxGuest", memory.get("maxGuest") is not None
         and it_memory.get("maxGuest") is not None),
        ("resources.requests.memory", "memory" in requests),
        ("resources.limits.memory", "memory" in limits),
    ) if clash), None)
    if memory_clash is not None:
        found.append(f"{_BASE}.domain.{memory_clash}")
    pool = (instancetype.get("ioThreads") or {}).get("supplementalPoolThreadCount")
    if pool is not None and (domain.get("ioThreads") or {}).get(
            "supplementalPoolThreadCount") is not None:
        found.append(f"{_BASE}.domain.ioThreads.supplementalPoolThreadCount")
    for key in ("ioThreadsPolicy", "launchSecurity"):
        if instancetype.get(key) is not None and domain.get(key) is not None:
            found.append(f"{_BASE}.domain.{key}")
    for key in ("gpus", "hostDevices"):
        if instancetype.get(key) and devices.get(key):
            found.append(f"{_BASE}.domain.devices.{key}")
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    found += [f"annotations.{key}" for key, value in
              sorted((instancetype.get("annotations") or {}).items())
              if key in annotations and annotations[key] != value]
    return found
