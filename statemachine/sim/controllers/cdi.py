"""The simulated CDI: DataVolumes (blank, http, pvc clone, upload, registry) and PVC binding.

DataVolume, one phase per tick (kubevirt-lifecycle.md §4.4, non-populator path):
``Pending`` (PVC created, ``progress: N/A``) → [``WaitForFirstConsumer`` while the StorageClass
binds on first consumer, no ``cdi.kubevirt.io/storage.bind.immediate.requested`` annotation and
no VMI/Pod uses the claim] → ``PVCBound`` → ``ImportScheduled`` → ``ImportInProgress`` (progress
rises 0 → 25 → 50 → 75 %, blank imports jump straight to the end) → ``Succeeded`` (``100.0%``).
Clones use ``CloneScheduled``/``CloneInProgress``; uploads stop at ``UploadReady``.
Conditions ``Bound``, ``Running`` and ``Ready`` as in §4.5.

http sources are fetched from the simulated world (``import_source.py``): a VirtualMachineExport
volume link of any simulated cluster (with the export token in ``secretExtraHeaders``), or the
always-reachable image host ``images.sim.smrun.io``. Anything else cannot be reached, and the
importer retries forever as CDI's does (kubevirt-fidelity.md §8): the DV stays
``ImportInProgress`` (``progress: N/A``); each failed attempt sets ``Running=False reason=Error``
with the importer's message, bumps ``restartCount`` (and the PVC annotation
``cdi.kubevirt.io/storage.pod.restarts``) and records a Warning ``Error`` on the DV and a Warning
``ErrImportFailed`` on the PVC; after a CrashLoopBackOff wait (1, 2, 4 … 32 ticks, the kubelet's
10 s doubling to 5 min, scaled) the container runs again (``Running=True "Pod is running"``). A
source that becomes reachable then completes the import. A missing clone source fails the DV
after :data:`MAX_RESTARTS` attempts.

Events on the DataVolume (component ``datavolume-import-controller``, §5.6): the Bound
condition's reason (``Pending``/``Bound`` ``PVC <n> …``) whenever it changes, ``ImportScheduled``,
``ImportInProgress``, ``ImportSucceeded`` and Warning ``ImportFailed`` on those phase changes; on
the PVC (``import-controller``) ``ImportSucceeded`` ``Import Successful``.

Fault injection: ``sim.smrun.io/fail: "true"`` on the DataVolume → ``Failed`` right after
``Pending`` (``Running=False reason=Error``): the hard failure tests need.

PersistentVolumeClaims not created for a DataVolume are bound on the next tick (Immediate class)
or when a consumer appears (WaitForFirstConsumer class); an unbound one without a class first
gets the default class, as the PV controller assigns it retroactively. Binding (a DataVolume's
claim too) provisions a PersistentVolume ``pvc-<claim uid>`` as the PV controller and a CSI
provisioner do (``statemachine/sim/volumes.py``); a claim naming a volume that does not exist
stays ``Pending``.

The DV's claim is rendered as CDI does (``_pvc_spec``): ``spec.pvc`` as written, with the
default StorageClass the API server's DefaultStorageClass plugin would name; ``spec.storage`` with
CDI's class (named, else the virt default class, else the Kubernetes default), the missing
access/volume modes from the class's StorageProfile and the size in bytes, a Filesystem claim's
with CDI's default filesystem overhead (:func:`inflated_size`).

What it does not do: volume populators (``PendingPopulation``, ``prime-`` PVCs), multi-stage
(checkpoint) imports, CDIConfig (per-class overheads) and StorageProfile minimum sizes, CDI's
``ErrClaimNotValid`` when no class gives access modes (``ReadWriteOnce`` is used), real data.
"""
from __future__ import annotations

import copy
import math
from typing import Any

from statemachine.sim import coredefaults, events, volumes
from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim.controllers.conditions import (
    annotations_of, parse_quantity, condition_is, get_condition, set_condition, wants_failure)
