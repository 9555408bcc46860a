"""Pods of the simulated clusters: virt-launcher pods of VMIs and the pods of Jobs.

Bodies and statuses shaped as the real controllers and the kubelet write them, complete enough for
typed clients (every field the Pod OpenAPI schema requires: container statuses with ``name``,
``ready``, ``restartCount``, ``image``, ``imageID``; conditions with ``type``/``status``;
owner references with ``apiVersion``/``kind``/``name``/``uid``), kubevirt-fidelity.md §4.

- :func:`launcher_pod` — ``virt-launcher-<vmi>-<5 chars>``: the VMI's labels plus
  ``kubevirt.io: virt-launcher``, ``kubevirt.io/created-by: <vmi uid>``, ``vm.kubevirt.io/name``,
  ``vmi.kubevirt.io/id``; annotations ``kubevirt.io/domain`` and the default container; one
  controller owner reference to the VMI; containers ``compute`` (+ ``volume<name>`` per
  containerDisk, + ``guest-console-log``); ``restartPolicy: Never``, grace period 60, the
  ``kubevirt.io/virtual-machine-unpaused`` readiness gate, ``nodeSelector`` with
  ``kubevirt.io/schedulable``. A migration target pod also carries ``kubevirt.io/migrationJobUID``
  and the anti-affinity to the source.
- :func:`running_status`, :func:`pending_status`, :func:`finished_status` — the kubelet's view.
- :func:`log_text` — what ``pods/log`` returns for a simulated container.

The suffix is not random: it is ``<first 3 letters of the cluster><slot>`` (``sou01``), the same
name the migration controller writes into ``status.migrationState`` (``sourcePod``/``targetPod``),
so both always agree; a taken name falls back to a random suffix.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from statemachine.sim import jobdefaults, nodes
from statemachine.sim.controller import ClusterContext
from statemachine.sim.store import Obj, now_rfc3339

LAUNCHER_IMAGE = "quay.io/kubevirt/virt-launcher:v1.7.0"
LAUNCHER_IMAGE_ID = ("quay.io/kubevirt/virt-launcher@sha256:"
                     + hashlib.sha256(b"virt-launcher").hexdigest())
MIGRATION_JOB_LABEL = "kubevirt.io/migrationJobUID"
CREATED_BY = "kubevirt.io/created-by"


def launcher_name(vmi: Obj, cluster: str, slot: str) -> str:
    return f"virt-launcher-{vmi['metadata']['name']}-{cluster[:3]}{slot}"


def _hostname(vmi: Obj) -> str:
    spec = vmi.get("spec") or {}
    return str(spec.get("hostname") or vmi["metadata"]["name"].split(".")[0][:63])


def _vmi_id(name: str) -> str:
    if len(name) <= 63:
        return name
    return f"{name[:54]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _container_id(pod_uid: str, name: str) -> str:
    return "containerd://" + hashlib.sha256(f"{pod_uid}/{name}".encode()).hexdigest()


def launcher_pod(vmi: Obj, name: str, *, migration: Obj | None = None,
                 source_node: str = "") -> Obj:
    """The virt-launcher pod body for ``vmi`` (a migration target pod when ``migration``)."""
    md = vmi["metadata"]
    spec = vmi.get("spec") or {}
    labels = dict(md.get("labels") or {})
    labels.update({"kubevirt.io": "virt-launcher", CREATED_BY: md["uid"],
                   "vm.kubevirt.io/name": _hostname(vmi), "vmi.kubevirt.io/id": _vmi_id(md["name"])})
    notes = {k: v for k, v in (md.get("annotations") or {}).items()
             if not k.startswith("kubectl.kubernetes.io") and k not in (
                 "kubevirt.io/storage-observed-api-version",
                 "kubevirt.io/latest-observed-api-version")}
    notes.update({"kubevirt.io/domain": md["name"],
                  "kubectl.kubernetes.io/default-container": "compute",
                  "kubevirt.io/migrationTransportUnix": "true",
                  "descheduler.alpha.kubernetes.io/request-evict-only": ""})
    if migration is not None:
        labels[MIGRATION_JOB_LABEL] = migration["metadata"]["uid"]
        notes["kubevirt.io/migrationJobName"] = migration["metadata"]["name"]
    containers: list[dict[str, Any]] = [{
        "name": "compute", "image": LAUNCHER_IMAGE,
        "command": ["/usr/bin/virt-launcher-monitor", "--qemu-timeout", "240s", "--name",
                    md["name"], "--uid", md["uid"], "--namespace", md.get("namespace", "")],
        "resources": {"limits": {"devices.kubevirt.io/kvm": "1", "devices.kubevirt.io/tun": "1",
                                 "devices.kubevirt.io/vhost-net": "1"},
                      "requests": {"devices.kubevirt.io/kvm": "1", "devices.kubevirt.io/tun": "1",
                                   "devices.kubevirt.io/vhost-net": "1",
                                   "ephemeral-storage": "50M", "memory": _memory(spec)}}}]
    for vol in spec.get("volumes") or []:
        if "containerDisk" in vol:
            containers.append({"name": f"volume{vol.get('name', '')}",
                               "image": str(vol["containerDisk"].get("image", "")),
                               "resources": {}})
    containers.append({"name": "guest-console-log", "image": LAUNCHER_IMAGE,
                       "command": ["/usr/bin/virt-tail"], "resources": {}})
    grace = int(spec.get("terminationGracePeriodSeconds", 30)) + 30
    pod_spec: dict[str, Any] = {
        "containers": containers, "restartPolicy": "Never", "hostname": _hostname(vmi),
        "terminationGracePeriodSeconds": grace, "serviceAccountName": "default",
        "automountServiceAccountToken": False, "enableServiceLinks": False,
        "nodeSelector": {"kubevirt.io/schedulable": "true", **(spec.get("nodeSelector") or {})},
        "readinessGates": [{"conditionType": "kubevirt.io/virtual-machine-unpaused"}],
        "priority": 0, "preemptionPolicy": "PreemptLowerPriority"}
    if spec.get("subdomain"):
        pod_spec["subdomain"] = spec["subdomain"]
    if migration is not None and source_node:
        pod_spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {CREATED_BY: md["uid"]}},
             "topologyKey": "kubernetes.io/hostname"}]}}
    jobdefaults.default_pod_spec(pod_spec)
    pod_spec["serviceAccount"] = "default"
    return {"metadata": {
        "name": name, "namespace": md.get("namespace"), "labels": labels, "annotations": notes,
        "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                             "name": md["name"], "uid": md["uid"], "controller": True,
                             "blockOwnerDeletion": True}]},
        "spec": pod_spec, "status": pending_status()}


def _memory(spec: dict[str, Any]) -> str:
    domain = spec.get("domain") or {}
    return str(((domain.get("resources") or {}).get("requests") or {}).get("memory")
               or (domain.get("memory") or {}).get("guest") or "1Gi")


def job_pod(job: Obj, name: str, node: str) -> Obj:
    """The pod the Job controller creates from a Job's template."""
    md = job["metadata"]
    template = (job.get("spec") or {}).get("template") or {}
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.update({jobdefaults.LEGACY_NAME_LABEL: md["name"], jobdefaults.NAME_LABEL: md["name"],
                   jobdefaults.LEGACY_UID_LABEL: md["uid"], jobdefaults.UID_LABEL: md["uid"]})
    spec = json.loads(json.dumps(template.get("spec") or {}))
    spec.setdefault("containers", [])
    for i, container in enumerate(spec["containers"]):
        if isinstance(container, dict):
            container.setdefault("name", f"container-{i}")
    spec.setdefault("restartPolicy", "Never")
    spec.setdefault("serviceAccountName", "default")
    spec["serviceAccount"] = spec["serviceAccountName"]
    spec["nodeName"] = node
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    jobdefaults.default_pod_spec(spec)
    return {"metadata": {"name": name, "namespace": md.get("namespace"), "labels": labels,
                         "annotations": dict((template.get("metadata") or {}).get("annotations")
                                             or {}),
                         "generateName": f"{md['name']}-",
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                              "name": md["name"], "uid": md["uid"],
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": spec, "status": pending_status()}


# ---------------------------------------------------------------------- statuses
def _conditions(stamp: str, *, scheduled: bool, ready: bool, initialized: bool = True,
                gates: bool = False) -> list[dict[str, Any]]:
    out = []
    if scheduled:
        out.append({"type": "PodReadyToStartContainers", "status": "True" if ready else "False",
                    "lastProbeTime": None, "lastTransitionTime": stamp})
        out.append({"type": "Initialized", "status": "True" if initialized else "False",
                    "lastProbeTime": None, "lastTransitionTime": stamp})
        out.append({"type": "Ready", "status": "True" if ready else "False",
                    "lastProbeTime": None, "lastTransitionTime": stamp})
        out.append({"type": "ContainersReady", "status": "True" if ready else "False",
                    "lastProbeTime": None, "lastTransitionTime": stamp})
    if gates:
        out.append({"type": "kubevirt.io/virtual-machine-unpaused",
                    "status": "True" if ready else "False", "lastProbeTime": None,
                    "lastTransitionTime": stamp})
    out.append({"type": "PodScheduled", "status": "True" if scheduled else "False",
                "lastProbeTime": None, "lastTransitionTime": stamp})
    return out


def pending_status() -> dict[str, Any]:
    return {"phase": "Pending", "qosClass": "Burstable",
            "conditions": _conditions(now_rfc3339(), scheduled=False, ready=False)}


def _image(container: dict[str, Any]) -> tuple[str, str]:
    image = str(container.get("image") or "")
    digest = hashlib.sha256(image.encode()).hexdigest()
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return image, f"{repo}@sha256:{digest}" if image else ""




def running_status(pod: Obj, node: str, pod_ip: str) -> dict[str, Any]:
    """Scheduled on ``node``, every container running and ready."""
    stamp = now_rfc3339()
    uid = str(pod["metadata"].get("uid") or pod["metadata"].get("name", ""))
    statuses = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        image, image_id = _image(container)
        statuses.append({"name": container.get("name", ""), "ready": True, "started": True,
                         "restartCount": 0, "image": image, "imageID": image_id,
                         "containerID": _container_id(uid, str(container.get("name", ""))),
                         "state": {"running": {"startedAt": stamp}}})
    gates = bool((pod.get("spec") or {}).get("readinessGates"))
    return {"phase": "Running", "hostIP": nodes.node_ip(node), "hostIPs": [{"ip": nodes.node_ip(node)}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": stamp,
            "qosClass": (pod.get("status") or {}).get("qosClass", "Burstable"),
            "conditions": _conditions(stamp, scheduled=True, ready=True, gates=gates),
            "containerStatuses": statuses}


def finished_status(pod: Obj, *, failed: bool, message: str = "", exit_code: int | None = None
                    ) -> dict[str, Any]:
    """Every container terminated: phase Succeeded (exit 0, ``Completed``) or Failed."""
    stamp = now_rfc3339()
    old = dict(pod.get("status") or {})
    started = old.get("startTime") or stamp
    uid = str(pod["metadata"].get("uid") or pod["metadata"].get("name", ""))
    code = exit_code if exit_code is not None else (1 if failed else 0)
    statuses = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        image, image_id = _image(container)
        terminated: dict[str, Any] = {
            "exitCode": code, "reason": "Error" if failed else "Completed",
            "startedAt": started, "finishedAt": stamp,
            "containerID": _container_id(uid, str(container.get("name", "")))}
        if message:
            terminated["message"] = message
        statuses.append({"name": container.get("name", ""), "ready": False, "started": False,
                         "restartCount": 0, "image": image, "imageID": image_id,
                         "containerID": terminated["containerID"],
                         "state": {"terminated": terminated}})
    out = {k: v for k, v in old.items() if k not in ("conditions", "containerStatuses")}
    out.update({"phase": "Failed" if failed else "Succeeded", "startTime": started,
                "conditions": _conditions(stamp, scheduled=True, ready=False,
                                          gates=bool((pod.get("spec") or {}).get("readinessGates"))),
                "containerStatuses": statuses})
    for cond in out["conditions"]:
        if cond["type"] == "Initialized":
            cond["status"] = "True"
            cond["reason"] = "PodCompleted"
    return out


def pod_ip(ctx: ClusterContext, name: str) -> str:
    """A stable pod IP per pod name, in the cluster's pod network."""
    digest = hashlib.sha256(name.encode()).digest()
    return f"10.244.{digest[0] % 4}.{2 + digest[1] % 250}"


def log_text(pod: Obj, container: str) -> str:
    """The log of a simulated container: a Job container prints its termination message;
    virt-launcher prints its start-up lines."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if labels.get("kubevirt.io") == "virt-launcher":
        vmi = (pod.get("metadata") or {}).get("annotations", {}).get("kubevirt.io/domain", "")
        stamp = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        lines = [{"component": "virt-launcher", "level": "info", "msg": msg,
                  "timestamp": stamp} for msg in (
            "Collected all requested hook sidecar sockets", "Marked as ready",
            f"Domain name event: {(pod.get('metadata') or {}).get('namespace', '')}_{vmi}")]
        return "".join(json.dumps(line) + "\n" for line in lines) if container == "compute" \
            else ""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            message = str(((status.get("state") or {}).get("terminated") or {}).get("message", ""))
            return message if not message or message.endswith("\n") else message + "\n"
    return ""
