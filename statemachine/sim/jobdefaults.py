"""Create-time defaults of a ``batch/v1`` Job, as the kube-apiserver fills them in.

The batch defaulting functions and the Job registry's ``PrepareForCreate``: ``parallelism``,
``completions``, ``backoffLimit``, ``completionMode``, ``suspend``, ``podReplacementPolicy``; the
generated selector (``batch.kubernetes.io/controller-uid: <uid>``) with the matching pod template
labels (also the legacy ``controller-uid`` and ``job-name``) unless ``manualSelector`` is true;
and the pod template's own defaults (``restartPolicy`` is the user's: a Job requires it),
``dnsPolicy``, ``schedulerName``, ``terminationGracePeriodSeconds``, ``securityContext`` and per
container ``terminationMessagePath``/``terminationMessagePolicy``/``imagePullPolicy``/``resources``.

What it does not do: validation (a missing ``restartPolicy`` or ``containers``), indexed Jobs'
per-index defaults, pod failure policies.
"""
from __future__ import annotations

import secrets
import string
from typing import Any

from statemachine.sim.store import Obj

UID_LABEL = "batch.kubernetes.io/controller-uid"
NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_UID_LABEL = "controller-uid"
LEGACY_NAME_LABEL = "job-name"
_ALNUM = string.ascii_lowercase + string.digits


def _pull_policy(image: str) -> str:
    tail = image.rsplit("/", 1)[-1]
    if "@" in tail:
        return "IfNotPresent"
    tag = tail.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def default_pod_spec(spec: dict[str, Any]) -> None:
    """The pod spec defaults every pod (and pod template) gets, in place."""
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if not isinstance(container, dict):
            continue
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("imagePullPolicy", _pull_policy(str(container.get("image", ""))))
        container.setdefault("resources", {})


def default(job: Obj, uid: str) -> None:
    """Fill in a Job's create-time defaults in place; ``uid`` is the uid it will be stored with."""
    md = job.setdefault("metadata", {})
    if not md.get("name") and md.get("generateName"):
        md["name"] = md["generateName"] + "".join(secrets.choice(_ALNUM) for _ in range(5))
    spec = job.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if not spec.get("podFailurePolicy"):
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    if not isinstance(template, dict):
        return
    tmd = template.setdefault("metadata", {})
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {UID_LABEL: uid}}
        tmd.setdefault("labels", {}).update({
            UID_LABEL: uid, NAME_LABEL: str(md.get("name", "")),
            LEGACY_UID_LABEL: uid, LEGACY_NAME_LABEL: str(md.get("name", ""))})
    tmd.setdefault("creationTimestamp", None)
    pod_spec = template.get("spec")
    if isinstance(pod_spec, dict):
        default_pod_spec(pod_spec)
