"""The fields of a VMI's ``status`` beyond its phase and conditions (kubevirt-fidelity.md §7.1).

Who writes what, and when, as upstream does; each function returns or fills the fields of one
moment, and the callers write them with the phase change they belong to (never once per tick):

- :func:`mutator_fields` — the VMI mutating webhook at create (``SetDefaultVirtualMachineInstance``
  and ``markAsNonroot`` in KubeVirt's vmi-mutator/defaults): ``runtimeUser: 107`` (the default
  non-root mode), ``guestOSInfo: {}`` (a struct value, so always serialized), ``memory``
  (``guestAtBoot``/``guestCurrent``/``guestRequested`` = the guest memory, ``setGuestMemoryStatus``)
  and ``currentCPUTopology`` (``setCurrentCPUTopologyStatus``). The sim's mutator does not default
  the spec itself, so both are computed from the spec as the defaults would leave it
  (``setGuestMemory``: guest, else requests.memory, else limits.memory, else the hugepage size;
  ``SetDefaultGuestCPUTopology``: 1 socket/core/thread, or as many sockets as the CPU limit or
  request when no topology is given).
- :func:`revision_name` — ``virtualMachineRevisionName`` the VM controller puts on the VMIs it
  creates (``revision-start-vm-<vm uid>-<generation>``).
- :func:`scheduling_fields` — the VMI controller while ``Scheduling`` once the pod exists:
  ``qosClass`` copied from the pod, ``launcherContainerImageVersion`` = the pod's ``compute``
  image (``setLauncherContainerInfo``).
- :func:`scheduled_fields` — the VMI controller when the pod is ready (``Scheduled``): the
  primary interface ``{name, podInterfaceName: eth0}`` (``calculatePrimaryIfaceStatus``), every
  volume's ``{name, target: ""}`` with ``persistentVolumeClaimInfo`` for PVC/DataVolume volumes
  (``updateVolumeStatus``/``processPVCInfo``), ``migrationTransport: Unix``.
- :func:`handler_fields` — virt-handler once the domain runs: the domain's interfaces (netstat's
  ``ifacesStatusFromDomainInterfaces``: name, MAC, ``infoSource: domain``, ``queueCount``,
  ``linkState``), the pod IP on the primary one (``updateIfacesStatusFromPodCache``, no guest agent
  needed), disk targets on ``volumeStatus``, ``migrationMethod`` (``checkVolumesForMigration``),
  ``selinuxContext: none`` (no SELinux on the simulated nodes) and ``machine.type``, the expanded
  alias the launcher's QEMU reports.
- :func:`stamp_phase` — ``phaseTransitionTimestamps``: every phase the VMI enters, once.
- :func:`fill_missing` — the same fields for a VMI that skipped those moments (a seeded running
  VMI), filled only where absent, so a resync writes nothing.

MAC addresses: with masquerade (or bridge) the domain gets the spec's ``macAddress`` or else the
pod NIC's address, which the CNI picks at random (a locally administered unicast address). The
simulator derives one from the VMI's uid and the interface name: same form, stable for the VMI's
life, new for a new VMI (a restart), as a new pod's would be. A migrated domain keeps its MAC: a
local migration keeps the addresses the VMI reports, and a decentralized one's target derives them
from the source VMI's uid (``migrationState.sourceState.virtualMachineInstanceUID``).

What it does not do: secondary (Multus/SR-IOV) pod interface names and IPs, guest-agent data,
``containerDiskVolume`` checksums, hotplug volume phases, per-StorageClass filesystem overheads.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

from statemachine.sim.controller import ClusterContext
from statemachine.sim.controllers.conditions import parse_quantity
from statemachine.sim.store import Obj, now_rfc3339

#: ``status.runtimeUser`` of a non-root VMI (KubeVirt's ``markAsNonroot``; ``Root`` FG off).
RUNTIME_USER = 107
#: The pod interface of the primary (pod) network (namescheme ``PrimaryPodInterfaceName``).
POD_INTERFACE = "eth0"
#: The machine type aliases as the launcher's QEMU expands them (kubevirt-fidelity.md §7.1).
MACHINE_TYPES = {"q35": "pc-q35-rhel9.6.0", "pc-q35": "pc-q35-rhel9.6.0"}
DEFAULT_MACHINE = "q35"
#: Disk device name prefixes per bus (the converter's ``makeDeviceName``); a CD-ROM defaults to
#: SATA, a LUN to SCSI, a disk to virtio (``SetAmd64Defaults``).
_BUS_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd"}
_DEFAULT_BUS = {"disk": "virtio", "cdrom": "sata", "lun": "scsi"}


# ---------------------------------------------------------------------- mutator (create)
def _cpu_count(value: Any) -> int:
    """A CPU quantity as Go's ``Quantity.Value()`` gives it (rounded up: ``500m`` is 1)."""
    text = str(value or "").strip()
    try:
        return math.ceil(float(text[:-1]) / 1000) if text.endswith("m") else math.ceil(float(text))
    except ValueError:
        return 0