from statemachine.sim.controllers.import_source import check_http_source
from statemachine.sim.controllers.vmi import claim_names
from statemachine.sim.store import Obj

MAX_RESTARTS = 3
MAX_BACKOFF_TICKS = 32
DV_COMPONENT = "datavolume-import-controller"
PVC_COMPONENT = "import-controller"
RESTARTS_ANNOTATION = "cdi.kubevirt.io/storage.pod.restarts"
_PHASE_EVENTS = {"ImportScheduled": ("Normal", "Import into {} scheduled"),
                 "ImportInProgress": ("Normal", "Import into {} in progress"),
                 "Succeeded": ("Normal", "Successfully imported into PVC {}"),
                 "Failed": ("Warning", "Failed to import into PVC {}")}
PROGRESS_STEP = 25.0
BIND_IMMEDIATE = "cdi.kubevirt.io/storage.bind.immediate.requested"
CREATED_FOR = "cdi.kubevirt.io/createdForDataVolume"
VIRT_DEFAULT_CLASS = "storageclass.kubevirt.io/is-default-virt-class"
#: CDIConfig's default ``status.filesystemOverhead.global`` and CDI's image alignment.
FILESYSTEM_OVERHEAD = 0.055
ALIGN = 1 << 20
_FINAL = ("Succeeded", "Failed")


def _storage_class(ctx: ClusterContext, name: str | None) -> Obj | None:
    """The class a claim names, else the cluster's default one (the DefaultStorageClass
    admission plugin's choice)."""
    if name:
        return ctx.store.try_get("StorageClass", None, name)
    return coredefaults.pick_default_class(ctx.store.list("StorageClass"))


def _virt_storage_class(ctx: ClusterContext, name: str | None, content: str) -> Obj | None:
    """CDI's choice for a ``spec.storage`` DataVolume: the named class (``None`` if missing),
    else the newest marked ``storageclass.kubevirt.io/is-default-virt-class`` (kubevirt
    content only), else the Kubernetes default."""
    if name is not None:
        return ctx.store.try_get("StorageClass", None, name)
    classes = ctx.store.list("StorageClass")
    if content != "archive":
        virt = [c for c in classes if annotations_of(c).get(VIRT_DEFAULT_CLASS) == "true"]
        if virt:
            virt.sort(key=lambda c: c["metadata"]["name"])
            virt.sort(key=lambda c: c["metadata"].get("creationTimestamp") or "", reverse=True)
            return virt[0]
    return coredefaults.pick_default_class(classes)


def _profile_modes(ctx: ClusterContext, sc_name: str, spec: dict[str, Any]) -> None:
    """Fill a ``spec.storage`` claim's missing access/volume modes from the class's
    StorageProfile, as CDI renders them: both missing, the first claim property set; one
    missing, the first set matching the other (none matching: the volume mode is left to
    the API's default, the access modes stay missing)."""
    profile = ctx.store.try_get("StorageProfile", None, sc_name) or {}
    sets = [s for s in (profile.get("status") or {}).get("claimPropertySets") or []
            if isinstance(s, dict)]
    modes, volume_mode = spec.get("accessModes") or [], spec.get("volumeMode")
    if not modes and not volume_mode:
        if sets and sets[0].get("accessModes"):
            spec["accessModes"] = list(sets[0]["accessModes"])
            if sets[0].get("volumeMode"):
                spec["volumeMode"] = sets[0]["volumeMode"]
    elif not modes:
        for cps in sets:
            if cps.get("volumeMode") == volume_mode and cps.get("accessModes"):
                spec["accessModes"] = list(cps["accessModes"])
                break
    elif not volume_mode:
        for cps in sets:
            if set(cps.get("accessModes") or []) & set(modes) and cps.get("volumeMode"):
                spec["volumeMode"] = cps["volumeMode"]
                break


