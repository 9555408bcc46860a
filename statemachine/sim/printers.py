"""Server-side printers of the built-in kinds: the columns and cells kube-apiserver puts in a Table.

One :class:`Printer` per built-in kind (apiserver-fidelity.md §2.3): its column definitions, in
upstream order, and a function from an object to its cells. The server always sends the ``-o wide``
(priority 1) columns too; kubectl hides them unless asked. Ages are formatted here, on the server,
as :func:`human_duration` does (§2.2). Built-in kinds without a printer get the generic table
(Name, Created At) from ``printing.py``; custom resources get their printer columns there too.

This module knows object shapes only; it does not negotiate, page or build the Table envelope.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
Cells = list[Any]

NAME_DOC = "Name must be unique within a namespace (the object's metadata.name)."
AGE_DOC = "When the object was created (metadata.creationTimestamp), as a duration."


def column(name: str, type_: str = "string", description: str = "", *, priority: int = 0,
           fmt: str = "") -> dict[str, Any]:
    """A ``TableColumnDefinition`` (every field present, as upstream serializes them)."""
    return {"name": name, "type": type_, "format": fmt, "description": description,
            "priority": priority}


NAME = column("Name", description=NAME_DOC, fmt="name")
AGE = column("Age", description=AGE_DOC)


def parse_time(value: Any) -> _dt.datetime | None:
    """An RFC 3339 timestamp as an aware datetime; ``None`` if absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)


