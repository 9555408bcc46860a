"""The state one Forklift-to-smrun conversion shares, and its helpers.

:class:`Scope` holds the Plan being converted, where the other objects come from
(:class:`ObjectSet`), how ids are resolved (:class:`Inventory`), the options, and the result
being built (:class:`Conversion`): its plan, side files and warnings. The conversion itself is
split by Forklift object over ``maps``, ``hooks``, ``migrations`` and ``convert``, each a class
built on this one.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from statemachine.errors import Problem
from statemachine.forklift.credentials import HostRef, KubeconfigText
from statemachine.forklift.documents import InputObject
from statemachine.forklift.inventory import INVENTORY_KINDS, Inventory
from statemachine.forklift.objectset import ObjectSet
from statemachine.forklift.shape import Arr, Obj, Shape
from statemachine.yamlsource import DocPath

__all__ = ["IGNORED", "Conversion", "Options", "Scope"]

IGNORED = "no smrun equivalent; ignored"
UNKNOWN = "not a Forklift v1beta1 field smrun knows; ignored"


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


class Scope:
    """One conversion's inputs, result and shared helpers."""

    def __init__(self, plan: InputObject, objects: ObjectSet, inventory: Inventory,
                 options: Options) -> None:
        self.fk = plan
        self.objects = objects
        self.inventory = inventory
        self.options = options
        self.out = Conversion(plan={}, source=plan)
        self.hook_names: dict[tuple[str, str], str] = {}
        """(namespace, name) of a converted Hook -> its smrun name"""
        self.hooks: list[dict[str, Any]] = []
        """The plan's ``spec.hooks``, in the order the VMs first use them."""

    def warn(self, obj: InputObject, path: DocPath, message: str) -> None:
        self.out.warnings.append(obj.problem(path, message))

    def ref(self, raw: Mapping[str, Any], referrer: InputObject) -> tuple[str, str]:
        """(namespace, name) of an ObjectReference; no namespace: the referrer's."""
        return str(raw.get("namespace") or referrer.namespace), str(raw["name"])

    def unknown(self, obj: InputObject, path: DocPath, data: Any, shape: Shape) -> None:
        """Name every field below ``path`` that Forklift's CRDs do not have (a typo, or a newer
        Forklift): the checked shape lists them all."""
        if isinstance(shape, Arr) and isinstance(data, list):
            for i, item in enumerate(data):
                self.unknown(obj, (*path, i), item, shape.items)
        elif isinstance(shape, Obj) and isinstance(data, Mapping):
            for key, value in data.items():
                if key not in shape.fields:
                    self.warn(obj, (*path, key), UNKNOWN)
                else:
                    self.unknown(obj, (*path, key), value, shape.fields[key])

    def resolve(self, obj: InputObject, path: DocPath, kind: str, uid: str) -> tuple[str, str]:
        """(namespace, name) of the ``kind`` whose uid is ``uid`` (a Forklift id); an error at
        ``obj``'s ``path`` that says where it looked when there is none."""
        found = self.inventory.resolve(kind, uid)
        if found is None:
            where = "the input" + (f" or {self.inventory.where}" if self.inventory.where else "")
            api_version = INVENTORY_KINDS[kind][0]
            raise obj.error(path, f"{uid}: no {kind} with this uid in {where}: cannot resolve the "
                                  f"id (give the name, or add the {kind} objects to the input, "
                                  f"e.g. `kubectl get {kind.lower()} -A -o yaml`, {api_version})")
        return found
