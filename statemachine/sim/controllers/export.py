"""The simulated VirtualMachineExport controller (kubevirt-lifecycle.md §5, warm-migration.md §4.3).

Per tick:

1. New export: ``phase: Pending``, ``Ready=False reason=Initializing``, ``ttlExpirationTime`` =
   creation + ``spec.ttlDuration`` (default 2h), ``serviceName: virt-export-<name>``.
2. Source check (the first failing one holds the export in ``Pending`` with that reason):
   VirtualMachine source: ``VMNotFound``; no PVC/DV volumes → phase ``Skipped``
   (``VMNoVolumes``); a VMI that is not final → ``InUse`` ("Virtual Machine ns/n is running": the VM
   must be stopped); PVCs missing or not Bound → ``VolumesNotPopulated``.
   PersistentVolumeClaim source: ``PVCNotFound`` / ``InUse``. VirtualMachineBackup source: the
   backup must be ``Progressing`` with ``includedVolumes``.
   Then the token Secret ``export-token-<name>`` is created (20 random alphanumerics in
   ``data.token``, owned by the export) unless ``spec.tokenSecretRef`` names one.
3. ``Ready=False reason=PodPending`` (the exporter pod starting).
4. ``phase: Ready``, ``Ready=True reason=PodReady`` (``VirtualMachineBackupReady`` for backups),
   ``status.links.internal`` and ``status.links.external`` (volumes named by PVC with ``raw`` and
   ``gzip`` formats, manifests, or ``backups`` map/data endpoints) and ``tokenSecretRef``.

A Ready export whose VM starts again goes back to ``Pending`` (``InUse``) and loses its links; an
export past its ``ttlExpirationTime`` is deleted (its token Secret goes with it by ownerRef).

What it does not do: serve the URLs (``import_source.py`` answers for CDI), certificate rotation,
snapshot sources, OCI manifests.
"""
from __future__ import annotations

import base64
import datetime as _dt
import re
import secrets
import string
from typing import Any

from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim import addresses
from statemachine.sim.controllers.conditions import (
    condition_is, get_condition, parse_time, set_condition)
from statemachine.sim.controllers.vmi import FINAL_PHASES, claim_names
from statemachine.sim.store import Obj

EXPORT = "VirtualMachineExport"
DEFAULT_TTL = _dt.timedelta(hours=2)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")


