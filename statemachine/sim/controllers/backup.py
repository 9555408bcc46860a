"""The simulated incremental-backup controller (warm-migration.md §1.2-1.4, §4.1-4.2; v1.9 model).

VirtualMachineBackup, one step per tick, reported through the ``Progressing`` condition reason:

1. ``Initializing`` (finalizer ``backup.kubevirt.io/vmbackup-protection`` added) until the
   prerequisites hold: tracker exists (tracker source), VM exists, its VMI is Running, the VM's
   ``status.changedBlockTracking.state`` is ``Enabled`` when reported, the ``pvcName`` PVC exists.
2. ``Initiated``: ``status.type`` = ``Incremental`` when the source is a tracker that already has a
   ``latestCheckpoint`` and ``forceFullBackup`` is not set, else ``Full``.
3. ``includedVolumes`` (PVC/DataVolume volumes of the VM) and ``checkpointName``
   ``<backup>-<YYYY-MM-DD_HH-MM-SS>`` (from the creation time) appear.
4. Pull mode: ``PreparingExport`` — a VirtualMachineExport named like the backup, owned by it,
   with the backup as source (``export.py``); then ``ExportReady`` once that export is Ready:
   ``includedVolumes[].dataEndpoint/mapEndpoint`` (external links) and ``endpointCert``.
   Push mode: completes on the next tick.
5. Deleting a pull backup (or its ``ttlDuration`` expiring): ``Aborting``, then completion: the
   tracker's ``status.latestCheckpoint`` = ``{name, creationTime, volumes}``, the export deleted,
   ``Complete=True``/``Progressing=False`` reason ``Completed``; a deleted backup then loses its
   finalizer and disappears.

Failures (``Failed=True``, ``Progressing=False``): ``SourceUnhealthy`` when the VMI stops during
the backup, ``DeletedDuringInit`` when deleted before it started, ``Failed`` with
``sim.smrun.io/fail: "true"``. A failed backup never advances the tracker.

Dirty bytes (what a delta-copy Job reports, ``job.py``): per volume, deterministic: a Full backup
is the whole PVC size; the n-th Incremental through a tracker is ``size >> (n + 2)`` (n = number
of completed backups of that tracker before it), so rounds shrink. Stored on the backup as the
annotation ``sim.smrun.io/dirty-bytes`` (JSON ``{volume: bytes}``).

What it does not do: the map/data HTTP endpoints, quiescing (``Quiesced`` is reported as skipped
or succeeded), checkpoint redefinition after restarts, one-backup-per-source admission.
"""
from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim.controllers.conditions import (
    annotations_of, get_condition, now, parse_quantity, parse_time, set_condition, wants_failure)
from statemachine.sim.controllers.export import parse_duration
from statemachine.sim.store import Obj

BACKUP = "VirtualMachineBackup"
TRACKER = "VirtualMachineBackupTracker"
FINALIZER = "backup.kubevirt.io/vmbackup-protection"
DIRTY = "sim.smrun.io/dirty-bytes"
COMPLETED_COUNT = "sim.smrun.io/completed-backups"
DEFAULT_PULL_TTL = _dt.timedelta(hours=2)


def backup_round(ctx: ClusterContext, ns: str, backup: str,
                 volume: str) -> tuple[int, str] | None:
    """(simulated dirty bytes of ``volume``, backup ``status.type``) while ``backup`` can be
    pulled (its export is Ready); ``None`` otherwise."""
    obj = ctx.store.try_get(BACKUP, ns, backup)
    export = ctx.store.try_get("VirtualMachineExport", ns, backup)
    if obj is None or ((export or {}).get("status") or {}).get("phase") != "Ready":
        return None
    try:
        table = json.loads(annotations_of(obj).get(DIRTY, "{}"))
    except ValueError:
        return None
    value = table.get(volume)
    if value is None:
        return None
    return int(value), str((obj.get("status") or {}).get("type", "Full"))


def _reason(status: dict[str, Any]) -> str:
    return str((get_condition(status, "Progressing") or {}).get("reason", ""))


def _progress(status: dict[str, Any], reason: str, message: str, value: str = "True") -> None:
    set_condition(status, "Progressing", value, reason, message, style="meta")


def _fail(status: dict[str, Any], reason: str, message: str) -> None:
    set_condition(status, "Failed", "True", reason, message, style="meta")
    _progress(status, reason, message, "False")


