"""Non-CRUD endpoints: KubeVirt's ``subresources.kubevirt.io`` API and ``pods/log``.

``subresources.kubevirt.io`` (kubevirt-fidelity.md §2), versions ``v1`` and ``v1alpha3``:
discovery as virt-api serves it (entries with a ``name``, ``namespaced: true`` and empty
``singularName``/``kind``/``verbs``: virt-api fills in nothing else), and

- ``PUT virtualmachines/{name}/start|stop|restart`` → 202: they never touch the VMI themselves
  but patch ``spec.runStrategy`` (or the deprecated ``spec.running``) or append
  ``status.stateChangeRequests``, per run strategy (§2.3), which the VM controller then carries
  out; refusals are 409 Conflict / 400 / 500 with upstream's texts;
- ``PUT virtualmachines/{name}/migrate`` → 202: creates a VMIM ``kubevirt-migrate-vm-*`` (through
  the migration webhooks: a refusal comes back as 500);
- ``PUT virtualmachineinstances/{name}/pause|unpause`` → 200: the ``Paused`` condition and the
  virt-handler event (``dryRun`` validates only).

``GET /api/v1/namespaces/{ns}/pods/{name}/log`` → ``text/plain``: the simulated container output
(``controllers.pods.log_text``); ``container`` defaults to the
``kubectl.kubernetes.io/default-container`` annotation or the only container.

Errors are Status bodies whose resource is KubeVirt's singular (``virtualmachine.kubevirt.io``).
What it does not do: console/vnc/portforward streams, guest-agent queries, freeze, reset,
soft reboot, hotplug volumes, expand-spec, memory dumps, ``start`` with ``paused``.
"""
from __future__ import annotations

import json
from typing import Any

from statemachine.errors import ClusterError, NotFound, PermanentClusterError
from statemachine.sim import auth, events
from statemachine.sim.kinds import Kind
from statemachine.sim.store import Obj, Store, now_rfc3339
from statemachine.sim import webhooks

GROUP = "subresources.kubevirt.io"
VERSIONS = ("v1", "v1alpha3")
RESOURCES = (
    "expand-vm-spec", "virtualmachineinstances/vnc", "virtualmachineinstances/vnc/screenshot",
    "virtualmachineinstances/console", "virtualmachineinstances/portforward",
    "virtualmachineinstances/pause", "virtualmachineinstances/unpause",
    "virtualmachineinstances/freeze", "virtualmachineinstances/unfreeze",
    "virtualmachineinstances/reset", "virtualmachineinstances/softreboot",
    "virtualmachines/start", "virtualmachines/stop", "virtualmachines/restart",
    "virtualmachines/migrate", "virtualmachines/expand-spec",
    "virtualmachineinstances/guestosinfo", "virtualmachineinstances/userlist",
    "virtualmachineinstances/filesystemlist", "virtualmachineinstances/addvolume",
    "virtualmachineinstances/removevolume")
FINAL = ("Succeeded", "Failed")
_VM_ACTIONS = ("start", "stop", "restart", "migrate")
_VMI_ACTIONS = ("pause", "unpause")
_PAUSED = ("Paused", "True", "PausedByUser", "VMI was paused by user")


class _Status(PermanentClusterError):
    """An error whose Status details are given (or deliberately empty)."""

    def __init__(self, message: str, *, status: int, reason: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, status=status, reason=reason)
        self.status_details = details or {}


def _groups(handler: Any) -> tuple[str, ...]:
    """The caller's groups, so that RBAC bindings to groups apply here too."""
    identity = getattr(handler, "identity", None)
    return tuple(identity.groups) if identity is not None else ()


def _conflict(resource: str, name: str, err: str) -> _Status:
    return _Status(f'Operation cannot be fulfilled on {resource}.kubevirt.io "{name}": {err}',
                   status=409, reason="Conflict",
                   details={"name": name, "group": "kubevirt.io", "kind": resource})


def _not_found(resource: str, name: str) -> _Status:
    return _Status(f'{resource}.kubevirt.io "{name}" not found', status=404, reason="NotFound",
                   details={"name": name, "group": "kubevirt.io", "kind": resource})


