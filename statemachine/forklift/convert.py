"""Forklift Plan (with its Providers, maps, Hooks and Secrets) -> an smrun plan document.

:func:`convert` returns the plan as a mapping, the side files it refers to (hook playbooks,
kubeconfigs) and one warning per Forklift field that has no smrun equivalent. The mapping table
is docs/forklift.md; the decisions that table cannot show are recorded here:

- Migration type: ``spec.type`` wins over the legacy ``spec.warm`` (Forklift's own ``IsWarm()``
  still ORs the two; a plan with ``type: live`` and ``warm: true`` is live here, with a warning);
  neither means cold. ``type: conversion`` has no equivalent and is refused.
- Every field of Forklift's CRDs that is not mapped is named in a warning, including fields set
  to the CRD's default (the API server adds those to every stored Plan): a warning says so.
  Server bookkeeping (``metadata.uid``, ``resourceVersion``, ``managedFields``...) and ``status``
  are not configuration and are not reported.
- A Hook, Provider, map or Secret the Plan needs and the input lacks is an error, never a guess;
  so is a VM, network or storage class given only by an id that cannot be resolved.
- Only ``openshift`` Providers (KubeVirt clusters) can be imported; any other type is refused
  with one line naming it.

The maps, hooks and Migration are converted by ``maps``, ``hooks`` and ``migrations`` (classes
this module's converter is built from, over the shared ``scope``). It reads no file and contacts
no cluster itself: objects come from an :class:`ObjectSet`, ids are resolved by an
:class:`Inventory`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from statemachine.errors import DefinitionError, Problem
from statemachine.forklift.credentials import is_host, kubeconfig_for
from statemachine.forklift.documents import InputObject
from statemachine.forklift.hooks import Hooks
from statemachine.forklift.inventory import Inventory
from statemachine.forklift.maps import Maps
from statemachine.forklift.migrations import Migrations
from statemachine.forklift.objectset import ObjectSet
from statemachine.forklift.scope import IGNORED, UNKNOWN, Conversion, Options
from statemachine.forklift.shape import API_VERSION, PLAN_SPEC, PROVIDER_SPEC, VM
from statemachine.yamlsource import DocPath

__all__ = ["Conversion", "Options", "convert"]

SUPPORTED_PROVIDER = "openshift"

_PLAN_MAPPED = frozenset({"type", "warm", "description", "provider", "targetNamespace", "map",
                          "vms", "serviceAccount", "deleteVmOnFailMigration"})
_VM_MAPPED = frozenset({"id", "name", "namespace", "targetName", "hooks", "deleteVmOnFailMigration"})
_CRD_DEFAULTS: Mapping[str, Any] = {
    "deleteVmOnFailMigration": True, "migrateSharedDisks": True, "preserveStaticIPs": True,
    "runPreflightInspection": True, "skipGuestConversion": False, "useCompatibilityMode": True,
}
"""Plan.spec fields the CRD defaults (so every Plan read from a cluster has them)."""
_WHY: Mapping[str, str] = {
    "targetPowerState": "the target VM keeps the source's run strategy",
    "archived": "smrun keeps no plan object to archive",
    "targetLabels": "the target VM keeps the source's labels",
    "targetNodeSelector": "the target VM keeps the source's scheduling",
    "targetAffinity": "the target VM keeps the source's scheduling",
    "transferNetwork": "",
}
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")




def select_plan(objects: ObjectSet, name: str | None, namespace: str | None) -> InputObject:
    """The Plan to import: the one named, or the only one given."""
    plans = [p for p in objects.of_kind(API_VERSION, "Plan")
             if (name is None or p.name == name) and (namespace is None or p.namespace == namespace)]
    if not plans:
        what = f"Plan {namespace + '/' if namespace else ''}{name}" if name else "Plan"
        raise _usage(f"no {API_VERSION} {what} in {objects.where}")
    if len(plans) > 1:
        names = ", ".join(f"{p.namespace}/{p.name}" for p in plans)
        raise _usage(f"{len(plans)} Plans in {objects.where} ({names}): choose one with --plan NAME "
                     "(and --namespace NS)")
    objects.mark_used(plans[0])
    return plans[0]


def _usage(message: str) -> DefinitionError:
    problem = Problem("smrun import forklift", "", message)
    return DefinitionError(str(problem), [problem])


def convert(plan: InputObject, objects: ObjectSet, inventory: Inventory, options: Options) -> Conversion:
    """The smrun plan for the Forklift ``plan``. Raises ``DefinitionError`` (exit 2)."""
    return _Converter(plan, objects, inventory, options).run()


class _Converter(Maps, Hooks, Migrations):
    """The Plan itself: type, providers and clusters, target namespace, VMs; the maps, hooks and
    cutover through the classes it is built from."""


    def unmapped(self, obj: InputObject, path: DocPath, data: Mapping[str, Any],
                 mapped: frozenset[str], known: Mapping[str, Any]) -> None:
        for key, value in data.items():
            if key in mapped or value is None:
                continue
            where = (*path, key)
            if key not in known:
                self.warn(obj, where, UNKNOWN)
            elif key == "targetPowerState" and value == "auto":
                continue  # "match the source's power state": what smrun's itineraries do
            elif key in _CRD_DEFAULTS and path == ("spec",) and value == _CRD_DEFAULTS[key]:
                self.warn(obj, where, f"{_json(value)} (the CRD's default): {IGNORED}")
            else:
                why = _WHY.get(key, "")
                self.warn(obj, where, f"{IGNORED} ({why})" if why else IGNORED)


    # -- the plan ------------------------------------------------------------------------------

    def run(self) -> Conversion:
        spec = self.fk.spec
        self.unmapped(self.fk, ("spec",), spec, _PLAN_MAPPED, PLAN_SPEC.fields)
        for key in ("provider", "map", "transferNetwork"):
            self.unknown(self.fk, ("spec", key), spec.get(key), PLAN_SPEC.fields[key])
        out_spec: dict[str, Any] = {"type": self.migration_type()}
        source_provider, target_provider = self.providers()
        out_spec.update(self.clusters(source_provider, target_provider))
        out_spec["targetNamespace"] = self.label(str(spec["targetNamespace"]), ("spec", "targetNamespace"))
        mapping = self.maps(source_provider, target_provider)
        if mapping:
            out_spec["map"] = mapping
        vms = self.vms()
        if self.hooks:
            out_spec["hooks"] = self.hooks
        self.delete_on_failure(self.fk, ("spec",), spec)
        if spec.get("serviceAccount"):
            # Forklift runs its migration pods and (without their own) its hooks with it; smrun
            # has a service account for hooks only.
            self.warn(self.fk, ("spec", "serviceAccount"),
                      "used for the hooks that have none of their own; for other pods "
                      f"{IGNORED}" if self.hooks else f"{IGNORED} (smrun uses it for hooks only, "
                                                      "and this plan has none)")
        self.migration(out_spec, vms)
        out_spec["vms"] = vms
        self.out.plan = {"apiVersion": "smrun.io/v1alpha1", "kind": "Plan",
                         "metadata": self.metadata(), "spec": out_spec}
        return self.out

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.label(self.fk.name, ("metadata", "name"))}
        if self.fk.spec.get("description"):
            meta["description"] = str(self.fk.spec["description"])
        labels = self.fk.metadata.get("labels")
        if labels:
            meta["labels"] = dict(labels)
        annotations = {k: v for k, v in (self.fk.metadata.get("annotations") or {}).items()
                       if not k.startswith("kubectl.kubernetes.io/")}
        if annotations:
            meta["annotations"] = annotations
        return meta

    def label(self, name: str, path: DocPath) -> str:
        """``name`` as a DNS label (smrun plan and hook names, namespaces), with a warning if
        it had to change."""
        if _LABEL.match(name) and len(name) <= 63:
            return name
        fixed = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-") or "imported"
        self.warn(self.fk, path, f"{name!r} is not a DNS label; written as {fixed!r}")
        return fixed

    def migration_type(self) -> str:
        spec = self.fk.spec
        kind = spec.get("type")
        if kind == "conversion":
            raise self.fk.error(("spec", "type"), "conversion: no smrun equivalent (smrun moves "
                                                  "VMs between KubeVirt clusters; it converts no guests)")
        if kind:
            if spec.get("warm") and kind != "warm":
                self.warn(self.fk, ("spec", "warm"), f"ignored: spec.type {kind!r} takes precedence "
                                                     "(Forklift's IsWarm() would also treat this plan as warm)")
            return str(kind)
        return "warm" if spec.get("warm") else "cold"

    def delete_on_failure(self, obj: InputObject, path: DocPath, data: Mapping[str, Any]) -> None:
        # smrun's undo removes the target objects it created when a VM fails (what Forklift does
        # with deleteVmOnFailMigration: true), unless KubeVirt had already handed the VM over;
        # keeping them for troubleshooting has no equivalent.
        if data.get("deleteVmOnFailMigration") is False:
            self.warn(obj, (*path, "deleteVmOnFailMigration"),
                      "false: no smrun equivalent (smrun's undo removes the target VM of a failed "
                      "migration); ignored")


    # -- providers and credentials -----------------------------------------------------------

    def providers(self) -> tuple[InputObject, InputObject]:
        pair = self.fk.spec["provider"]
        found = []
        for side in ("source", "destination"):
            ns, name = self.ref(pair[side], self.fk)
            provider = self.objects.need("forklift.konveyor.io/v1beta1", "Provider", ns, name,
                                         referrer=self.fk, path=("spec", "provider", side))
            kind = str(provider.spec.get("type"))
            if kind != SUPPORTED_PROVIDER:
                raise provider.error(("spec", "type"), f"{kind}: unsupported provider type (smrun "
                                     "imports only openshift providers, i.e. KubeVirt clusters)")
            for key in sorted(provider.spec.get("settings") or {}):
                self.warn(provider, ("spec", "settings", key), IGNORED)
            self.unknown(provider, ("spec",), provider.spec, PROVIDER_SPEC)
            found.append(provider)
        return found[0], found[1]

    def clusters(self, source: InputObject, target: InputObject) -> dict[str, Any]:
        if self.options.simulation_seed is not None:
            for provider in (source, target) if source is not target else (source,):
                secret = provider.spec.get("secret") or {}
                if not is_host(provider) and secret.get("name"):
                    self.objects.find("v1", "Secret", *self.ref(secret, provider))  # seen, not unused
                self.warn(provider, ("spec",), "url and secret not used: the plan runs on simulated "
                                               "clusters (--simulation)")
            return {"simulation": {"seed": self.options.simulation_seed}}
        return {"source": self.cluster_ref(source), "target": self.cluster_ref(target)}

    def cluster_ref(self, provider: InputObject) -> dict[str, Any]:
        if is_host(provider):
            host = self.options.host
            if host is None or host.context is None:
                self.warn(provider, ("spec", "url"), "empty (the host cluster): the plan uses the "
                                                     "current context of the default kubeconfig")
                return {}
            if host.guessed:
                where = host.kubeconfig or "the default kubeconfig"
                self.warn(provider, ("spec", "url"), f"empty (the host cluster): the plan uses context "
                                                     f"{host.context!r}, the current context of {where} "
                                                     "(--host-context to choose another)")
            ref: dict[str, Any] = {"context": host.context}
            if host.kubeconfig is not None:
                ref = {"kubeconfig": str(host.kubeconfig), **ref}
            return ref
        raw = provider.spec["secret"]
        if not raw.get("name"):
            raise provider.error(("spec", "secret", "name"), "Required value (a remote openshift "
                                                             "provider needs its token Secret)")
        ns, name = self.ref(raw, provider)
        secret = self.objects.need("v1", "Secret", ns, name, referrer=provider, path=("spec", "secret"))
        config = kubeconfig_for(provider, secret)
        file = f"{self.options.stem}-{provider.name}.kubeconfig"
        self.out.kubeconfigs[file] = config
        return {"kubeconfig": f"./{file}", "context": config.context}




    # -- VMs -------------------------------------------------------------------------

    def vms(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: dict[tuple[str, str], int] = {}
        for i, vm in enumerate(self.fk.spec["vms"]):
            path: DocPath = ("spec", "vms", i)
            self.unmapped(self.fk, path, vm, _VM_MAPPED, VM.fields)
            self.unknown(self.fk, (*path, "hooks"), vm.get("hooks"), VM.fields["hooks"])
            self.delete_on_failure(self.fk, path, vm)
            name, namespace = vm.get("name"), vm.get("namespace")
            if not name and not vm.get("id"):
                raise self.fk.error(path, "Required value: name and namespace, or id")
            if not name:
                namespace, name = self.resolve(self.fk, (*path, "id"), "VirtualMachine", str(vm["id"]))
            elif not namespace:
                raise self.fk.error((*path, "namespace"), "Required value (an openshift source VM is "
                                                          "named by namespace and name)")
            key = (str(namespace), str(name))
            if key in seen:
                raise self.fk.error(path, f"VM {namespace}/{name} is listed twice (also "
                                          f"spec.vms[{seen[key]}])")
            seen[key] = i
            entry: dict[str, Any] = {"name": str(name), "namespace": str(namespace)}
            if vm.get("targetName"):
                entry["targetName"] = vm["targetName"]
            hooks = [self.vm_hook(path, j, h) for j, h in enumerate(vm.get("hooks") or [])]
            if hooks:
                entry["hooks"] = hooks
            out.append(entry)
        if not out:
            raise self.fk.error(("spec", "vms"), "no VMs: an smrun plan needs at least one")
        return out









def _json(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)