def _waits_for_consumer(ctx: ClusterContext, pvc: Obj) -> bool:
    sc = _storage_class(ctx, (pvc.get("spec") or {}).get("storageClassName"))
    if (sc or {}).get("volumeBindingMode") != "WaitForFirstConsumer":
        return False
    if BIND_IMMEDIATE in annotations_of(pvc):
        return False
    ns, name = pvc["metadata"].get("namespace"), pvc["metadata"]["name"]
    for vmi in ctx.store.list("VirtualMachineInstance", ns):
        if name in claim_names(vmi.get("spec") or {}):
            return False
    for pod in ctx.store.list("Pod", ns):
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            if (vol.get("persistentVolumeClaim") or {}).get("claimName") == name:
                return False
    return True


def _report_waiting(ctx: ClusterContext, pvc: Obj) -> None:
    """The PV controller's WaitForFirstConsumer event, once per claim."""
    seen: set[str] = ctx.state.setdefault("claims-waiting-reported", set())
    if pvc["metadata"]["uid"] not in seen:
        seen.add(pvc["metadata"]["uid"])
        volumes.waiting_for_consumer(ctx.store, pvc)


class PersistentVolumeClaimController(Controller):
    """Binds PVCs that no DataVolume manages (see module docstring)."""

    watches = ("PersistentVolumeClaim",)

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        if CREATED_FOR in annotations_of(obj) or obj["metadata"].get("deletionTimestamp"):
            return None
        if (obj.get("status") or {}).get("phase") == "Bound":
            return None
        spec = obj.get("spec") or {}
        if spec.get("storageClassName") is None and not spec.get("volumeName") and \
                coredefaults.BETA_CLASS_ANNOTATION not in annotations_of(obj):
            # The PV controller's retroactive default class: an unbound claim made without
            # one gets the default class once there is one, then is provisioned.
            chosen = _storage_class(ctx, None)
            if chosen is not None:
                md = obj["metadata"]
                ctx.store.mutate("PersistentVolumeClaim", md.get("namespace"), md["name"],
                                 lambda o: o["spec"].update(
                                     {"storageClassName": chosen["metadata"]["name"]}))
                return True
        if _waits_for_consumer(ctx, obj):
            if (obj.get("status") or {}).get("phase") != "Pending":
                md = obj["metadata"]
                ctx.store.update_status("PersistentVolumeClaim", md.get("namespace"), md["name"],
                                        {"phase": "Pending"})
            _report_waiting(ctx, obj)
            return True
        # Provisioned and bound as the PV controller and the class's CSI provisioner do; a
        # claim naming a missing volume waits for it (resyncs).
        volumes.provision(ctx.store, obj)
        return None


