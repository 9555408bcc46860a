"""An in-memory cluster for unit tests of the engine core (the e2e tests use the simulator).

``FakeCluster`` implements the ``Cluster`` protocol over a dict with synchronous watch callbacks
and a tiny Job "controller" (a created Job completes after ``job_seconds``, or fails when it has
the ``sim.smrun.io/fail`` annotation). It is the only stand-in: itineraries, plans, the language,
the context, labels and predicates are the product's own (tests/engine/flows.py).
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from statemachine.errors import Conflict, TransientClusterError
from statemachine.k8s import ObjectRef, ResourceKey, RulesReview


@dataclass
class _Sub:
    cluster: FakeCluster
    key: ResourceKey
    handler: Any

    def close(self) -> None:
        self.cluster.subs.remove(self)


# A Job that FakeCluster completes after job_seconds, or fails for VMs named bad*.
JOB_TEMPLATE = """apiVersion: batch/v1
kind: Job
metadata:
  name: "{{ vm.name }}-job"
  namespace: "{{ vm.namespace }}"
  annotations: {"sim.smrun.io/fail": "{{ vm.name.startswith('bad') | lower }}"}
spec: {template: {spec: {containers: [{name: c, image: busybox}], restartPolicy: Never}}}
"""


class FakeCluster:
    def __init__(self, name: str, *, job_seconds: float = 0.05, fail_creates: int = 0,
                 forbidden: set[tuple[str, str]] | None = None) -> None:
        self.name = name
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.subs: list[_Sub] = []
        self.job_seconds = job_seconds
        self.fail_creates = fail_creates
        self.forbidden = forbidden or set()
        self.calls: list[tuple[str, str]] = []
        self.created_total: dict[tuple[str, str, str], int] = {}
        self.lock = threading.RLock()
        self.timers: list[threading.Timer] = []

    def _k(self, ref: ObjectRef) -> tuple[str, str, str]:
        return (ref.kind, ref.namespace, ref.name)

    def _notify(self, event: str, obj: dict[str, Any]) -> None:
        for sub in list(self.subs):
            if sub.key.kind == obj.get("kind"):
                sub.handler(event, copy.deepcopy(obj))

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        self.calls.append(("get", ref.kind))
        with self.lock:
            obj = self.objects.get(self._k(ref))
            return copy.deepcopy(obj) if obj else None


    def fetch(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self.get(ref)
    def list(self, api_version: str, kind: str, *, namespace: str = "",
             label_selector: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(o) for (k, ns, _), o in self.objects.items()
                    if k == kind and (not namespace or ns == namespace)]

    def create(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self.calls.append(("create", str(manifest.get("kind"))))
        if self.fail_creates:
            self.fail_creates -= 1
            raise TransientClusterError("injected 500", status=500)
        ref = ObjectRef.of(manifest)
        with self.lock:
            if self._k(ref) in self.objects:
                raise Conflict(f"{ref} already exists", status=409)
            obj = copy.deepcopy(dict(manifest))
            self.objects[self._k(ref)] = obj
            self.created_total[self._k(ref)] = self.created_total.get(self._k(ref), 0) + 1
        self._notify("ADDED", obj)
        if obj.get("kind") == "Job":
            failing = (obj["metadata"].get("annotations") or {}).get("sim.smrun.io/fail") == "true"
            t = threading.Timer(self.job_seconds, self._finish_job, (ref, failing))
            t.daemon = True
            self.timers.append(t)
            t.start()
        return copy.deepcopy(obj)

    def _finish_job(self, ref: ObjectRef, failing: bool) -> None:
        cond = {"type": "Failed" if failing else "Complete", "status": "True"}
        with self.lock:
            obj = self.objects.get(self._k(ref))
            if obj is None:
                return
            obj["status"] = {"conditions": [cond], "succeeded": 0 if failing else 1}
            snapshot = copy.deepcopy(obj)
        self._notify("MODIFIED", snapshot)

    def patch(self, ref: ObjectRef, patch: Any, *, patch_type: str = "merge",
              subresource: str = "", dry_run: bool = False) -> dict[str, Any]:
        with self.lock:
            obj = self.objects[self._k(ref)]
            _merge(obj, patch)
            snapshot = copy.deepcopy(obj)
        self._notify("MODIFIED", snapshot)
        return snapshot

    def delete(self, ref: ObjectRef) -> bool:
        self.calls.append(("delete", ref.kind))
        with self.lock:
            obj = self.objects.pop(self._k(ref), None)
        if obj is None:
            return False
        self._notify("DELETED", obj)
        return True

    def watch(self, key: ResourceKey, handler: Any) -> _Sub:
        sub = _Sub(self, key, handler)
        self.subs.append(sub)
        return sub

    def served(self, api_version: str, kind: str) -> bool:
        return True

    def can_i(self, verb: str, api_version: str, kind: str, namespace: str = "") -> bool:
        self.calls.append(("can_i", kind))
        return (verb, kind) not in self.forbidden

    def can_i_resource(self, verb: str, group: str, resource: str, namespace: str = "",
                       name: str = "") -> bool:
        self.calls.append(("can_i_resource", resource))
        return (verb, resource) not in self.forbidden

    def resource_of(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        return None  # the kind's own plural (preflight.plural)

    def rules(self, namespace: str) -> RulesReview:
        # No rules listed and marked incomplete: every question falls back to can_i.
        self.calls.append(("rules", namespace))
        return RulesReview((), incomplete=True)

    def close(self) -> None:
        for t in self.timers:
            t.cancel()

    def count(self, kind: str) -> int:
        return sum(1 for (k, _, _) in self.objects if k == kind)


def _merge(dst: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
