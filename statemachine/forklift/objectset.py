"""The objects of one import, found by kind, namespace and name.

:class:`ObjectSet` is what ``convert`` asks for the Providers, maps, Hooks and Secrets a Plan
refers to. Over files it is an index of everything read (a second object with the same identity
is an error: which one would Forklift have seen?); over a cluster it fetches on demand (see
``fromcluster``). Either way it records which objects were used, so the importer can name every
object it was given and did not use.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from statemachine.forklift.documents import InputObject
from statemachine.forklift.shape import check

__all__ = ["Fetcher", "ObjectSet"]

Key = tuple[str, str, str, str]
"""(apiVersion, kind, namespace, name)"""

Fetcher = Callable[[str, str, str, str], "InputObject | None"]
"""``fetch(api_version, kind, namespace, name)`` -> the object from a cluster, or ``None``."""


class ObjectSet:
    """Objects by identity, each shape-checked before it is handed out."""

    def __init__(self, objects: Sequence[InputObject] = (), *, fetcher: Fetcher | None = None,
                 where: str = "the input") -> None:
        self.where = where
        """How to say where objects are looked for, in "not found" messages."""
        self._index: dict[Key, InputObject] = {}
        self._order: list[InputObject] = []
        self._used: set[Key] = set()
        self._fetcher = fetcher
        for obj in objects:
            check(obj)
            key = (obj.api_version, obj.kind, obj.namespace, obj.name)
            first = self._index.get(key)
            if first is not None:
                where = first.origin.where
                line = first.origin.line(())
                raise obj.error((), f"defined twice (also at {where}{f':{line}' if line else ''})")
            self._index[key] = obj
            self._order.append(obj)

    def of_kind(self, api_version: str, kind: str) -> list[InputObject]:
        """Every given object of this kind, in input order."""
        return [o for o in self._order if o.api_version == api_version and o.kind == kind]

    def find(self, api_version: str, kind: str, namespace: str, name: str) -> InputObject | None:
        """The object (marked as used), fetched when not given; ``None`` if there is none."""
        key = (api_version, kind, namespace, name)
        obj = self._index.get(key)
        if obj is None and self._fetcher is not None:
            obj = self._fetcher(*key)
            if obj is not None:
                check(obj)
                self._index[key] = obj
        if obj is not None:
            self._used.add(key)
        return obj

    def need(self, api_version: str, kind: str, namespace: str, name: str, *,
             referrer: InputObject, path: tuple[str | int, ...]) -> InputObject:
        """Like :meth:`find`, but a missing object is an error at ``referrer``'s ``path``."""
        obj = self.find(api_version, kind, namespace, name)
        if obj is None:
            raise referrer.error(path, f"{kind} {namespace}/{name} is not in {self.where}")
        return obj

    def mark_used(self, obj: InputObject) -> None:
        self._used.add((obj.api_version, obj.kind, obj.namespace, obj.name))

    def unused(self) -> list[InputObject]:
        """Given objects that nothing asked for, in input order."""
        return [o for o in self._order
                if (o.api_version, o.kind, o.namespace, o.name) not in self._used]
