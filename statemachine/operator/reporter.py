"""The Plan object's ``status`` and Events, from the engine's progress events.

:class:`PlanReporter` is an engine event sink (``Engine(on_event=...)``). It keeps one row per VM
(phase, state, step, waiting for, progress, message, outputs: what ``smrun status --output json``
shows) and the plan's counts, and a thread of its own sends them: the status at most every
``interval`` seconds (merge patch of the status subresource, so kopf's own writes to the object
are untouched) and Kubernetes Events on the Plan and on the VM's source VirtualMachine, so the
engine's loop never waits for the API. Event reason = the state; message = the one-line
"waiting for ..." or the failure, the same lines ``smrun run`` prints. A wait whose progress
alone changes is not a new Event (the status shows progress).

It decides nothing about the run; it reports.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from statemachine.errors import ClusterError
from statemachine.k8s import Cluster, ObjectRef

logger = logging.getLogger("statemachine.operator")

API_VERSION = "smrun.io/v1alpha1"
COMPONENT = "smrun-operator"
TERMINAL = ("Succeeded", "Failed", "Canceled", "Invalid", "Refused")
_VM_END = {"vm_succeeded": "Completed", "vm_failed": "Failed", "vm_canceled": "Canceled"}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(phase: str, message: str, generation: int) -> list[dict[str, Any]]:
    """Ready (the plan was accepted and is running or done), Succeeded, Failed."""
    at = now()

    def cond(kind: str, true: bool, reason: str) -> dict[str, Any]:
        return {"type": kind, "status": "True" if true else "False", "reason": reason,
                "message": message, "observedGeneration": generation, "lastTransitionTime": at}
    accepted = phase not in ("Invalid", "Refused", "Pending")
    return [cond("Ready", accepted, phase), cond("Succeeded", phase == "Succeeded", phase),
            cond("Failed", phase in ("Failed", "Invalid", "Refused"), phase)]


class PlanReporter:
    """Writes one Plan object's status and Events (see the module docstring)."""

    def __init__(self, api: Cluster, obj: Mapping[str, Any], operator_id: str, *,
                 source: Cluster | None = None, interval: float = 0.5,
                 on_state_done: Callable[[str, float], None] | None = None,
                 on_reaction: Callable[[str, float], None] | None = None) -> None:
        meta = obj["metadata"]
        self.api = api
        self.source = source
        self.ref = ObjectRef(API_VERSION, "Plan", meta["namespace"], meta["name"])
        self.uid = meta.get("uid", "")
        self.generation = int(meta.get("generation") or 0)
        self.operator_id = operator_id
        self.interval = interval
        self.rows: dict[str, dict[str, Any]] = {}
        self.phase = "Pending"
        self.message = ""
        self.run_id = ""
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._events: queue.SimpleQueue[tuple[str, str, str, str]] = queue.SimpleQueue()
        self._said: dict[str, tuple[str, str]] = {}
        self._vm_uids: dict[str, str] = {}
        #: Called with (state, seconds) when a VM leaves a state (the state-duration histogram).
        self.on_state_done = on_state_done
        #: Called with (state, seconds) for a ``state_completed`` that carries the engine's
        #: reaction time (from the watch event that ended the wait to moving on).
        self.on_reaction = on_reaction
        self._entered: dict[str, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- engine side ----------------------------------------------------------------------------

    def set_vms(self, refs: list[str]) -> None:
        with self._lock:
            for ref in refs:
                self.rows.setdefault(ref, {"vm": ref, "phase": "Pending", "state": "",
                                           "step": "", "waitingFor": "", "progress": "",
                                           "message": "", "outputs": {}})
        self._dirty.set()

    def __call__(self, e: Mapping[str, Any]) -> None:
        kind = e.get("event")
        vm = e.get("vm") or ""
        if kind == "run_started":
            self.run_id = str(e.get("run") or "")
            self._dirty.set()
            return
        if not vm:
            return  # setup and run events: the plan's phase says it
        state = str(e.get("state") or "")
        if kind == "state_completed":
            reaction = e.get("reaction")
            if isinstance(reaction, (int, float)) and self.on_reaction is not None:
                self.on_reaction(state, float(reaction))
            return  # the status shows the state entered next
        if kind == "state_entered" or kind in _VM_END:
            self._left_state(vm, state if kind == "state_entered" else "")
        with self._lock:
            row = self.rows.setdefault(vm, {"vm": vm})
            if kind == "vm_started":
                row.update(phase="Running", message="", outputs={})  # a start begins afresh
            elif kind == "state_entered":
                row.update(state=state, step=str(e.get("step") or ""), waitingFor="",
                           progress="", message="")
            elif kind == "state_waiting":
                waiting = str(e.get("waiting_for") or "")
                row.update(state=state, waitingFor=waiting, progress=str(e.get("progress") or ""),
                           message=str(e.get("message") or ""))
                said = (state, waiting)
                if waiting and self._said.get(vm) != said:
                    self._said[vm] = said
                    self._events.put((vm, "Normal", state, str(e.get("message") or "")))
            elif kind == "undo":
                row.update(phase="Canceling" if row.get("phase") == "Canceling" else "Undoing",
                           message=str(e.get("message") or ""))
            elif kind in _VM_END:
                phase = _VM_END[kind]
                row.update(phase=phase, state="Completed" if phase == "Completed" else state,
                           waitingFor="", progress="", message=str(e.get("message") or ""))
                text = str(e.get("message") or phase)
                self._events.put((vm, "Normal" if phase == "Completed" else "Warning",
                                  state or phase, text))
        self._dirty.set()

    def outputs(self, vm: str, values: Mapping[str, Any]) -> None:
        """Values a state of ``vm`` recorded (from the journal: operator/outputtap.py)."""
        with self._lock:
            row = self.rows.setdefault(vm, {"vm": vm})
            row["outputs"] = {**(row.get("outputs") or {}), **values}
        self._dirty.set()

    def _left_state(self, vm: str, entering: str) -> None:
        at = time.monotonic()
        previous = self._entered.pop(vm, None)
        if previous is not None and self.on_state_done is not None and previous[0] != entering:
            self.on_state_done(previous[0], at - previous[1])
        if entering:
            if previous is not None and previous[0] == entering:
                at = previous[1]  # the same state again (a loop round, a retry): one stay
            self._entered[vm] = (entering, at)

    # -- phases ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"smrun-status-{self.ref.name}",
                                        daemon=True)
        self._thread.start()

    def set_phase(self, phase: str, message: str = "", *, warning: bool = False,
                  reason: str | None = None) -> None:
        """The plan's phase; with ``reason``, also an Event on the Plan."""
        with self._lock:
            self.phase, self.message = phase, message
        if reason is not None:
            self._events.put(("", "Warning" if warning else "Normal", reason, message or phase))
        self._dirty.set()

    def observe_generation(self, generation: int) -> None:
        """The run now acts on ``generation`` of the spec (a live change was taken)."""
        if generation > self.generation:
            self.generation = generation
            self._dirty.set()

    def close(self) -> None:
        """Send what is pending, then stop the thread."""
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        else:
            self._send()

    # -- the writer thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            self._stop.wait(self.interval)  # coalesce a burst of changes into one patch
            self._send()
        self._send()

    def _send(self) -> None:
        while True:
            try:
                vm, type_, reason, message = self._events.get_nowait()
            except queue.Empty:
                break
            self._event(vm, type_, reason, message)
        if not self._dirty.is_set():
            return
        self._dirty.clear()
        try:
            self.api.patch(self.ref, {"status": self.status()}, subresource="status")
        except ClusterError as exc:
            logger.warning("%s: status not written: %s", self.ref, exc)
            self._dirty.set()

    def status(self) -> dict[str, Any]:
        with self._lock:
            rows = [dict(r) for r in self.rows.values()]
            phase, message = self.phase, self.message
        counts = {p: sum(1 for r in rows if r.get("phase") == p)
                  for p in ("Completed", "Failed", "Canceled")}
        return {"phase": phase, "message": message, "observedGeneration": self.generation,
                "operator": self.operator_id, "run": self.run_id,
                "progress": f"{counts['Completed']}/{len(rows)}", "total": len(rows),
                "completed": counts["Completed"], "failed": counts["Failed"],
                "canceled": counts["Canceled"], "vms": rows,
                "conditions": conditions(phase, message, self.generation)}

    def _event(self, vm: str, type_: str, reason: str, message: str) -> None:
        stamp = now()
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Event", "type": type_,
            "reason": reason[:128] or "Unknown", "message": message[:1024],
            "source": {"component": COMPONENT}, "reportingComponent": f"smrun.io/{COMPONENT}",
            "reportingInstance": self.operator_id[:128], "firstTimestamp": stamp,
            "lastTimestamp": stamp, "count": 1, "action": "Migrate"}
        targets: list[tuple[Cluster, dict[str, Any]]] = [(self.api, {
            "apiVersion": API_VERSION, "kind": "Plan", "namespace": self.ref.namespace,
            "name": self.ref.name, "uid": self.uid})]
        if vm and self.source is not None:
            ns, name = vm.split("/", 1)
            involved = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                        "namespace": ns, "name": name}
            uid = self._vm_uid(ns, name)
            if uid:
                involved["uid"] = uid
            targets.append((self.source, involved))
        for cluster, involved in targets:
            event = {**body, "involvedObject": involved,
                     "message": (f"{vm}: {message}" if vm and involved["kind"] == "Plan"
                                 else message)[:1024],
                     "metadata": {"name": f"{involved['name']}.{uuid.uuid4().hex[:16]}",
                                  "namespace": involved["namespace"]}}
            try:
                cluster.create(event)
            except ClusterError as exc:  # best effort, as the engine's own Events
                logger.info("%s: event not recorded: %s", self.ref, exc)

    def _vm_uid(self, ns: str, name: str) -> str:
        key = f"{ns}/{name}"
        if key not in self._vm_uids and self.source is not None:
            try:
                obj = self.source.get(ObjectRef("kubevirt.io/v1", "VirtualMachine", ns, name))
            except ClusterError:
                obj = None
            self._vm_uids[key] = str(((obj or {}).get("metadata") or {}).get("uid") or "")
        return self._vm_uids.get(key, "")