def parse_duration(text: str | None) -> _dt.timedelta | None:
    """A Go duration such as ``2h``, ``90m``, ``1h30m`` or ``45s``; ``None`` if unreadable."""
    if not text:
        return None
    parts = _DURATION.findall(str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return _dt.timedelta(seconds=sum(float(n) * scale[u] for n, u in parts))


def _stamp(when: _dt.datetime) -> str:
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def links(cluster: str, ns: str, name: str, *, volumes: list[str] | None = None,
          backups: list[str] | None = None) -> dict[str, Any]:
    """``status.links`` for an export of ``volumes`` (PVC names) or backup ``backups`` volumes."""
    out: dict[str, Any] = {}
    bases = {"internal": f"https://virt-export-{name}.{ns}.svc",
             "external": (f"https://{addresses.export_host(cluster)}/api/export.kubevirt.io/v1/"
                          f"namespaces/{ns}/virtualmachineexports/{name}")}
    for where, base in bases.items():
        part: dict[str, Any] = {"cert": addresses.export_ca_pem(cluster)}
        if backups is not None:
            part["backups"] = [{"name": v, "endpoints": [
                {"endpoint": "map", "url": f"{base}/exports/{v}/map"},
                {"endpoint": "data", "url": f"{base}/exports/{v}/data"}]} for v in backups]
        else:
            part["volumes"] = [{"name": v, "formats": [
                {"format": "raw", "url": f"{base}/volumes/{v}/disk.img"},
                {"format": "gzip", "url": f"{base}/volumes/{v}/disk.img.gz"}]}
                for v in volumes or []]
            prefix = "internal" if where == "internal" else "external"
            part["manifests"] = [
                {"type": "all", "url": f"{base}/{prefix}/manifests/all"},
                {"type": "auth-header-secret", "url": f"{base}/{prefix}/manifests/secret"}]
        out[where] = part
    return out


class ExportController(Controller):
    """Drives VirtualMachineExports (see module docstring)."""

    watches = (EXPORT,)

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        md = obj["metadata"]
        ns, name = md.get("namespace") or "default", md["name"]
        status: dict[str, Any] = dict(obj.get("status") or {})
        if md.get("deletionTimestamp") or status.get("phase") in ("Skipped", "Terminated"):
            return None
        if not status.get("phase"):
            created = parse_time(md.get("creationTimestamp")) or _dt.datetime.now(_dt.timezone.utc)
            ttl = parse_duration((obj.get("spec") or {}).get("ttlDuration")) or DEFAULT_TTL
            status.update({"phase": "Pending", "ttlExpirationTime": _stamp(created + ttl),
                           "serviceName": f"virt-export-{name}"})
            set_condition(status, "Ready", "False", "Initializing")
            ctx.store.update_status(EXPORT, ns, name, status)
            return True
        expires = parse_time(status.get("ttlExpirationTime"))
        if expires is not None and _dt.datetime.now(_dt.timezone.utc) >= expires:
            ctx.store.delete(EXPORT, ns, name)
            return None
        problem, volumes, is_backup = self._source(ctx, obj)
        if problem is not None:
            reason, message, phase = problem
            status["phase"] = phase
            status.pop("links", None)
            set_condition(status, "Ready", "False", reason, message)
        elif status.get("phase") != "Ready":
            ready = get_condition(status, "Ready") or {}
            if ready.get("reason") != "PodPending":
                status["tokenSecretRef"] = self._token_secret(ctx, obj)
                set_condition(status, "Ready", "False", "PodPending")
            else:
                status["phase"] = "Ready"
                set_condition(status, "Ready", "True",
                              "VirtualMachineBackupReady" if is_backup else "PodReady",
                              "Backup export is ready to pull" if is_backup else "")
                status["links"] = links(ctx.name, ns, name, backups=volumes if is_backup else None,
                                        volumes=None if is_backup else volumes)
        if status != (obj.get("status") or {}):
            ctx.store.update_status(EXPORT, ns, name, status)
        return True

    def _source(self, ctx: ClusterContext, export: Obj
                ) -> tuple[tuple[str, str, str] | None, list[str], bool]:
        """(problem (reason, message, phase) or None, volume names, is a backup source)."""
        ns = export["metadata"].get("namespace") or "default"
        src = (export.get("spec") or {}).get("source") or {}
        kind, name = src.get("kind", ""), str(src.get("name", ""))
        if kind == "VirtualMachine":
            vm = ctx.store.try_get("VirtualMachine", ns, name)
            if vm is None:
                return ("VMNotFound", f"Virtual Machine {ns}/{name} not found", "Pending"), [], False
            claims = claim_names(((vm.get("spec") or {}).get("template") or {}).get("spec") or {})
            if not claims:
                return ("VMNoVolumes", f"Virtual Machine {ns}/{name} has no volumes to export",
                        "Skipped"), [], False
            vmi = ctx.store.try_get("VirtualMachineInstance", ns, name)
            if vmi is not None and (vmi.get("status") or {}).get("phase") not in FINAL_PHASES:
                return ("InUse", f"Virtual Machine {ns}/{name} is running", "Pending"), [], False
            return self._claims_ready(ctx, ns, claims), claims, False
        if kind == "PersistentVolumeClaim":
            if ctx.store.try_get("PersistentVolumeClaim", ns, name) is None:
                return ("PVCNotFound", f"pvc {ns}/{name} not found", "Pending"), [], False
            for vmi in ctx.store.list("VirtualMachineInstance", ns):
                if name in claim_names(vmi.get("spec") or {}) and (
                        vmi.get("status") or {}).get("phase") not in FINAL_PHASES:
                    return ("InUse", f"pvc {ns}/{name} is in use", "Pending"), [], False
            return self._claims_ready(ctx, ns, [name]), [name], False
        if kind == "VirtualMachineBackup":
            backup = ctx.store.try_get("VirtualMachineBackup", ns, name)
            status = (backup or {}).get("status") or {}
            volumes = [str(v.get("volumeName")) for v in status.get("includedVolumes") or []]
            if backup is None or not condition_is(status, "Progressing") or not volumes:
                return ("VirtualMachineBackupReady", "Backup is not in progress", "Pending"), [], True
            return None, volumes, True
        return ("SourceNotFound", f"unsupported export source kind {kind!r}", "Pending"), [], False

    def _claims_ready(self, ctx: ClusterContext, ns: str,
                      claims: list[str]) -> tuple[str, str, str] | None:
        for claim in claims:
            pvc = ctx.store.try_get("PersistentVolumeClaim", ns, claim)
            if pvc is None or (pvc.get("status") or {}).get("phase") != "Bound":
                return "VolumesNotPopulated", f"pvc {ns}/{claim} is not populated", "Pending"
        return None

    def _token_secret(self, ctx: ClusterContext, export: Obj) -> str:
        md = export["metadata"]
        given = (export.get("spec") or {}).get("tokenSecretRef")
        if given:
            return str(given)
        name = f"export-token-{md['name']}"[:63]
        if ctx.store.try_get("Secret", md.get("namespace"), name) is None:
            token = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(20))
            ctx.store.create("Secret", {
                "metadata": {"name": name, "namespace": md.get("namespace"),
                             "ownerReferences": [{"apiVersion": export["apiVersion"],
                                                  "kind": EXPORT, "name": md["name"],
                                                  "uid": md["uid"], "controller": True,
                                                  "blockOwnerDeletion": True}]},
                "type": "Opaque", "data": {"token": _b64(token)}})
        return name


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