def guest_memory(spec: dict[str, Any]) -> str | None:
    """The guest memory the VMI defaults would set (``setGuestMemory``), or ``None``."""
    domain = spec.get("domain") or {}
    memory = domain.get("memory") or {}
    resources = domain.get("resources") or {}
    for value in (memory.get("guest"), (resources.get("requests") or {}).get("memory"),
                  (resources.get("limits") or {}).get("memory"),
                  (memory.get("hugepages") or {}).get("pageSize")):
        if value and parse_quantity(value) > 0:
            return str(value)
    return None


def cpu_topology(spec: dict[str, Any]) -> dict[str, int]:
    """``{sockets, cores, threads}`` as the defaults leave ``spec.domain.cpu``
    (``SetDefaultGuestCPUTopology``); zero fields are omitted, as Go's ``omitempty`` does."""
    domain = spec.get("domain") or {}
    cpu = domain.get("cpu") or {}
    given = {k: int(cpu.get(k) or 0) for k in ("sockets", "cores", "threads")}
    if not any(given.values()):
        resources = domain.get("resources") or {}
        limit = (resources.get("limits") or {}).get("cpu")
        request = (resources.get("requests") or {}).get("cpu")
        sockets = _cpu_count(limit) if limit is not None else (
            _cpu_count(request) if request is not None else 1)
        given = {"sockets": sockets, "cores": 1, "threads": 1}
    return {k: v for k, v in given.items() if v}


def mutator_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """The status fields the VMI mutating webhook sets on create (see module docstring)."""
    out: dict[str, Any] = {"guestOSInfo": {}, "runtimeUser": RUNTIME_USER,
                           "currentCPUTopology": cpu_topology(spec)}
    guest = guest_memory(spec)
    if guest is not None:
        out["memory"] = {"guestAtBoot": guest, "guestCurrent": guest, "guestRequested": guest}
    return out


def revision_name(vm: Obj) -> str:
    """``status.virtualMachineRevisionName`` of a VMI the VM controller creates."""
    md = vm["metadata"]
    return f"revision-start-vm-{md['uid']}-{md.get('generation', 1)}"


def stamp_phase(status: dict[str, Any]) -> None:
    """Record the time ``status`` entered its phase, once per phase, as every KubeVirt writer
    does on a phase change (``SetVMIPhaseTransitionTimestamp``: a phase already listed, e.g. a
    target back in ``WaitingForSync``, is not listed again)."""
    phase = status.get("phase")
    stamps = list(status.get("phaseTransitionTimestamps") or [])
    if phase and not any(s.get("phase") == phase for s in stamps):
        stamps.append({"phase": phase, "phaseTransitionTimestamp": now_rfc3339()})
        status["phaseTransitionTimestamps"] = stamps


# ---------------------------------------------------------------------- VMI controller
def scheduling_fields(pod: Obj | None) -> dict[str, Any]:
    """``qosClass`` and ``launcherContainerImageVersion`` from the VMI's pod (Scheduling)."""
    if pod is None:
        return {}
    out: dict[str, Any] = {}
    qos = (pod.get("status") or {}).get("qosClass")
    if qos:
        out["qosClass"] = qos
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == "compute" and container.get("image"):
            out["launcherContainerImageVersion"] = container["image"]
    return out