def _internal(err: str) -> _Status:
    return _Status(f"Internal error occurred: {err}", status=500, reason="InternalError",
                   details={"causes": [{"message": err}]})


def _bad_request(msg: str) -> _Status:
    return _Status(msg, status=400, reason="BadRequest")


def with_group(group_list: dict[str, Any]) -> dict[str, Any]:
    """``/apis`` with the aggregated ``subresources.kubevirt.io`` group added."""
    versions = [{"groupVersion": f"{GROUP}/{v}", "version": v} for v in VERSIONS]
    group = {"name": GROUP, "versions": versions, "preferredVersion": versions[0]}
    out = dict(group_list)
    out["groups"] = [*(group_list.get("groups") or []), group]
    return out


def serve(handler: Any, method: str, path: str, query: dict[str, str], raw: bytes) -> bool:
    """Serve ``path`` if it is one of this module's; ``False`` otherwise."""
    parts = [p for p in path.split("/") if p]
    if len(parts) == 7 and parts[:2] == ["api", "v1"] and parts[2] == "namespaces" \
            and parts[4] == "pods" and parts[6] == "log":
        _pod_log(handler, method, parts[3], parts[5], query)
        return True
    if len(parts) < 2 or parts[0] != "apis" or parts[1] != GROUP:
        return False
    if len(parts) == 2 and method == "GET":
        versions = [{"groupVersion": f"{GROUP}/{v}", "version": v} for v in VERSIONS]
        handler._send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
                                 "versions": versions, "preferredVersion": versions[0]})
        return True
    if len(parts) == 3 and parts[2] in VERSIONS and method == "GET":
        handler._send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                 "groupVersion": f"{GROUP}/{parts[2]}",
                                 "resources": [{"name": r, "singularName": "",
                                                "namespaced": True, "kind": "", "verbs": None}
                                               for r in RESOURCES]})
        return True
    if len(parts) == 8 and parts[2] in VERSIONS and parts[3] == "namespaces":
        ns, resource, name, action = parts[4], parts[5], parts[6], parts[7]
        known = (resource == "virtualmachines" and action in _VM_ACTIONS) or (
            resource == "virtualmachineinstances" and action in _VMI_ACTIONS)
        if known:
            if method != "PUT":
                raise PermanentClusterError(
                    "the server does not allow this method on the requested resource",
                    status=405, reason="MethodNotAllowed")
            store: Store = handler.server_api.store
            attrs = auth.Attributes(handler.user, "update", GROUP, resource, ns, name, action,
                                    _groups(handler))
            if not auth.allowed(store, attrs):
                raise auth.forbidden(_fake_kind(resource), attrs)
            options = _options(raw)
            dry_run = "All" in (options.get("dryRun") or []) or query.get("dryRun") == "All"
            code = (_vm_action if resource == "virtualmachines" else _vmi_action)(
                store, ns, name, action, options, dry_run)
            _send_empty(handler, code)
            return True
    raise PermanentClusterError("the server could not find the requested resource",
                                status=404, reason="NotFound")


def _fake_kind(resource: str) -> Kind:
    singular = resource[:-1]
    return Kind(group=GROUP, version="v1", kind=singular, plural=resource, singular=singular,
                namespaced=True)


