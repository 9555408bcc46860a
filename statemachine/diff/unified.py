"""One object's change as ``kubectl diff`` prints it: a unified diff between the live object and
the merged (would-be) one, both as YAML with sorted keys.

- File names: ``live/CLUSTER/GROUP.VERSION.KIND.NAMESPACE.NAME`` and ``merged/…`` (kubectl's own
  naming, with the plan's cluster — ``source`` or ``target`` — in front, since a plan has two).
  A new object is all ``+`` lines (``@@ -0,0 +1,N @@``), a deleted one all ``-``.
- Server-managed fields are left out on both sides, so only what smrun decides shows:
  ``metadata.managedFields``, ``resourceVersion``, ``uid``, ``creationTimestamp``,
  ``generation`` and ``status``.
- Secrets are masked as kubectl masks them: every value under ``data`` (and ``stringData``)
  becomes ``***``; a key whose value differs between the two sides shows as
  ``*** (before)`` / ``*** (after)``, so a change is visible but never its content.
"""
from __future__ import annotations

import difflib
from typing import Any

import yaml

from statemachine.k8s import Obj, ObjectRef

__all__ = ["SERVER_FIELDS", "file_name", "object_diff"]

SERVER_FIELDS = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation")
_MASK, _BEFORE, _AFTER = "***", "*** (before)", "*** (after)"


def file_name(ref: ObjectRef) -> str:
    """kubectl diff's file name for an object: ``group.version.Kind.namespace.name``."""
    parts = [ref.api_version.replace("/", "."), ref.kind]
    if ref.namespace:
        parts.append(ref.namespace)
    parts.append(ref.name)
    return ".".join(parts)


def _clean(obj: Obj | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_FIELDS}
    if "metadata" in obj:
        out["metadata"] = meta
    return out


def _is_secret(obj: dict[str, Any] | None) -> bool:
    return obj is not None and obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def _mask(live: dict[str, Any] | None, merged: dict[str, Any] | None) -> None:
    """kubectl's masker, in place, over ``data`` and ``stringData``."""
    for name in ("data", "stringData"):
        before = live.get(name) if live is not None else None
        after = merged.get(name) if merged is not None else None
        before = dict(before) if isinstance(before, dict) else before
        after = dict(after) if isinstance(after, dict) else after
        if isinstance(before, dict):
            for key, value in before.items():
                changed = isinstance(after, dict) and key in after and after[key] != value
                before[key] = _BEFORE if changed else _MASK
                if isinstance(after, dict) and key in after:
                    after[key] = _AFTER if changed else _MASK
        elif before is not None:
            before = _MASK
        if isinstance(after, dict):
            for key in after:
                if not isinstance(before, dict) or key not in before:
                    after[key] = _MASK
        elif after is not None:
            after = _MASK
        if live is not None and name in live:
            live[name] = before
        if merged is not None and name in merged:
            merged[name] = after


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (``|``), as kubectl prints them: a changed line of a
    certificate or script is then one changed line of the diff."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(c in value for c in "\r\t") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _lines(obj: dict[str, Any] | None) -> list[str]:
    if obj is None:
        return []
    text = yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True)
    return text.splitlines(keepends=True)


def object_diff(cluster: str, ref: ObjectRef, live: Obj | None, merged: Obj | None) -> str:
    """The unified diff of one object (``""`` when, server fields aside, nothing differs)."""
    before, after = _clean(live), _clean(merged)
    if before == after:
        return ""
    if _is_secret(before) or _is_secret(after):
        _mask(before, after)
    name = file_name(ref)
    old, new = f"live/{cluster}/{name}", f"merged/{cluster}/{name}"
    body = "".join(difflib.unified_diff(_lines(before), _lines(after), old, new))
    return f"diff -u -N {old} {new}\n{body}"