class DataVolumeController(Controller):
    """Drives DataVolumes and their PVCs (see module docstring)."""

    watches = ("DataVolume",)

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        md = obj["metadata"]
        ns, name = md.get("namespace"), md["name"]
        status: dict[str, Any] = dict(obj.get("status") or {})
        phase = status.get("phase", "")
        if md.get("deletionTimestamp") or phase in _FINAL or phase == "UploadReady":
            return None
        pvc = ctx.store.try_get("PersistentVolumeClaim", ns, name)
        source = (obj.get("spec") or {}).get("source") or {}
        kind = next(iter(source), "blank")
        if phase == "":
            if pvc is None:
                pvc = ctx.store.create("PersistentVolumeClaim", self._pvc_body(ctx, obj),
                                       keep_status=True)
            status.update({"phase": "Pending", "progress": "N/A", "claimName": name})
            set_condition(status, "Bound", "False", "Pending", f"PVC {name} Pending", style="cdi")
            set_condition(status, "Running", "False", style="cdi")
            set_condition(status, "Ready", "False", style="cdi")
        elif pvc is None:
            status["phase"] = "Failed"
            set_condition(status, "Bound", "False", "ClaimLost", "Claim Lost", style="cdi")
            set_condition(status, "Ready", "False", style="cdi")
        elif wants_failure(obj):
            status["phase"] = "Failed"
            set_condition(status, "Running", "False", "Error",
                          "Import failed: simulated failure (sim.smrun.io/fail)", style="cdi")
            set_condition(status, "Ready", "False", style="cdi")
        elif phase in ("Pending", "WaitForFirstConsumer"):
            if _waits_for_consumer(ctx, pvc):
                status["phase"] = "WaitForFirstConsumer"
                _report_waiting(ctx, pvc)
            elif (pvc.get("status") or {}).get("phase") == "Bound" or volumes.provision(ctx.store, pvc):
                status["phase"] = "PVCBound"
                set_condition(status, "Bound", "True", "Bound", f"PVC {name} Bound", style="cdi")
        elif phase == "PVCBound":
            status["phase"] = {"pvc": "CloneScheduled", "upload": "UploadScheduled"}.get(
                kind, "ImportScheduled")
        elif phase in ("UploadScheduled",):
            status["phase"] = "UploadReady"
            set_condition(status, "Running", "True", "Pod is running", style="cdi")
        elif phase in ("ImportScheduled", "CloneScheduled"):
            status["phase"] = "CloneInProgress" if kind == "pvc" else "ImportInProgress"
            status["progress"] = "0.00%"
            set_condition(status, "Running", "True", "Pod is running", style="cdi")
            set_condition(status, "Ready", "False", "TransferRunning", style="cdi")
        else:
            self._transfer(ctx, obj, status, kind, source)
        if status != (obj.get("status") or {}):
            ctx.store.update_status("DataVolume", ns, name, status, copy=False)  # result dropped
            self._events(ctx, obj, status, kind)
        return True

    def _events(self, ctx: ClusterContext, dv: Obj, status: dict[str, Any], kind: str) -> None:
        """The events CDI records for this status change (§5.6)."""
        old = dv.get("status") or {}
        name = dv["metadata"]["name"]
        bound, was = get_condition(status, "Bound"), get_condition(old, "Bound")
        if bound is not None and bound.get("reason") and (was is None or any(
                bound.get(f) != was.get(f) for f in ("status", "reason", "message"))):
            events.record(ctx.store, dv, "Normal", str(bound["reason"]),
                          str(bound.get("message", "")), component=DV_COMPONENT)
        phase = status.get("phase")
        if phase != old.get("phase") and phase in _PHASE_EVENTS and kind not in ("pvc", "upload"):
            etype, text = _PHASE_EVENTS[phase]
            reason = {"Succeeded": "ImportSucceeded", "Failed": "ImportFailed"}.get(
                str(phase), str(phase))
            events.record(ctx.store, dv, etype, reason, text.format(name),
                          component=DV_COMPONENT)
            if phase == "Succeeded":
                pvc = ctx.store.try_get("PersistentVolumeClaim", dv["metadata"].get("namespace"),
                                        name)
                if pvc is not None:
                    events.record(ctx.store, pvc, "Normal", "ImportSucceeded",
                                  "Import Successful", component=PVC_COMPONENT)

    def _transfer(self, ctx: ClusterContext, dv: Obj, status: dict[str, Any], kind: str,
                  source: dict[str, Any]) -> None:
        """One tick of ImportInProgress/CloneInProgress: check the source, then move progress."""
        ns = dv["metadata"].get("namespace")
        problem = None
        if kind == "http":
            problem = check_http_source(ctx, ns, source.get("http") or {})
        elif kind == "pvc":
            ref = source.get("pvc") or {}
            if ctx.store.try_get("PersistentVolumeClaim", ref.get("namespace") or ns,
                                 ref.get("name", "")) is None:
                problem = f'source PVC {ref.get("namespace") or ns}/{ref.get("name")} not found'
        if problem is not None and kind == "http":
            self._retry(ctx, dv, status, problem)
            return
        if problem is not None:
            restarts = int(status.get("restartCount") or 0) + 1
            status["restartCount"] = restarts
            set_condition(status, "Running", "False", "Error", problem, style="cdi")
            if restarts > MAX_RESTARTS:
                status["phase"] = "Failed"
                set_condition(status, "Ready", "False", style="cdi")
            return
        set_condition(status, "Running", "True", "Pod is running", style="cdi")
        done = float(str(status.get("progress", "0")).rstrip("%") or 0) if str(
            status.get("progress", "")).endswith("%") else 0.0
        done = 100.0 if kind == "blank" else done + PROGRESS_STEP
        if done < 100.0:
            status["progress"] = f"{done:.2f}%"
            return
        status.update({"phase": "Succeeded", "progress": "100.0%"})
        set_condition(status, "Running", "False", "Completed", "Import Complete", style="cdi")
        set_condition(status, "Ready", "True", style="cdi")
        set_condition(status, "Bound", "True", "Bound", f"PVC {dv['metadata']['name']} Bound",
                      style="cdi")

    def _retry(self, ctx: ClusterContext, dv: Obj, status: dict[str, Any], problem: str) -> None:
        """One tick of an importer that cannot reach its source (see the module docstring)."""
        md = dv["metadata"]
        ns, name = md.get("namespace"), md["name"]
        backoff: dict[str, int] = ctx.state.setdefault("importer-backoff", {})
        running = get_condition(status, "Running")
        status["progress"] = "N/A"
        if running is None or running.get("status") == "True":  # the importer ran and exited
            restarts = int(status.get("restartCount") or 0) + 1
            status["restartCount"] = restarts
            set_condition(status, "Running", "False", "Error", problem, style="cdi")
            backoff[md["uid"]] = min(2 ** (restarts - 1), MAX_BACKOFF_TICKS)
            events.record(ctx.store, dv, "Warning", "Error", problem, component=DV_COMPONENT)
            pvc = ctx.store.try_get("PersistentVolumeClaim", ns, name)
            if pvc is not None:
                ctx.store.mutate("PersistentVolumeClaim", ns, name, lambda o: o["metadata"]
                                 .setdefault("annotations", {}).update(
                                     {RESTARTS_ANNOTATION: str(restarts)}))
                events.record(ctx.store, pvc, "Warning", "ErrImportFailed", problem,
                              component=PVC_COMPONENT)
            return
        left = backoff.get(md["uid"], 0) - 1
        backoff[md["uid"]] = left
        if left <= 0:  # CrashLoopBackOff over: the kubelet starts the container again
            backoff.pop(md["uid"], None)
            set_condition(status, "Running", "True", "Pod is running", style="cdi")

    def _pvc_body(self, ctx: ClusterContext, dv: Obj) -> Obj:
        md = dv["metadata"]
        spec = dv.get("spec") or {}
        notes = dict(md.get("annotations") or {})
        notes.update({"cdi.kubevirt.io/storage.pod.restarts": "0",
                      "cdi.kubevirt.io/storage.contentType": "kubevirt",
                      "cdi.kubevirt.io/storage.preallocation.requested": "false",
                      CREATED_FOR: md["uid"]})
        source = spec.get("source") or {}
        if "blank" in source:
            notes["cdi.kubevirt.io/storage.import.source"] = "none"
        elif "http" in source:
            notes["cdi.kubevirt.io/storage.import.endpoint"] = str(source["http"].get("url", ""))
            notes["cdi.kubevirt.io/storage.import.source"] = "http"
        pvc_spec = self._pvc_spec(ctx, spec)
        # Decision: a claim CDI could not give access modes (no class to take a profile from)
        # gets ReadWriteOnce instead of CDI's ErrClaimNotValid event and no claim.
        pvc_spec.setdefault("accessModes", ["ReadWriteOnce"])
        pvc_spec.setdefault("resources", {"requests": {"storage": "1Gi"}})
        coredefaults.decode(ctx.store.kind("PersistentVolumeClaim"), {"spec": pvc_spec})
        labels = {"app": "containerized-data-importer", **(md.get("labels") or {})}
        if pvc_spec["volumeMode"] == "Filesystem":
            labels["alerts.k8s.io/KubePersistentVolumeFillingUp"] = "disabled"
        return {"metadata": {"name": md["name"], "namespace": md.get("namespace"),
                             "labels": labels, "annotations": notes,
                             "ownerReferences": [{"apiVersion": "cdi.kubevirt.io/v1beta1",
                                                  "kind": "DataVolume", "name": md["name"],
                                                  "uid": md["uid"], "controller": True,
                                                  "blockOwnerDeletion": True}]},
                "spec": pvc_spec, "status": {"phase": "Pending"}}

    @staticmethod
    def _pvc_spec(ctx: ClusterContext, spec: dict[str, Any]) -> dict[str, Any]:
        """The claim's spec as CDI renders it: ``spec.pvc`` as written (the API server's
        DefaultStorageClass plugin then names the default class); ``spec.storage`` with CDI's
        class choice and the StorageProfile's modes."""
        if isinstance(spec.get("pvc"), dict):
            pvc_spec: dict[str, Any] = copy.deepcopy(spec["pvc"])
            if pvc_spec.get("storageClassName") is None:
                chosen = _storage_class(ctx, None)
                if chosen is not None:
                    pvc_spec["storageClassName"] = chosen["metadata"]["name"]
            return pvc_spec
        raw = spec.get("storage")
        storage: dict[str, Any] = raw if isinstance(raw, dict) else {}
        pvc_spec = {key: copy.deepcopy(storage[key]) for key in (
            "accessModes", "selector", "resources", "volumeName", "storageClassName",
            "volumeMode", "dataSource", "dataSourceRef") if storage.get(key) is not None}
        content = str(spec.get("contentType") or "kubevirt")
        if content == "archive":
            pvc_spec["volumeMode"] = "Filesystem"
        if pvc_spec.get("volumeMode") == "FromStorageProfile":
            del pvc_spec["volumeMode"]
        sc = _virt_storage_class(ctx, pvc_spec.get("storageClassName"), content)
        if sc is not None:
            pvc_spec["storageClassName"] = sc["metadata"]["name"]
            _profile_modes(ctx, sc["metadata"]["name"], pvc_spec)
        requests = (pvc_spec.get("resources") or {}).get("requests") or {}
        if "storage" in requests:
            requests["storage"] = inflated_size(parse_quantity(requests["storage"]),
                                                pvc_spec.get("volumeMode"))
        return pvc_spec


def decimal_si(value: int) -> str:
    """A byte count as Go's ``resource.Quantity`` prints a DecimalSI value of scale 0."""
    exp = 0
    while value and value % 1000 == 0 and exp < 18:
        value //= 1000
        exp += 3
    return f"{value}{dict(zip(range(0, 21, 3), ('', 'k', 'M', 'G', 'T', 'P', 'E')))[exp]}"


def inflated_size(size: int, volume_mode: str | None) -> str:
    """The request CDI gives a ``spec.storage`` claim of ``size`` bytes
    (``InflateSizeWithOverhead``): Filesystem claims aligned up to 1MiB, then
    :data:`FILESYSTEM_OVERHEAD` more (CDIConfig's global default); Block claims as they are;
    both as a plain byte count."""
    if volume_mode == "Block":
        return decimal_si(size)
    aligned = -(-size // ALIGN) * ALIGN
    return decimal_si(math.ceil(float(aligned) * (1 + FILESYSTEM_OVERHEAD)))


def dv_ready(dv: Obj) -> bool:
    return condition_is(dv.get("status"), "Ready")
