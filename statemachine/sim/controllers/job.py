"""The simulated Job controller: a Job runs for one tick, then completes (or fails on request).

Tick 1: ``status.active: 1``, ``startTime``, a Pod ``<job>-<suffix>`` (labels ``job-name``,
``batch.kubernetes.io/job-name``, ``controller-uid``; owned by the Job; ``pods.py``) in phase
Running on ``<cluster>-node01``; event ``SuccessfulCreate`` ``Created pod: <pod>``.
Tick 2: success — Pod ``Succeeded`` with ``containerStatuses[0].state.terminated`` (exit code 0 and
the termination message), Job ``succeeded: 1``, ``completionTime``, conditions
``SuccessCriteriaMet=True`` and ``Complete=True``; or, with ``sim.smrun.io/fail: "true"``, Pod
``Failed`` (exit code 1), Job ``failed: 1``, conditions ``FailureTarget=True`` and ``Failed=True``
reason ``BackoffLimitExceeded``. Events ``Completed`` ``Job completed`` or Warning
``BackoffLimitExceeded`` (component ``job-controller``). ``kubectl logs job/<name>`` prints the
termination message (``pods.log_text``).

Termination message: the annotation ``sim.smrun.io/termination-message`` on the Job is copied as
is; otherwise a delta-copy Job (one whose container env names a VirtualMachineBackup export
``.../virtualmachineexports/<backup>/exports/<volume>/map|data`` URL) reports the
deterministic ``{"dirtyBytes", "copiedBytes", "type", ...}`` of that backup (``backup.py``), in the
shape ``statemachine/copier/delta.py`` writes; if that backup is gone or its export is not Ready
the Job fails, as the copier would after its retries. The
message also lands in the Job annotation ``sim.smrun.io/termination-message-out`` so a client
without Pod access can read it.

What it does not do: parallelism, retries up to ``backoffLimit``, ``activeDeadlineSeconds``, TTL.
"""
from __future__ import annotations

import json
import re
from typing import Any

from statemachine.sim import addresses, events
from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim.controllers import pods
from statemachine.sim.controllers.backup import backup_round
from statemachine.sim.controllers.conditions import (
    annotations_of, condition_is, now, set_condition, wants_failure)
from statemachine.sim.store import Obj

COMPONENT = "job-controller"
MESSAGE_IN = "sim.smrun.io/termination-message"
MESSAGE_OUT = "sim.smrun.io/termination-message-out"
_BACKUP_URL = re.compile(r"https://([^/]+)/api/export\.kubevirt\.io/v1/namespaces/([^/]+)/"
                         r"virtualmachineexports/([^/]+)/exports/([^/]+)/(?:map|data)")


def _env_values(job: Obj) -> list[str]:
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    out = []
    for container in spec.get("containers") or []:
        out += [str(e.get("value", "")) for e in container.get("env") or []]
        out += [str(a) for a in (container.get("args") or []) + (container.get("command") or [])]
    return out


def outcome(ctx: ClusterContext, job: Obj) -> tuple[bool, str]:
    """(fails, termination message) of a Job: see the module docstring."""
    if wants_failure(job):
        return True, annotations_of(job).get(MESSAGE_IN, "")
    given = annotations_of(job).get(MESSAGE_IN)
    if given is not None:
        return False, given
    for value in _env_values(job):
        found = _BACKUP_URL.search(value)
        if not found:
            continue
        host, ns, backup, volume = found.groups()
        owner = addresses.cluster_of_export_host(host, list(ctx.clusters))
        if owner is None:
            continue
        round_ = backup_round(ctx.clusters[owner], ns, backup, volume)
        if round_ is None:
            # What the copier reports after its retries when the export is gone or not ready.
            return True, json.dumps({"dirtyBytes": 0, "copiedBytes": 0, "seconds": 1,
                                     "error": f"{value}: HTTP 404 or 503 after retries"})
        dirty, kind = round_
        return False, json.dumps({"copiedBytes": dirty, "dirtyBytes": dirty, "extents": 1,
                                  "requests": 2, "retries": 0, "seconds": 1, "type": kind,
                                  "zeroedBytes": 0}, sort_keys=True)
    return False, ""


class JobController(Controller):
    """Runs Jobs (see module docstring)."""

    watches = ("Job",)

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        md = obj["metadata"]
        ns, name = md.get("namespace"), md["name"]
        status: dict[str, Any] = dict(obj.get("status") or {})
        if md.get("deletionTimestamp") or condition_is(status, "Complete") \
                or condition_is(status, "Failed"):
            return None
        pod_name = f"{name}-{md['uid'][:5]}"
        if not status.get("startTime"):
            status.update({"active": 1, "startTime": now(), "ready": 0})
            self._pod(ctx, obj, pod_name)
            ctx.store.update_status("Job", ns, name, status)
            return True
        failing, message = outcome(ctx, obj)
        pod = ctx.store.try_get("Pod", ns, pod_name)
        if pod is not None:
            ctx.store.update_status("Pod", ns, pod_name,
                                    pods.finished_status(pod, failed=failing, message=message))
        status.pop("active", None)
        status["ready"] = 0
        if failing:
            status["failed"] = 1
            set_condition(status, "FailureTarget", "True", "BackoffLimitExceeded",
                          "Job has reached the specified backoff limit", style="meta")
            set_condition(status, "Failed", "True", "BackoffLimitExceeded",
                          "Job has reached the specified backoff limit", style="meta")
            events.record(ctx.store, obj, "Warning", "BackoffLimitExceeded",
                          "Job has reached the specified backoff limit", component=COMPONENT)
        else:
            status["succeeded"] = 1
            status["completionTime"] = now()
            set_condition(status, "SuccessCriteriaMet", "True", "CompletionsReached",
                          "Reached expected number of succeeded pods", style="meta")
            set_condition(status, "Complete", "True", "CompletionsReached",
                          "Reached expected number of succeeded pods", style="meta")
            events.record(ctx.store, obj, "Normal", "Completed", "Job completed",
                          component=COMPONENT)
        if message:
            ctx.store.mutate("Job", ns, name, lambda o: o["metadata"].setdefault(
                "annotations", {}).update({MESSAGE_OUT: message}))
        ctx.store.update_status("Job", ns, name, status)
        return None

    def _pod(self, ctx: ClusterContext, job: Obj, pod_name: str) -> None:
        md = job["metadata"]
        ns = md.get("namespace")
        node = f"{ctx.name}-node01"
        pod = ctx.store.try_get("Pod", ns, pod_name)
        if pod is None:
            pod = ctx.store.create("Pod", pods.job_pod(job, pod_name, node), keep_status=True)
            events.record(ctx.store, job, "Normal", "SuccessfulCreate", f"Created pod: {pod_name}",
                          component=COMPONENT)
        ctx.store.update_status("Pod", ns, pod_name,
                                pods.running_status(pod, node, pods.pod_ip(ctx, pod_name)))
