"""Resolving Forklift ids to names.

For an ``openshift`` source, Forklift's inventory identifies a VM, a storage class or a network
attachment definition by the object's ``metadata.uid``; a Plan may name a VM only by that ``id``.
smrun plans name objects, so the importer looks the uid up:

- in the objects given to the import (``kubectl get vm -A -o yaml`` output next to the Plan),
- and, when the import reads from a cluster, on the source provider's cluster (a list of the
  kind, through smrun's cluster layer; at most once per kind).

A uid found nowhere is reported by the caller ("cannot resolve"), never guessed.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["INVENTORY_KINDS", "Inventory"]

INVENTORY_KINDS: Mapping[str, tuple[str, str]] = {
    "VirtualMachine": ("kubevirt.io/v1", "VirtualMachine"),
    "StorageClass": ("storage.k8s.io/v1", "StorageClass"),
    "NetworkAttachmentDefinition": ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition"),
}
"""What a Forklift id can stand for, by kind: (apiVersion, kind) to list."""

Lister = Callable[[str, str], Sequence[Mapping[str, Any]]]
"""``lister(api_version, kind)`` -> every object of that kind (all namespaces)."""


class Inventory:
    """uid -> (namespace, name), per kind, from given objects and an optional lister."""

    def __init__(self, objects: Iterable[Mapping[str, Any]] = (), lister: Lister | None = None,
                 where: str = "") -> None:
        self._known: dict[tuple[str, str], tuple[str, str]] = {}
        self._listed: set[str] = set()
        self._lister = lister
        self.where = where
        """Where a lister looks (``cluster east``), for messages; ``""`` without one."""
        for obj in objects:
            self._add(obj)

    def _add(self, obj: Mapping[str, Any], kind: str = "") -> None:
        # Items of a list answer carry no kind of their own: the caller says which it listed.
        meta = obj.get("metadata") or {}
        uid = meta.get("uid")
        kind = kind or str(obj.get("kind") or "")
        if isinstance(uid, str) and uid and kind in INVENTORY_KINDS:
            self._known[(kind, uid)] = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def resolve(self, kind: str, uid: str) -> tuple[str, str] | None:
        """``(namespace, name)`` of the ``kind`` whose uid is ``uid``, or ``None``."""
        found = self._known.get((kind, uid))
        if found is not None or self._lister is None or kind in self._listed:
            return found
        self._listed.add(kind)
        api_version, real_kind = INVENTORY_KINDS[kind]
        for obj in self._lister(api_version, real_kind):
            self._add(obj, kind)
        return self._known.get((kind, uid))