def _options(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _bad_request(f"Can not unmarshal Request body to struct, error: {exc}") from exc
    return body if isinstance(body, dict) else {}


def _send_empty(handler: Any, code: int) -> None:
    handler.send_response(code)
    handler.send_header("Content-Length", "0")
    handler.end_headers()
    handler.status_sent = code


# ---------------------------------------------------------------------- VM actions
def _run_strategy(vm: Obj) -> tuple[str, bool]:
    """(run strategy, whether the VM still uses the deprecated ``spec.running``)."""
    spec = vm.get("spec") or {}
    if spec.get("runStrategy"):
        return str(spec["runStrategy"]), False
    if spec.get("running") is not None:
        return ("Always" if spec["running"] else "Halted"), True
    return "Halted", False


def _vm_action(store: Store, ns: str, name: str, action: str, options: dict[str, Any],
               dry_run: bool) -> int:
    vm = store.try_get("VirtualMachine", ns, name)
    if vm is None:
        raise _not_found("virtualmachine", name)
    vmi = store.try_get("VirtualMachineInstance", ns, name)
    if action == "migrate":
        return _migrate(store, ns, name, vmi, options, dry_run)
    strategy, legacy = _run_strategy(vm)
    vmi_phase = ((vmi or {}).get("status") or {}).get("phase", "")
    vmi_final = vmi is None or vmi_phase in FINAL
    vmi_uid = (vmi or {}).get("metadata", {}).get("uid")
    requests: list[dict[str, Any]] | None = None
    running: bool | None = None
    if action == "start":
        if vmi is not None and vmi_phase not in (*FINAL, "Unknown", ""):
            raise _conflict("virtualmachine", name, "VM is already running")
        if strategy == "Halted":
            running = True
        elif strategy == "Manual":
            requests = ([{"action": "Stop", "uid": vmi_uid}] if vmi is not None and vmi_final
                        else []) + [{"action": "Start"}]
        elif strategy == "RerunOnFailure":
            if vmi_phase == "Failed":
                raise _conflict("virtualmachine", name,
                                "RerunOnFailure does not support starting VM from failed state")
            requests = ([{"action": "Stop", "uid": vmi_uid}] if vmi_phase == "Succeeded"
                        else []) + [{"action": "Start"}]
        else:
            raise _conflict("virtualmachine", name,
                            f"{strategy} does not support manual start requests")
    elif action == "stop":
        grace = options.get("gracePeriod")
        if strategy in ("Always", "Once", "WaitAsReceiver"):
            running = False
        else:
            if vmi_final:
                raise _conflict("virtualmachine", name, "VM is not running")
            if strategy == "Halted":
                current = ((vmi or {}).get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                if grace is None or int(grace) >= int(current):
                    raise _conflict("virtualmachine", name, "Halted only supports manual stop "
                                                            "requests with a shorter graceperiod")
            requests = [{"action": "Stop", "uid": vmi_uid}]
        if grace is not None and vmi is not None and not vmi_final and not dry_run:
            seconds = int(grace)
            store.mutate("VirtualMachineInstance", ns, name, lambda o: o.setdefault(
                "spec", {}).update({"terminationGracePeriodSeconds": seconds}))
    else:  # restart
        grace = options.get("gracePeriodSeconds")
        if grace is not None and int(grace) > 0:
            raise _bad_request("For force restart, only gracePeriod=0 is supported for now")
        if grace is not None and int(grace) < 0:
            raise _bad_request("gracePeriod has to be greater or equal to 0")
        if strategy in ("Halted", "Once"):
            raise _conflict("virtualmachine", name,
                            f"RunStategy {strategy} does not support manual restart requests")
        if vmi is None:
            raise _conflict("virtualmachine", name, "VM is not running: Halted")
        requests = [{"action": "Stop", "uid": vmi_uid}, {"action": "Start"}]
        if grace == 0 and not vmi_final and not dry_run:
            store.mutate("VirtualMachineInstance", ns, name, lambda o: o.setdefault(
                "spec", {}).update({"terminationGracePeriodSeconds": 1}))
    pending = (vm.get("status") or {}).get("stateChangeRequests") or []
    if requests is not None and pending and not (
            len(requests) == 1 and requests[0]["action"] == "Stop"):
        raise _internal("unable to complete request: stop/start already underway")
    if dry_run:
        return 202
    if running is not None:
        def flip(o: Obj) -> None:
            spec = o.setdefault("spec", {})
            if legacy:
                spec["running"] = running
            else:
                spec["runStrategy"] = "Always" if running else "Halted"
        store.mutate("VirtualMachine", ns, name, flip)
    elif requests is not None:
        reqs = [{k: v for k, v in r.items() if v is not None} for r in requests]
        store.mutate("VirtualMachine", ns, name, lambda o: o.setdefault("status", {}).update(
            {"stateChangeRequests": reqs}))
    return 202


def _migrate(store: Store, ns: str, name: str, vmi: Obj | None, options: dict[str, Any],
             dry_run: bool) -> int:
    if vmi is None:
        raise _not_found("virtualmachineinstance", name)
    if (vmi.get("status") or {}).get("phase") != "Running":
        raise _conflict("virtualmachine", name, "VM is not running")
    body: Obj = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                 "metadata": {"generateName": "kubevirt-migrate-vm-", "namespace": ns},
                 "spec": {"vmiName": name}}
    if options.get("addedNodeSelector"):
        body["spec"]["addedNodeSelector"] = options["addedNodeSelector"]
    kind = store.kind("VirtualMachineInstanceMigration")
    try:
        webhooks.admit_create(store, kind, body)
    except ClusterError as exc:
        raise _internal(str(exc)) from exc
    store.create(kind, body, namespace=ns, dry_run=dry_run)
    return 202


# ---------------------------------------------------------------------- VMI actions
def _vmi_action(store: Store, ns: str, name: str, action: str, options: dict[str, Any],
                dry_run: bool) -> int:
    vmi = store.try_get("VirtualMachineInstance", ns, name)
    if vmi is None:
        raise _not_found("virtualmachineinstance", name)
    status = vmi.get("status") or {}
    running = status.get("phase") == "Running"
    paused = any(c.get("type") == "Paused" for c in status.get("conditions") or [])
    if action == "pause":
        if not running:
            raise _conflict("virtualmachineinstance", name, "VM is not running")
        probe = (vmi.get("spec") or {}).get("livenessProbe")
        if probe and "guestAgentPing" not in probe:
            raise _Status('Pausing VMIs with a non-GuestAgentPing LivenessProbe is not supported',
                          status=403, reason="Forbidden")
        if paused:
            raise _conflict("virtualmachineinstance", name, "VMI is already paused")
    else:
        if not running:
            raise _conflict("virtualmachineinstance", name, "VMI is not running")
        if not paused:
            raise _conflict("virtualmachineinstance", name, "VMI is not paused")
    if dry_run:
        return 200

    def change(o: Obj) -> None:
        st = o.setdefault("status", {})
        conds = [c for c in st.get("conditions") or [] if c.get("type") != "Paused"]
        if action == "pause":
            ctype, value, reason, message = _PAUSED
            conds.append({"type": ctype, "status": value, "reason": reason, "message": message,
                          "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
        st["conditions"] = conds
    try:
        store.mutate("VirtualMachineInstance", ns, name, change)
    except NotFound as exc:
        raise _not_found("virtualmachineinstance", name) from exc
    node = str(status.get("nodeName") or "")
    verb = "paused" if action == "pause" else "unpaused"
    events.record(store, vmi, "Normal", verb.capitalize(), f"VirtualMachineInstance {verb}",
                  component="virt-handler", host=node)
    return 200


# ---------------------------------------------------------------------- pods/log
def _pod_log(handler: Any, method: str, ns: str, name: str, query: dict[str, str]) -> None:
    from statemachine.sim.controllers.pods import log_text  # the controllers' pod model

    if method != "GET":
        raise PermanentClusterError("the server does not allow this method on the requested "
                                    "resource", status=405, reason="MethodNotAllowed")
    store: Store = handler.server_api.store
    attrs = auth.Attributes(handler.user, "get", "", "pods", ns, name, "log", _groups(handler))
    pod_kind = store.kind("Pod")
    if not auth.allowed(store, attrs):
        raise auth.forbidden(pod_kind, attrs)
    pod = store.get(pod_kind, ns, name)
    containers = [str(c.get("name", "")) for c in (pod.get("spec") or {}).get("containers") or []]
    container = query.get("container") or (pod["metadata"].get("annotations") or {}).get(
        "kubectl.kubernetes.io/default-container", "")
    if not container:
        if len(containers) != 1:
            raise _bad_request(f"a container name must be specified for pod {name}, choose one "
                               f"of: [{' '.join(containers)}]")
        container = containers[0]
    if container not in containers:
        raise _bad_request(f"container {container} is not valid for pod {name}")
    statuses = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    state = (statuses.get(container) or {}).get("state") or {}
    if not state or "waiting" in state:
        reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
        raise _bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                           f"{reason}")
    text = log_text(pod, container)
    tail = query.get("tailLines")
    if tail and tail.lstrip("-").isdigit():
        lines = text.splitlines(True)
        text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
    data = text.encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
    handler.status_sent = 200