def human_duration(seconds: float) -> str:
    """Elapsed time as kubectl shows it (``5s``, ``3m20s``, ``2h``, ``4d3h``, ``3y``)."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def since(value: Any, now: _dt.datetime) -> str:
    """The age of a timestamp field; ``<unknown>`` when it is unset (a zero time upstream)."""
    when = parse_time(value)
    if when is None:
        return "<unknown>"
    return human_duration((now - when).total_seconds())


def age(obj: Obj, now: _dt.datetime) -> str:
    return since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _name(obj: Obj) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _labels(selector: Any) -> str:
    """A map selector (``labels.FormatLabels``): ``a=b,c=d`` sorted, ``<none>`` when empty."""
    if not isinstance(selector, dict) or not selector:
        return "<none>"
    return ",".join(f"{k}={selector[k]}" for k in sorted(selector))


def _label_selector(selector: Any) -> str:
    """A LabelSelector (``metav1.FormatLabelSelector``): matchLabels then expressions."""
    if not isinstance(selector, dict):
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    text = ",".join(parts)
    return text if text else "<none>"


def _containers(spec: Any) -> tuple[str, str]:
    containers = _get(spec, "containers") or []
    return (",".join(str(c.get("name", "")) for c in containers),
            ",".join(str(c.get("image", "")) for c in containers))


def _condition_true(conditions: Any, ctype: str) -> bool:
    for cond in conditions or []:
        if cond.get("type") == ctype:
            return bool(cond.get("status") == "True")
    return False


_ACCESS_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                 "ReadWriteOncePod": "RWOP"}


def _access_modes(modes: Any) -> str:
    """``helper.GetAccessModesAsString``: short names in a fixed order, each once."""
    present = set(modes or [])
    return ",".join(short for mode, short in _ACCESS_MODES.items() if mode in present)


# ----------------------------------------------------------------------------- cells per kind

def _pod(obj: Obj, now: _dt.datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    total = len(spec.get("containers") or [])
    ready = restarts = 0
    last_restart: _dt.datetime | None = None
    initializing = False
    init_specs = spec.get("initContainers") or []
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term and term.get("exitCode") == 0:
            continue
        if term:
            reason = ("Init:" + term["reason"]) if term.get("reason") else (
                f"Init:Signal:{term['signal']}" if term.get("signal")
                else f"Init:ExitCode:{term.get('exitCode', 0)}")
        elif wait and wait.get("reason") and wait.get("reason") != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing or _condition_true(status.get("conditions"), "Initialized"):
        restarts = 0
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            finished = parse_time(_get(cs, "lastState", "terminated", "finishedAt"))
            if finished is not None and (last_restart is None or finished > last_restart):
                last_restart = finished
            state = cs.get("state") or {}
            term, wait = state.get("terminated"), state.get("waiting")
            if wait and wait.get("reason"):
                reason = wait["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                reason = (f"Signal:{term['signal']}" if term.get("signal")
                          else f"ExitCode:{term.get('exitCode', 0)}")
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = ("Running" if _condition_true(status.get("conditions"), "Ready")
                      else "NotReady")
    if _get(obj, "metadata", "deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    ips = status.get("podIPs") or []
    ip = (ips[0].get("ip") if ips else "") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true = sum(1 for g in gates
                   if _condition_true(status.get("conditions"), g.get("conditionType", "")))
        gates_text = f"{true}/{len(gates)}"
    return [_name(obj), f"{ready}/{total}", reason, restarts_text, age(obj, now), ip,
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            gates_text]


def pod_conditions(obj: Obj) -> list[dict[str, Any]] | None:
    """Row conditions upstream sets on finished pods."""
    phase = _get(obj, "status", "phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return None


def _job(obj: Obj, now: _dt.datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = int(status.get("succeeded") or 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif int(spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    took = "" if start is None else human_duration(((end or now) - start).total_seconds())
    conditions = status.get("conditions")
    if _condition_true(conditions, "Complete"):
        state = "Complete"
    elif _condition_true(conditions, "Failed"):
        state = "Failed"
    elif _get(obj, "metadata", "deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers(_get(spec, "template", "spec"))
    return [_name(obj), state, completions, took, age(obj, now), names, images,
            _label_selector(spec.get("selector"))]


def _external_ip(spec: Obj, status: Obj) -> str:
    stype = spec.get("type") or "ClusterIP"
    external = spec.get("externalIPs") or []
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if stype == "LoadBalancer":
        ingress = sorted({i.get("ip") or i.get("hostname") or ""
                          for i in _get(status, "loadBalancer", "ingress") or []} - {""})
        both = ingress + list(external)
        return ",".join(both) if both else "<pending>"
    if stype == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def _service(obj: Obj, now: _dt.datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ips = spec.get("clusterIPs") or []
    ports = ",".join(
        (f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}" if p.get("nodePort")
         else f"{p.get('port')}/{p.get('protocol', 'TCP')}") for p in spec.get("ports") or [])
    return [_name(obj), spec.get("type") or "", ips[0] if ips else "<none>",
            _external_ip(spec, status), ports or "<none>", age(obj, now),
            _labels(spec.get("selector"))]


def _pvc(obj: Obj, now: _dt.datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    phase = "Terminating" if _get(obj, "metadata", "deletionTimestamp") else (
        status.get("phase") or "")
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = _access_modes(status.get("accessModes"))
        capacity = str(_get(status, "capacity", "storage") or "0")
    storage_class = spec.get("storageClassName") or _get(
        obj, "metadata", "annotations", "volume.beta.kubernetes.io/storage-class") or ""
    return [_name(obj), phase, spec.get("volumeName") or "", capacity, modes, storage_class,
            spec.get("volumeAttributesClassName") or "<unset>", age(obj, now),
            spec.get("volumeMode") or "<unset>"]


def _pv(obj: Obj, now: _dt.datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    claim = spec.get("claimRef")
    claim_text = f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else ""
    phase = "Terminating" if _get(obj, "metadata", "deletionTimestamp") else (
        status.get("phase") or "")
    # GetPersistentVolumeClass: the beta annotation wins over the field.
    notes = _get(obj, "metadata", "annotations") or {}
    storage_class = notes.get("volume.beta.kubernetes.io/storage-class",
                              spec.get("storageClassName") or "")
    return [_name(obj), str(_get(spec, "capacity", "storage") or "0"),
            _access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy") or "",
            phase, claim_text, storage_class,
            spec.get("volumeAttributesClassName") or "<unset>", status.get("reason") or "",
            age(obj, now), spec.get("volumeMode") or "<unset>"]


def _event_fields(obj: Obj) -> Obj:
    """An events.k8s.io/v1 Event in core v1 field names (both share one storage upstream)."""
    if obj.get("apiVersion") != "events.k8s.io/v1":
        return obj
    out = dict(obj)
    out["involvedObject"] = obj.get("regarding") or {}
    out["message"] = obj.get("note") or ""
    out["firstTimestamp"] = obj.get("deprecatedFirstTimestamp")
    out["lastTimestamp"] = obj.get("deprecatedLastTimestamp")
    out["count"] = obj.get("deprecatedCount")
    out["source"] = obj.get("deprecatedSource") or {}
    return out


def _event(obj: Obj, now: _dt.datetime) -> Cells:
    ev = _event_fields(obj)
    first = since(ev.get("firstTimestamp"), now) if ev.get("firstTimestamp") else \
        since(ev.get("eventTime"), now)
    last = since(ev.get("lastTimestamp"), now) if ev.get("lastTimestamp") else first
    count = int(ev.get("count") or 0)
    series = ev.get("series")
    if isinstance(series, dict):
        last = since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1
    involved = ev.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingController") or ""
    host = source.get("host") or ev.get("reportingInstance") or ""
    return [last, ev.get("type") or "", ev.get("reason") or "", target,
            involved.get("fieldPath") or "", f"{component}, {host}" if host else component,
            str(ev.get("message") or "").strip(), first, count, _name(obj)]


def _subjects(obj: Obj) -> list[str]:
    users, groups, sas = [], [], []
    for s in obj.get("subjects") or []:
        if s.get("kind") == "User":
            users.append(str(s.get("name", "")))
        elif s.get("kind") == "Group":
            groups.append(str(s.get("name", "")))
        elif s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
    return [", ".join(users), ", ".join(groups), ", ".join(sas)]


def _binding(obj: Obj, now: _dt.datetime) -> Cells:
    ref = obj.get("roleRef") or {}
    return [_name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", age(obj, now),
            *_subjects(obj)]


def _storage_class(obj: Obj, now: _dt.datetime) -> Cells:
    annotations = _get(obj, "metadata", "annotations") or {}
    default = any(annotations.get(a) == "true" for a in (
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class"))
    name = _name(obj) + (" (default)" if default else "")
    return [name, obj.get("provisioner") or "", obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate", bool(obj.get("allowVolumeExpansion")),
            age(obj, now)]


def _node(obj: Obj, now: _dt.datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    states = ["Ready" if ready[0].get("status") == "True" else "NotReady"] if ready else [
        "Unknown"]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in (_get(obj, "metadata", "labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key[len("node-role.kubernetes.io/"):]:
            roles.add(key[len("node-role.kubernetes.io/"):])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        for a in status.get("addresses") or []:
            if a.get("type") == kind:
                return str(a.get("address", ""))
        return "<none>"
    return [_name(obj), ",".join(states), ",".join(sorted(roles)) or "<none>", age(obj, now),
            info.get("kubeletVersion") or "", address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _deployment(obj: Obj, now: _dt.datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(_get(spec, "template", "spec"))
    return [_name(obj), f"{int(status.get('readyReplicas') or 0)}/{int(spec.get('replicas') or 0)}",
            int(status.get("updatedReplicas") or 0), int(status.get("availableReplicas") or 0),
            age(obj, now), names, images, _label_selector(spec.get("selector"))]


@dataclass(frozen=True)
class Printer:
    columns: tuple[dict[str, Any], ...]
    cells: Callable[[Obj, _dt.datetime], Cells]


_WIDE = 1
_BINDING_COLUMNS = (NAME, column("Role", description="The role the binding grants."), AGE,
                    column("Users", description="Users in the binding", priority=_WIDE),
                    column("Groups", description="Groups in the binding", priority=_WIDE),
                    column("ServiceAccounts", description="ServiceAccounts in the binding",
                           priority=_WIDE))
_EVENT = Printer((
    column("Last Seen", description="When the event was last observed."),
    column("Type", description="Normal or Warning."),
    column("Reason", description="Why the event was emitted."),
    column("Object", description="The object the event is about."),
    column("Subobject", description="The part of the object (fieldPath).", priority=_WIDE),
    column("Source", description="The component that reported the event.", priority=_WIDE),
    column("Message", description="What happened."),
    column("First Seen", description="When the event was first observed.", priority=_WIDE),
    column("Count", description="How many times it occurred.", priority=_WIDE),
    column("Name", description=NAME_DOC, priority=_WIDE, fmt="name")), _event)

#: Printers by (API group, kind).
PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Pod"): Printer((
        NAME,
        column("Ready", description="The aggregate readiness state of this pod for accepting "
                                    "traffic."),
        column("Status", description="The aggregate status of the containers in this pod."),
        column("Restarts", description="The number of times the containers in this pod have "
                                       "been restarted and when the last container in this pod "
                                       "has restarted."),
        AGE,
        column("IP", description="The pod's IP address.", priority=_WIDE),
        column("Node", description="The node the pod runs on.", priority=_WIDE),
        column("Nominated Node", description="The node the scheduler nominated.",
               priority=_WIDE),
        column("Readiness Gates", description="Readiness gates that are true.", priority=_WIDE)),
        _pod),
    ("", "ConfigMap"): Printer((NAME, column("Data", description="The number of data keys."),
                               AGE),
                              lambda o, now: [_name(o), len(o.get("data") or {}) +
                                              len(o.get("binaryData") or {}), age(o, now)]),
    ("", "Secret"): Printer((NAME, column("Type", description="The secret's type."),
                            column("Data", description="The number of data keys."), AGE),
                           lambda o, now: [_name(o), o.get("type") or "",
                                           len(o.get("data") or {}), age(o, now)]),
    ("", "Namespace"): Printer((NAME, column("Status", description="The status of the namespace"),
                               AGE),
                              lambda o, now: [_name(o), _get(o, "status", "phase") or "",
                                              age(o, now)]),
    ("", "ServiceAccount"): Printer((NAME, column("Secrets", description="The number of "
                                                                         "secrets."), AGE),
                                   lambda o, now: [_name(o), len(o.get("secrets") or []),
                                                   age(o, now)]),
    ("", "Service"): Printer((
        NAME, column("Type", description="How the service is exposed."),
        column("Cluster-IP", description="The service's cluster IP."),
        column("External-IP", description="External addresses of the service."),
        column("Port(s)", description="The service's ports."), AGE,
        column("Selector", description="The pods the service routes to.", priority=_WIDE)),
        _service),
    ("", "PersistentVolumeClaim"): Printer((
        NAME, column("Status", description="The claim's phase."),
        column("Volume", description="The bound volume."),
        column("Capacity", description="The bound volume's capacity."),
        column("Access Modes", description="The bound volume's access modes."),
        column("StorageClass", description="StorageClass of the pvc"),
        column("VolumeAttributesClass", description="VolumeAttributesClass of the pvc"), AGE,
        column("VolumeMode", description="Block or Filesystem.", priority=_WIDE)), _pvc),
    ("", "PersistentVolume"): Printer((
        NAME, column("Capacity", description="The volume's capacity."),
        column("Access Modes", description="The volume's access modes."),
        column("Reclaim Policy", description="What happens when the claim is released."),
        column("Status", description="The volume's phase."),
        column("Claim", description="The bound claim."),
        column("StorageClass", description="StorageClass of the pv"),
        column("VolumeAttributesClass", description="VolumeAttributesClass of the pv"),
        column("Reason", description="Why the volume is in its phase."), AGE,
        column("VolumeMode", description="Block or Filesystem.", priority=_WIDE)), _pv),
    ("", "Node"): Printer((
        NAME, column("Status", description="The status of the node"),
        column("Roles", description="The roles of the node"), AGE,
        column("Version", description="The kubelet version."),
        column("Internal-IP", description="The node's internal address.", priority=_WIDE),
        column("External-IP", description="The node's external address.", priority=_WIDE),
        column("OS-Image", description="The node's OS image.", priority=_WIDE),
        column("Kernel-Version", description="The node's kernel version.", priority=_WIDE),
        column("Container-Runtime", description="The node's container runtime.",
               priority=_WIDE)), _node),
    ("", "Event"): _EVENT,
    ("events.k8s.io", "Event"): _EVENT,
    ("batch", "Job"): Printer((
        NAME, column("Status", description="Status of the job."),
        column("Completions", description="Succeeded pods out of the completions wanted."),
        column("Duration", description="Time required to complete the job."), AGE,
        column("Containers", description="Names of each container in the template.",
               priority=_WIDE),
        column("Images", description="Images referenced by each container in the template.",
               priority=_WIDE),
        column("Selector", description="The job's pod selector.", priority=_WIDE)), _job),
    ("apps", "Deployment"): Printer((
        NAME, column("Ready", description="Number of the pod with ready state"),
        column("Up-to-date", description="Replicas updated to the latest template."),
        column("Available", description="Available replicas."), AGE,
        column("Containers", description="Names of each container in the template.",
               priority=_WIDE),
        column("Images", description="Images referenced by each container in the template.",
               priority=_WIDE),
        column("Selector", description="The deployment's pod selector.", priority=_WIDE)),
        _deployment),
    ("rbac.authorization.k8s.io", "RoleBinding"): Printer(_BINDING_COLUMNS, _binding),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): Printer(_BINDING_COLUMNS, _binding),
    ("storage.k8s.io", "StorageClass"): Printer((
        NAME, column("Provisioner", description="The volume plugin."),
        column("ReclaimPolicy", description="What happens to released volumes."),
        column("VolumeBindingMode", description="When volumes are bound."),
        column("AllowVolumeExpansion", description="Whether volumes can grow."), AGE),
        _storage_class),
    ("coordination.k8s.io", "Lease"): Printer((
        NAME, column("Holder", description="Who holds the lease."), AGE),
        lambda o, now: [_name(o), _get(o, "spec", "holderIdentity") or "", age(o, now)]),
}