def _default_interface(spec: dict[str, Any]) -> bool:
    """Whether the mutator would add the pod network's default masquerade interface: neither
    interfaces nor networks given, pod interface auto-attach not off
    (``SetDefaultNetworkInterface``)."""
    devices = (spec.get("domain") or {}).get("devices") or {}
    return not devices.get("interfaces") and not spec.get("networks") and \
        devices.get("autoattachPodInterface") is not False


def interfaces_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The spec's interfaces, with the mutator's default one when it would add it."""
    if _default_interface(spec):
        return [{"name": "default", "masquerade": {}}]
    ifaces = ((spec.get("domain") or {}).get("devices") or {}).get("interfaces") or []
    return [i for i in ifaces if isinstance(i, dict) and i.get("name")]


def primary_network(spec: dict[str, Any]) -> str | None:
    """The name of the pod network (or the Multus default network), ``LookUpDefaultNetwork``."""
    if _default_interface(spec):
        return "default"
    for net in spec.get("networks") or []:
        if "pod" in net or ((net.get("multus") or {}).get("default")):
            return str(net.get("name") or "")
    return None


def scheduled_interfaces(spec: dict[str, Any]) -> list[dict[str, Any]]:
    primary = primary_network(spec)
    return [] if primary is None else [{"name": primary, "podInterfaceName": POD_INTERFACE}]


def _claim_info(ctx: ClusterContext, ns: str, claim: str) -> dict[str, Any] | None:
    pvc = ctx.store.peek("PersistentVolumeClaim", ns, claim)  # read-only
    if pvc is None:
        return None
    spec, st = pvc.get("spec") or {}, pvc.get("status") or {}
    info: dict[str, Any] = {"claimName": claim}
    if spec.get("accessModes"):
        info["accessModes"] = list(spec["accessModes"])
    if spec.get("volumeMode"):
        info["volumeMode"] = spec["volumeMode"]
    if st.get("capacity"):
        info["capacity"] = dict(st["capacity"])
    requests = (spec.get("resources") or {}).get("requests")
    if requests:
        info["requests"] = dict(requests)
    # GetFilesystemOverhead: "0" for Block claims, else CDIConfig's global overhead. Imported
    # here: cdi imports the VMI controller, which imports this module.
    from statemachine.sim.controllers.cdi import FILESYSTEM_OVERHEAD
    info["filesystemOverhead"] = "0" if spec.get("volumeMode") == "Block" \
        else str(FILESYSTEM_OVERHEAD)
    return info


def volume_status(ctx: ClusterContext, vmi: Obj, *, targets: bool) -> list[dict[str, Any]]:
    """One entry per spec volume: ``{name, target}`` (``target`` is required, ``""`` until the
    domain exists), with ``persistentVolumeClaimInfo`` for PVC and DataVolume volumes."""
    spec = vmi.get("spec") or {}
    ns = str(vmi["metadata"].get("namespace") or "")
    devices = disk_targets(spec) if targets else {}
    out = []
    for vol in spec.get("volumes") or []:
        name = str(vol.get("name", ""))
        entry: dict[str, Any] = {"name": name, "target": devices.get(name, "")}
        claim = (vol.get("persistentVolumeClaim") or {}).get("claimName") or (
            vol.get("dataVolume") or {}).get("name")
        if claim:
            info = _claim_info(ctx, ns, str(claim))
            if info is not None:
                entry["persistentVolumeClaimInfo"] = info
        out.append(entry)
    return out


def scheduled_fields(ctx: ClusterContext, vmi: Obj) -> dict[str, Any]:
    """What the VMI controller adds when the VMI becomes ``Scheduled`` (see module docstring)."""
    out: dict[str, Any] = {"volumeStatus": volume_status(ctx, vmi, targets=False),
                           "migrationTransport": "Unix"}
    ifaces = scheduled_interfaces(vmi.get("spec") or {})
    if ifaces:
        out["interfaces"] = ifaces
    return out


# ---------------------------------------------------------------------- virt-handler
def disk_targets(spec: dict[str, Any]) -> dict[str, str]:
    """Volume name → the domain's device name (``vda``, ``vdb``, ``sda``…), numbered per prefix
    in disk order as the converter names them."""
    devices = (spec.get("domain") or {}).get("devices") or {}
    disks = [d for d in devices.get("disks") or [] if isinstance(d, dict)]
    # A volume with neither a disk nor a filesystem gets a default (virtio) disk from the
    # mutator's defaults (``SetDefaultVolumeDisk``), after the given ones.
    named = {d.get("name") for d in disks} | {f.get("name") for f in devices.get("filesystems")
                                              or [] if isinstance(f, dict)}
    disks += [{"name": v.get("name")} for v in spec.get("volumes") or []
              if isinstance(v, dict) and v.get("name") not in named]
    counts: dict[str, int] = {}
    out = {}
    for disk in disks:
        kind = next((k for k in ("disk", "cdrom", "lun") if k in disk), "disk")
        bus = str((disk.get(kind) or {}).get("bus") or _DEFAULT_BUS[kind])
        prefix = _BUS_PREFIX.get(bus, "vd")
        index = counts.get(prefix, 0)
        counts[prefix] = index + 1
        out[str(disk.get("name", ""))] = prefix + _letters(index)
    return out


def _letters(index: int) -> str:
    """0 → ``a``, 25 → ``z``, 26 → ``aa`` (libvirt's disk suffixes)."""
    out = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(97 + rest) + out
    return out


def mac_address(vmi: Obj, iface: dict[str, Any], seed: str = "") -> str:
    """The interface's MAC: the spec's, else a locally administered unicast address derived from
    ``seed`` (default: the VMI's uid; see the module docstring)."""
    if iface.get("macAddress"):
        return str(iface["macAddress"])
    seed = seed or str(vmi["metadata"].get("uid") or vmi["metadata"]["name"])
    digest = hashlib.sha256(f"{seed}/{iface.get('name', '')}".encode()).digest()
    first = (digest[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{b:02x}" for b in (first, *digest[1:6]))


def _queues(spec: dict[str, Any], iface: dict[str, Any]) -> int:
    """``queueCount``: 1, or the vCPU count with ``networkInterfaceMultiqueue`` on a virtio NIC."""
    devices = (spec.get("domain") or {}).get("devices") or {}
    if devices.get("networkInterfaceMultiqueue") and iface.get("model", "virtio") == "virtio":
        topo = cpu_topology(spec)
        return max(1, topo.get("sockets", 1) * topo.get("cores", 1) * topo.get("threads", 1))
    return 1


def running_interfaces(vmi: Obj, pod_ip: str, *, mac_seed: str = "",
                       keep_macs: bool = False) -> list[dict[str, Any]]:
    """The interface statuses virt-handler reports for a running domain whose pod has
    ``pod_ip`` (keys in the API type's field order). MACs derive from ``mac_seed`` (see
    :func:`mac_address`); ``keep_macs`` keeps those the VMI already reports (a migrated domain)."""
    spec = vmi.get("spec") or {}
    known = {i.get("name"): i.get("mac") for i in (vmi.get("status") or {}).get("interfaces") or []
             if i.get("mac")} if keep_macs else {}
    primary = primary_network(spec)
    out = []
    for iface in interfaces_of(spec):
        if "sriov" in iface or iface.get("state") == "absent":
            continue  # host devices, and unplugged interfaces, have no domain interface
        entry: dict[str, Any] = {}
        on_pod = iface.get("name") == primary
        if on_pod and pod_ip:
            entry["ipAddress"] = pod_ip
        entry["mac"] = known.get(iface["name"]) or mac_address(vmi, iface, mac_seed)
        entry["name"] = iface["name"]
        if on_pod and pod_ip:
            entry["ipAddresses"] = [pod_ip]
        if on_pod:
            entry["podInterfaceName"] = POD_INTERFACE
        entry["infoSource"] = "domain"
        entry["queueCount"] = _queues(spec, iface)
        entry["linkState"] = "down" if iface.get("state") == "down" else "up"
        out.append(entry)
    return out


def migration_method(ctx: ClusterContext, vmi: Obj) -> str:
    """``BlockMigration`` when any volume is local to the node (``checkVolumesForMigration``):
    migrated volumes, a PVC that is not ReadWriteMany, or any other volume type that no read-only
    CD-ROM or virtiofs filesystem uses; else ``LiveMigration``."""
    spec = vmi.get("spec") or {}
    if (vmi.get("status") or {}).get("migratedVolumes"):
        return "BlockMigration"
    ns = str(vmi["metadata"].get("namespace") or "")
    devices = (spec.get("domain") or {}).get("devices") or {}
    shared_fs = {f.get("name") for f in devices.get("filesystems") or [] if "virtiofs" in f}
    readonly = {d.get("name") for d in devices.get("disks") or []
                if "cdrom" in d and (d.get("cdrom") or {}).get("readonly", True) is not False}
    for vol in spec.get("volumes") or []:
        claim = (vol.get("persistentVolumeClaim") or {}).get("claimName") or (
            vol.get("dataVolume") or {}).get("name")
        if claim:
            pvc = ctx.store.peek("PersistentVolumeClaim", ns, str(claim))
            if "ReadWriteMany" not in (((pvc or {}).get("spec") or {}).get("accessModes") or []):
                return "BlockMigration"
        elif "hostDisk" in vol:
            if not (vol.get("hostDisk") or {}).get("shared"):
                return "BlockMigration"
        elif vol.get("name") not in shared_fs and vol.get("name") not in readonly:
            return "BlockMigration"
    return "LiveMigration"


def machine(spec: dict[str, Any]) -> dict[str, str]:
    alias = str(((spec.get("domain") or {}).get("machine") or {}).get("type") or DEFAULT_MACHINE)
    return {"type": MACHINE_TYPES.get(alias, alias)}


def handler_fields(ctx: ClusterContext, vmi: Obj, status: dict[str, Any],
                   ip: str, mac_seed: str = "") -> dict[str, Any]:
    """What virt-handler writes once the domain runs (see module docstring), given the VMI's
    ``status`` so far, its pod's IP and the MAC seed (:func:`mac_address`)."""
    spec = vmi.get("spec") or {}
    targets = disk_targets(spec)
    volumes = status.get("volumeStatus") or volume_status(ctx, vmi, targets=False)
    out: dict[str, Any] = {
        "interfaces": running_interfaces(vmi, ip, mac_seed=mac_seed),
        "volumeStatus": [{**v, "target": targets.get(str(v.get("name")), v.get("target", ""))}
                         for v in volumes],
        "migrationMethod": migration_method(ctx, {**vmi, "status": status}),
        "selinuxContext": "none", "machine": machine(spec)}
    # Empty lists are not written: the API type omits them (omitempty).
    return {k: v for k, v in out.items() if v != []}


def pod_ip(ctx: ClusterContext, ns: str, pod_name: str) -> str:
    """The pod's IP as its status reports it (``""`` while it has none)."""
    pod = ctx.store.peek("Pod", ns, pod_name)  # read-only
    return str(((pod or {}).get("status") or {}).get("podIP") or "")


_FILLED = "vmi-status-filled"


def fill_missing(ctx: ClusterContext, vmi: Obj, status: dict[str, Any], pod_name: str) -> None:
    """Every field of a running VMI's status that is absent (a seeded VMI never went through the
    mutator, Scheduling or Scheduled), once per VMI: later calls (every resync) only look the
    VMI's uid up in ``ctx.state``."""
    filled: set[str] = ctx.state.setdefault(_FILLED, set())
    uid = str(vmi["metadata"].get("uid") or "")
    if uid in filled:
        return
    filled.add(uid)
    ns = str(vmi["metadata"].get("namespace") or "")
    spec = vmi.get("spec") or {}
    for key, value in mutator_fields(spec).items():
        status.setdefault(key, value)
    pod = ctx.store.peek("Pod", ns, pod_name)
    for key, value in scheduling_fields(pod).items():
        status.setdefault(key, value)
    status.setdefault("migrationTransport", "Unix")
    ip = str(((pod or {}).get("status") or {}).get("podIP") or "")
    for key, value in handler_fields(ctx, vmi, status, ip).items():
        status.setdefault(key, value)


def forget(ctx: ClusterContext, vmi: Obj) -> None:
    """Drop a deleted VMI from :func:`fill_missing`'s memory."""
    filled: set[str] = ctx.state.setdefault(_FILLED, set())
    filled.discard(str(vmi["metadata"].get("uid") or ""))
