"""A Forklift Migration of the Plan -> the plan's cutover times (warm migrations).

The Migration is Forklift's run object; what it carries that an smrun plan has is the cutover:
``spec.cutover`` for every VM and ``spec.vmCutover[]`` per VM id. The newest Migration of the
Plan counts (older ones are named in warnings); ``cancel`` and ``resumeConversion`` have no
equivalent.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from statemachine.forklift.documents import InputObject
from statemachine.forklift.scope import IGNORED, Scope
from statemachine.forklift.shape import API_VERSION, MIGRATION_SPEC
from statemachine.yamlsource import DocPath

__all__ = ["Migrations"]


class Migrations(Scope):
    """Converts the Plan's newest Migration."""

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
                self.warn(run, ("spec", "cutover"), "ignored: only warm migrations have a cutover")
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
