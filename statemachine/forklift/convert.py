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

It reads no file and contacts no cluster itself: objects come from an :class:`ObjectSet`, ids are
resolved by an :class:`Inventory`.
"""
from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from statemachine.errors import DefinitionError, Problem
from statemachine.forklift.credentials import HostRef, KubeconfigText, is_host, kubeconfig_for
from statemachine.forklift.documents import InputObject
from statemachine.forklift.inventory import INVENTORY_KINDS, Inventory
from statemachine.forklift.objectset import ObjectSet
from statemachine.forklift.shape import (
    API_VERSION,
    HOOK_SPEC,
    MIGRATION_SPEC,
    NETWORK_MAP_SPEC,
    PLAN_SPEC,
    PROVIDER_SPEC,
    STORAGE_MAP_SPEC,
    VM,
    Arr,
    Obj,
    Shape,
)
from statemachine.yamlsource import DocPath

__all__ = ["Conversion", "Options", "convert"]

SUPPORTED_PROVIDER = "openshift"
HOOK_STEPS = ("PreHook", "PostHook")
IGNORED = "no smrun equivalent; ignored"

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


@dataclass(frozen=True)
class Options:
    """How the importer was asked to write the plan."""

    stem: str
    """File name stem of the output plan (``plan`` for ``plan.yaml``): side files are named
    ``<stem>-hook-<hook>.yml`` and ``<stem>-<provider>.kubeconfig``."""
    simulation_seed: str | None = None
    """Emit ``spec.simulation.seed`` (this path, as written in the plan) instead of clusters."""
    host: HostRef | None = None
    """The cluster of a ``host`` Provider (empty URL); ``None``: the default kubeconfig's
    current context at run time."""


@dataclass
class Conversion:
    """The result: the plan document, its side files and the warnings, in the order found."""

    plan: dict[str, Any]
    playbooks: dict[str, str] = field(default_factory=dict)
    """file name -> playbook text"""
    kubeconfigs: dict[str, KubeconfigText] = field(default_factory=dict)
    """file name -> kubeconfig (written with mode 0600)"""
    warnings: list[Problem] = field(default_factory=list)
    source: InputObject | None = None
    """The Forklift Plan converted."""


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


class _Converter:
    def __init__(self, plan: InputObject, objects: ObjectSet, inventory: Inventory,
                 options: Options) -> None:
        self.fk = plan
        self.objects = objects
        self.inventory = inventory
        self.options = options
        self.out = Conversion(plan={}, source=plan)
        self.hook_names: dict[tuple[str, str], str] = {}
        self.hooks: list[dict[str, Any]] = []

    # -- helpers --------------------------------------------------------------------------

    def warn(self, obj: InputObject, path: DocPath, message: str) -> None:
        self.out.warnings.append(obj.problem(path, message))

    def ref(self, raw: Mapping[str, Any], referrer: InputObject) -> tuple[str, str]:
        """(namespace, name) of an ObjectReference; no namespace: the referrer's."""
        return str(raw.get("namespace") or referrer.namespace), str(raw["name"])

    def unmapped(self, obj: InputObject, path: DocPath, data: Mapping[str, Any],
                 mapped: frozenset[str], known: Mapping[str, Any]) -> None:
        for key, value in data.items():
            if key in mapped or value is None:
                continue
            where = (*path, key)
            if key not in known:
                self.warn(obj, where, "not a Forklift v1beta1 field smrun knows; ignored")
            elif key == "targetPowerState" and value == "auto":
                continue  # "match the source's power state": what smrun's itineraries do
            elif key in _CRD_DEFAULTS and path == ("spec",) and value == _CRD_DEFAULTS[key]:
                self.warn(obj, where, f"{_json(value)} (the CRD's default): {IGNORED}")
            else:
                why = _WHY.get(key, "")
                self.warn(obj, where, f"{IGNORED} ({why})" if why else IGNORED)

    def unknown(self, obj: InputObject, path: DocPath, data: Any, shape: Shape) -> None:
        """Name every field below ``path`` that Forklift's CRDs do not have (a typo, or a newer
        Forklift): the checked shape lists them all."""
        if isinstance(shape, Arr) and isinstance(data, list):
            for i, item in enumerate(data):
                self.unknown(obj, (*path, i), item, shape.items)
        elif isinstance(shape, Obj) and isinstance(data, Mapping):
            for key, value in data.items():
                if key not in shape.fields:
                    self.warn(obj, (*path, key), "not a Forklift v1beta1 field smrun knows; ignored")
                else:
                    self.unknown(obj, (*path, key), value, shape.fields[key])

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
        # smrun's undo always removes the target objects it created when a VM fails (what
        # Forklift does with deleteVmOnFailMigration: true); keeping them has no equivalent.
        if data.get("deleteVmOnFailMigration") is False:
            self.warn(obj, (*path, "deleteVmOnFailMigration"),
                      "false: no smrun equivalent (smrun's undo always removes the target VM of a "
                      "failed migration); ignored")

    # -- the run object ------------------------------------------------------------------------

    def migration(self, out_spec: dict[str, Any], vms: list[dict[str, Any]]) -> None:
        """A Forklift Migration of this Plan carries the warm cutover times: the newest one's
        become ``spec.cutover`` and ``vms[].cutover``."""
        mine = [m for m in self.objects.of_kind(API_VERSION, "Migration")
                if self.ref(m.spec["plan"], m) == (self.fk.namespace, self.fk.name)]
        if not mine:
            return
        mine.sort(key=lambda m: str(m.metadata.get("creationTimestamp") or ""))
        for older in mine[:-1]:
            self.objects.mark_used(older)
            self.warn(older, (), "an older Migration of the Plan; ignored")
        run = mine[-1]
        self.objects.mark_used(run)
        spec = run.spec
        self.unknown(run, ("spec",), spec, MIGRATION_SPEC)
        warm = out_spec["type"] == "warm"
        for key in ("cancel", "resumeConversion"):
            if spec.get(key):
                self.warn(run, ("spec", key), IGNORED + (" (use `smrun cancel PLAN --vm NAME`)"
                                                         if key == "cancel" else ""))
        if spec.get("cutover"):
            if warm:
                out_spec["cutover"] = _timestamp(run, ("spec", "cutover"), spec["cutover"])
            else:
                self.warn(run, ("spec", "cutover"), f"ignored: only warm migrations have a cutover")
        by_id = {str(v["id"]): i for i, v in enumerate(self.fk.spec["vms"]) if v.get("id")}
        for k, item in enumerate(spec.get("vmCutover") or []):
            path: DocPath = ("spec", "vmCutover", k)
            if not warm:
                self.warn(run, path, "ignored: only warm migrations have a cutover")
                continue
            index = by_id.get(str(item["id"]))
            if index is None:
                found = self.inventory.resolve("VirtualMachine", str(item["id"]))
                index = next((i for i, v in enumerate(vms)
                              if found == (v["namespace"], v["name"])), None)
            if index is None:
                self.warn(run, (*path, "id"), "no VM of the Plan has this id; ignored")
                continue
            vms[index]["cutover"] = _timestamp(run, (*path, "cutover"), item["cutover"])

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

    # -- maps --------------------------------------------------------------------------------

    def maps(self, source: InputObject, target: InputObject) -> dict[str, Any]:
        refs = self.fk.spec["map"]
        out: dict[str, Any] = {}
        for field_name, kind, convert_entry in (
                ("storage", "StorageMap", self.storage_entry),
                ("network", "NetworkMap", self.network_entry)):
            ns, name = self.ref(refs[field_name], self.fk)
            obj = self.objects.need(API_VERSION, kind, ns, name, referrer=self.fk,
                                    path=("spec", "map", field_name))
            self.check_pair(obj, source, target)
            self.unknown(obj, ("spec",), obj.spec,
                         STORAGE_MAP_SPEC if kind == "StorageMap" else NETWORK_MAP_SPEC)
            entries = [convert_entry(obj, i, e) for i, e in enumerate(obj.spec.get("map") or [])]
            if field_name == "storage":
                self.unique_storage(obj, entries)
            if entries:
                out[field_name] = entries
        return out

    def check_pair(self, obj: InputObject, source: InputObject, target: InputObject) -> None:
        pair = obj.spec["provider"]
        for side, provider in (("source", source), ("destination", target)):
            ns, name = self.ref(pair[side], obj)
            if (ns, name) != (provider.namespace, provider.name):
                self.warn(obj, ("spec", "provider", side),
                          f"Provider {ns}/{name} is not the Plan's {side} Provider "
                          f"{provider.namespace}/{provider.name}; the map is used as the Plan names it")

    def resolve(self, obj: InputObject, path: DocPath, kind: str, uid: str) -> tuple[str, str]:
        found = self.inventory.resolve(kind, uid)
        if found is None:
            where = "the input" + (f" or {self.inventory.where}" if self.inventory.where else "")
            api_version = INVENTORY_KINDS[kind][0]
            raise obj.error(path, f"{uid}: no {kind} with this uid in {where}: cannot resolve the "
                                  f"id (give the name, or add the {kind} objects to the input, "
                                  f"e.g. `kubectl get {kind.lower()} -A -o yaml`, {api_version})")
        return found

    def storage_entry(self, obj: InputObject, i: int, entry: Mapping[str, Any]) -> dict[str, Any]:
        path: DocPath = ("spec", "map", i)
        src = entry["source"]
        name = src.get("name")
        if not name:
            if not src.get("id"):
                raise obj.error((*path, "source"), "Required value: name or id (a storage class)")
            name = self.resolve(obj, (*path, "source", "id"), "StorageClass", str(src["id"]))[1]
        for key in ("type", "namespace"):
            if src.get(key):
                self.warn(obj, (*path, "source", key), f"{IGNORED} (a storage class has no {key})")
        if entry.get("offloadPlugin"):
            self.warn(obj, (*path, "offloadPlugin"), IGNORED)
        dest = entry["destination"]
        out_dest = {"storageClass": dest["storageClass"]}
        for key in ("accessMode", "volumeMode"):
            if dest.get(key):
                out_dest[key] = dest[key]
        return {"source": str(name), "destination": out_dest}

    def unique_storage(self, obj: InputObject, entries: list[dict[str, Any]]) -> None:
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries):
            if entry["source"] in seen:
                raise obj.error(("spec", "map", i, "source"),
                                f"storage class {entry['source']!r} is mapped twice "
                                f"(also spec.map[{seen[entry['source']]}])")
            seen[entry["source"]] = i

    def network_entry(self, obj: InputObject, i: int, entry: Mapping[str, Any]) -> dict[str, Any]:
        path: DocPath = ("spec", "map", i)
        src, dest = entry["source"], entry["destination"]
        if src.get("vlan"):
            self.warn(obj, (*path, "source", "vlan"), IGNORED)
        source: dict[str, Any]
        src_type = src.get("type") or ""
        if src_type == "pod":
            source = {"type": "pod"}
        elif src_type not in ("", "multus"):
            raise obj.error((*path, "source", "type"), f"{src_type}: an openshift source network "
                                                       "is pod or multus")
        elif src.get("name"):
            source = {"type": "multus", "name": _qualified(src.get("namespace"), str(src["name"]))}
        elif src.get("id"):
            ns, name = self.resolve(obj, (*path, "source", "id"), "NetworkAttachmentDefinition",
                                    str(src["id"]))
            source = {"type": "multus", "name": _qualified(ns, name)}
        else:
            raise obj.error((*path, "source"), "Required value: type pod, or the name or id of a "
                                               "network attachment definition")
        kind = dest["type"]
        destination: dict[str, Any] = {"type": kind}
        if kind == "multus":
            if not dest.get("name"):
                raise obj.error((*path, "destination", "name"), "Required value (type multus)")
            destination["name"] = _qualified(dest.get("namespace"), str(dest["name"]))
        else:
            for key in ("name", "namespace"):
                if dest.get(key):
                    self.warn(obj, (*path, "destination", key), f"not used with type {kind}; ignored")
        return {"source": source, "destination": destination}

    # -- VMs and hooks -------------------------------------------------------------------------

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

    def vm_hook(self, vm_path: DocPath, j: int, binding: Mapping[str, Any]) -> dict[str, str]:
        path: DocPath = (*vm_path, "hooks", j)
        step = binding["step"]
        if step not in HOOK_STEPS:
            raise self.fk.error((*path, "step"), f'Unsupported value: "{step}": supported values: '
                                                 '"PreHook", "PostHook"')
        ns, name = self.ref(binding["hook"], self.fk)
        return {"step": step, "hook": self.hook((ns, name), path)}

    def hook(self, key: tuple[str, str], binding_path: DocPath) -> str:
        """The smrun name of the Hook ``key``, converting it the first time it is bound."""
        if key in self.hook_names:
            return self.hook_names[key]
        obj = self.objects.need(API_VERSION, "Hook", key[0], key[1], referrer=self.fk,
                                path=(*binding_path, "hook"))
        spec = obj.spec
        self.unknown(obj, ("spec",), spec, HOOK_SPEC)
        taken = set(self.hook_names.values())
        name = _label_for(obj.name, taken, key[0])
        if name != obj.name:
            self.warn(obj, ("metadata", "name"), f"the smrun hook is named {name!r} (a unique DNS label)")
        self.hook_names[key] = name
        if spec.get("aap"):
            if not spec.get("image"):
                raise obj.error(("spec", "aap"), "an Ansible Automation Platform job template: no "
                                                 "smrun equivalent (smrun runs hooks as a container "
                                                 "image)")
            self.warn(obj, ("spec", "aap"), IGNORED)
        if not spec.get("image"):
            raise obj.error(("spec", "image"), "Required value (the hook's container image)")
        hook: dict[str, Any] = {"name": name, "image": spec["image"]}
        playbook = spec.get("playbook")
        if playbook:
            try:
                text = base64.b64decode(str(playbook), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise obj.error(("spec", "playbook"), "not base64-encoded UTF-8 text") from None
            self.check_playbook(obj, text)
            file = f"{self.options.stem}-hook-{name}.yml"
            self.out.playbooks[file] = text
            hook["playbook"] = f"./{file}"
        account = spec.get("serviceAccount") or self.fk.spec.get("serviceAccount")
        if account:
            # Forklift's order: the Hook's account, else the Plan's (then the controller's).
            hook["serviceAccount"] = account
        deadline = spec.get("deadline")
        if isinstance(deadline, int) and deadline > 0:
            hook["deadline"] = deadline
        self.hooks.append(hook)
        return name


    @staticmethod
    def check_playbook(obj: InputObject, text: str) -> None:
        """The decoded playbook must be what an smrun plan accepts as one (YAML within the input
        limits, at most the size of a ConfigMap): said here, at the Hook, not later at the file
        the import wrote."""
        from statemachine import yamlsource
        from statemachine.errors import SchemaError
        from statemachine.plan import PLAYBOOK_BYTES

        try:
            yamlsource.load_all_text(text, "playbook", limit=PLAYBOOK_BYTES)
        except SchemaError as exc:
            problem = exc.problems[0] if exc.problems else None
            where = f" (line {problem.line})" if problem is not None and problem.line else ""
            why = problem.message if problem is not None else str(exc)
            raise obj.error(("spec", "playbook"), f"the decoded playbook{where}: {why}") from None


def _timestamp(obj: InputObject, path: DocPath, value: str) -> str:
    """``value`` if it is an RFC 3339 time with an offset (the CRD's ``date-time``), else an error
    at the Migration's field rather than later at the plan's."""
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise obj.error(path, f"{value!r} is not an RFC 3339 time such as 2026-12-01T02:00:00Z")
    return value


def _qualified(namespace: Any, name: str) -> str:
    """``namespace/name`` as KubeVirt's ``multus.networkName`` (just ``name`` without one)."""
    return f"{namespace}/{name}" if namespace and "/" not in name else name


def _label_for(name: str, taken: set[str], namespace: str) -> str:
    label = name if _LABEL.match(name) and len(name) <= 63 else \
        (re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-") or "hook")
    if label in taken:
        label = f"{namespace}-{label}"[:63].strip("-")
    n = 2
    base = label
    while label in taken:
        label = f"{base[:60]}-{n}"
        n += 1
    return label


def _json(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)