class BackupController(Controller):
    """Drives VirtualMachineBackups and updates their trackers (see module docstring)."""

    watches = (BACKUP,)

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        md = obj["metadata"]
        ns, name = md.get("namespace"), md["name"]
        status: dict[str, Any] = dict(obj.get("status") or {})
        done = get_condition(status, "Complete") or get_condition(status, "Failed")
        if done is not None:
            if md.get("deletionTimestamp"):
                ctx.store.remove_finalizer(BACKUP, ns, name, FINALIZER)
            return None
        if FINALIZER not in (md.get("finalizers") or []) and not md.get("deletionTimestamp"):
            ctx.store.add_finalizer(BACKUP, ns, name, FINALIZER)
            return True
        reason = _reason(status)
        spec = obj.get("spec") or {}
        pull = spec.get("mode") == "Pull"
        vm, tracker = self._sources(ctx, obj)
        if md.get("deletionTimestamp") and reason in ("", "Initializing"):
            _fail(status, "DeletedDuringInit", "Backup was deleted during initialization")
        elif wants_failure(obj):
            _fail(status, "Failed", "Backup has failed: simulated failure (sim.smrun.io/fail)")
        elif reason in ("", "Initializing"):
            problem = self._prerequisite(ctx, obj, vm, tracker)
            if problem is not None:
                _progress(status, "Initializing", problem)
            else:
                incremental = bool(tracker and (tracker.get("status") or {}).get(
                    "latestCheckpoint") and not spec.get("forceFullBackup"))
                status["type"] = "Incremental" if incremental else "Full"
                _progress(status, "Initiated", "Backup is in progress")
                self._record_dirty(ctx, obj, vm or {}, tracker, incremental)
        elif not self._vmi_running(ctx, vm):
            _fail(status, "SourceUnhealthy", "source VMI is not running")
        elif not status.get("includedVolumes"):
            status["includedVolumes"] = [{"volumeName": v} for v in self._volumes(vm or {})]
            created = parse_time(md.get("creationTimestamp")) or _dt.datetime.now(_dt.timezone.utc)
            status["checkpointName"] = f"{name}-{created.strftime('%Y-%m-%d_%H-%M-%S')}"
            set_condition(status, "Quiesced", "False" if spec.get("skipQuiesce") else "True",
                          "QuiesceSkipped" if spec.get("skipQuiesce") else "QuiesceSucceeded",
                          "", style="meta")
        elif not pull or reason == "Aborting":
            self._complete(ctx, obj, status, tracker)
        elif md.get("deletionTimestamp") or self._ttl_expired(obj):
            message = "Backup is aborting" if md.get("deletionTimestamp") else (
                "pull mode backup TTL has expired: Backup is aborting")
            _progress(status, "Aborting", message)
        elif reason == "Initiated":
            self._ensure_export(ctx, obj)
            status.pop("endpointCert", None)
            _progress(status, "PreparingExport", "Backup export is being initialized")
        else:
            self._export_ready(ctx, obj, status)
        if status != (obj.get("status") or {}):
            ctx.store.update_status(BACKUP, ns, name, status)
        if (get_condition(status, "Complete") or get_condition(status, "Failed")) and md.get(
                "deletionTimestamp"):
            self._drop_export(ctx, obj)
            return True
        return True

    # ------------------------------------------------------------------ pieces
    def _sources(self, ctx: ClusterContext, backup: Obj) -> tuple[Obj | None, Obj | None]:
        ns = backup["metadata"].get("namespace")
        src = (backup.get("spec") or {}).get("source") or {}
        tracker = None
        vm_name = str(src.get("name", ""))
        if src.get("kind") == TRACKER:
            tracker = ctx.store.try_get(TRACKER, ns, vm_name)
            vm_name = str((((tracker or {}).get("spec") or {}).get("source") or {}).get("name", ""))
        return ctx.store.try_get("VirtualMachine", ns, vm_name), tracker

    def _vmi_running(self, ctx: ClusterContext, vm: Obj | None) -> bool:
        if vm is None:
            return False
        vmi = ctx.store.try_get("VirtualMachineInstance", vm["metadata"].get("namespace"),
                                vm["metadata"]["name"])
        return ((vmi or {}).get("status") or {}).get("phase") == "Running"

    def _prerequisite(self, ctx: ClusterContext, backup: Obj, vm: Obj | None,
                      tracker: Obj | None) -> str | None:
        ns = backup["metadata"].get("namespace")
        spec = backup.get("spec") or {}
        src = spec.get("source") or {}
        if src.get("kind") == TRACKER and tracker is None:
            return f"BackupTracker {src.get('name')} does not exist"
        if vm is None:
            return f"VM {ns}/{src.get('name')} doesnt exist"
        vm_name = vm["metadata"]["name"]
        if not self._vmi_running(ctx, vm):
            return f"vm {vm_name} is not running, cannot do backup"
        cbt = ((vm.get("status") or {}).get("changedBlockTracking") or {}).get("state")
        if cbt is not None and cbt != "Enabled":
            return f"vm {vm_name} has no ChangedBlockTracking enabled"
        pvc = spec.get("pvcName")
        if pvc and ctx.store.try_get("PersistentVolumeClaim", ns, str(pvc)) is None:
            return f"PVC {ns}/{pvc} doesnt exist"
        return None

    @staticmethod
    def _volumes(vm: Obj) -> list[str]:
        spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        return [str(v["name"]) for v in spec.get("volumes") or []
                if "persistentVolumeClaim" in v or "dataVolume" in v]

    def _record_dirty(self, ctx: ClusterContext, backup: Obj, vm: Obj, tracker: Obj | None,
                      incremental: bool) -> None:
        ns = backup["metadata"].get("namespace")
        spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        rounds = int(annotations_of(tracker or {}).get(COMPLETED_COUNT, "0") or 0)
        table = {}
        for vol in spec.get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName") or (
                vol.get("dataVolume") or {}).get("name")
            if not claim:
                continue
            pvc = ctx.store.try_get("PersistentVolumeClaim", ns, str(claim)) or {}
            size = parse_quantity((((pvc.get("spec") or {}).get("resources") or {})
                                   .get("requests") or {}).get("storage")) or (1 << 30)
            table[str(vol["name"])] = size >> (rounds + 2) if incremental else size
        ctx.store.mutate(BACKUP, ns, backup["metadata"]["name"], lambda o: o["metadata"]
                         .setdefault("annotations", {}).update({DIRTY: json.dumps(table)}))

    def _ttl_expired(self, backup: Obj) -> bool:
        created = parse_time(backup["metadata"].get("creationTimestamp"))
        ttl = parse_duration((backup.get("spec") or {}).get("ttlDuration")) or DEFAULT_PULL_TTL
        return created is not None and _dt.datetime.now(_dt.timezone.utc) >= created + ttl

    def _ensure_export(self, ctx: ClusterContext, backup: Obj) -> None:
        md = backup["metadata"]
        if ctx.store.try_get("VirtualMachineExport", md.get("namespace"), md["name"]) is not None:
            return
        spec = backup.get("spec") or {}
        body: dict[str, Any] = {
            "metadata": {"name": md["name"], "namespace": md.get("namespace"),
                         "ownerReferences": [{"apiVersion": backup["apiVersion"], "kind": BACKUP,
                                              "name": md["name"], "uid": md["uid"],
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"source": {"apiGroup": "backup.kubevirt.io", "kind": BACKUP,
                                "name": md["name"]},
                     "tokenSecretRef": spec.get("tokenSecretRef")}}
        if spec.get("ttlDuration"):
            body["spec"]["ttlDuration"] = spec["ttlDuration"]
        ctx.store.create("VirtualMachineExport", body)

    def _export_ready(self, ctx: ClusterContext, backup: Obj, status: dict[str, Any]) -> None:
        md = backup["metadata"]
        export = ctx.store.try_get("VirtualMachineExport", md.get("namespace"), md["name"])
        if export is None:
            self._ensure_export(ctx, backup)  # deleted during the backup: recreate it
            _progress(status, "PreparingExport", "Backup export is being initialized")
            return
        estatus = export.get("status") or {}
        status["exportUID"] = export["metadata"]["uid"]
        if estatus.get("phase") != "Ready":
            return
        ext = (estatus.get("links") or {}).get("external") or {}
        endpoints = {b["name"]: {e["endpoint"]: e["url"] for e in b.get("endpoints") or []}
                     for b in ext.get("backups") or []}
        status["includedVolumes"] = [
            {"volumeName": v["volumeName"],
             "dataEndpoint": endpoints.get(v["volumeName"], {}).get("data", ""),
             "mapEndpoint": endpoints.get(v["volumeName"], {}).get("map", "")}
            for v in status.get("includedVolumes") or []]
        status["endpointCert"] = ext.get("cert", "")
        _progress(status, "ExportReady", "Backup export is ready to pull")

    def _complete(self, ctx: ClusterContext, backup: Obj, status: dict[str, Any],
                  tracker: Obj | None) -> None:
        if tracker is not None:
            tmd = tracker["metadata"]
            checkpoint = {"name": status.get("checkpointName", ""),
                          "creationTime": backup["metadata"].get("creationTimestamp", now()),
                          "volumes": [{"volumeName": v["volumeName"]}
                                      for v in status.get("includedVolumes") or []]}
            tstatus = dict(tracker.get("status") or {})
            tstatus["latestCheckpoint"] = checkpoint
            ctx.store.update_status(TRACKER, tmd.get("namespace"), tmd["name"], tstatus)
            count = int(annotations_of(tracker).get(COMPLETED_COUNT, "0") or 0) + 1
            ctx.store.mutate(TRACKER, tmd.get("namespace"), tmd["name"], lambda o: o["metadata"]
                             .setdefault("annotations", {}).update({COMPLETED_COUNT: str(count)}))
        self._drop_export(ctx, backup)
        set_condition(status, "Complete", "True", "Completed",
                      "Successfully completed VirtualMachineBackup", style="meta")
        _progress(status, "Completed", "Successfully completed VirtualMachineBackup", "False")

    def _drop_export(self, ctx: ClusterContext, backup: Obj) -> None:
        md = backup["metadata"]
        if ctx.store.try_get("VirtualMachineExport", md.get("namespace"), md["name"]) is not None:
            ctx.store.delete("VirtualMachineExport", md.get("namespace"), md["name"])
