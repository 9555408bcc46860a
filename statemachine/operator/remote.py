"""``smrun status|cancel|cutover --cluster CONTEXT PLAN_NAME``: the same commands on a Plan object.

Where ``smrun status PLAN`` reads a local journal, these act on a Plan (``plans.smrun.io``) in
the cluster of kubeconfig context ``CONTEXT``, which the operator runs:

- **status** reads the object's ``status.vms`` and gives the rows ``smrun status`` gives for a
  plan file (``vm``, ``phase``, ``state``, ``message``, ``outputs``, ``run``), so the table and
  ``--output json`` read the same;
- **cancel** sets ``spec.cancel: true`` (a merge patch; the operator cancels the run);
- **cutover** sets ``spec.cutover`` (or, with VMs named, their ``spec.vms[].cutover``: the whole
  list is written back with the ``resourceVersion`` it was read at, so a concurrent change is a
  conflict and never lost); the operator moves the running engine's cutover.

Bad input is one line with the CLI's exit codes: a context the kubeconfig lacks (2), no such
Plan (2), a cluster that does not serve Plans (the operator's CRD is not installed: 3), a
cluster that does not answer (3). It decides nothing about a run: the operator does.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from statemachine.cutover import normalize_time
from statemachine.errors import NotFound, PreflightError, UsageError
from statemachine.k8s import Cluster, ObjectRef, default_kubeconfig
from statemachine.operator.crd import GROUP, PLURAL, VERSION
from statemachine.operator.reporter import TERMINAL

API_VERSION = f"{GROUP}/{VERSION}"
#: A command line waits for an unreachable cluster this long (retries included), not a minute.
_RETRY_SECONDS = 5.0


def context_namespace(kubeconfig: Path | None, context: str) -> str:
    """The namespace of ``context`` in the kubeconfig (as kubectl defaults it), else ``default``."""
    path = (kubeconfig or default_kubeconfig()).expanduser()
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return "default"  # connecting names the file's problem
    for item in (config.get("contexts") or []) if isinstance(config, dict) else []:
        if isinstance(item, dict) and item.get("name") == context:
            return str((item.get("context") or {}).get("namespace") or "default")
    return "default"


class PlanObject:
    """One Plan object in one cluster (see the module docstring)."""

    def __init__(self, api: Cluster, context: str, namespace: str, name: str) -> None:
        self.api = api
        self.context = context
        self.ref = ObjectRef(API_VERSION, "Plan", namespace, name)

    def read(self) -> dict[str, Any]:
        try:
            obj = self.api.fetch(self.ref)
        except NotFound:
            obj = None
            if not self.api.served(API_VERSION, "Plan"):
                raise PreflightError(
                    f"cluster {self.context}: Plans ({PLURAL}.{GROUP}) are not served there: the "
                    "smrun operator's CRD is not installed (smrun operator manifests)") from None
        if obj is None:
            raise UsageError(f"cluster {self.context}: no Plan {self.ref.namespace}/"
                             f"{self.ref.name}")
        return obj

    def status_rows(self) -> list[dict[str, Any]]:
        """``smrun status`` rows from the object's status (Pending rows before it has one)."""
        obj = self.read()
        status = obj.get("status") or {}
        by_vm = {str(r.get("vm")): r for r in status.get("vms") or [] if isinstance(r, dict)}
        rows = []
        for vm in (obj.get("spec") or {}).get("vms") or []:
            key = f"{vm.get('namespace')}/{vm.get('name')}"
            row = by_vm.pop(key, {})
            rows.append(_row(key, row, status))
        rows += [_row(key, row, status) for key, row in by_vm.items()]
        return rows

    def cancel(self) -> str:
        obj = self.read()
        phase = (obj.get("status") or {}).get("phase")
        if phase in TERMINAL:
            return (f"Plan {self.ref.namespace}/{self.ref.name} has ended ({phase}); "
                    "nothing to cancel")
        self.api.patch(self.ref, {"spec": {"cancel": True}})
        return (f"cancel requested for Plan {self.ref.namespace}/{self.ref.name} "
                "(spec.cancel: true); the operator undoes its running VMs")

    def cutover(self, at: str, vms: Sequence[str] = ()) -> str:
        obj = self.read()
        spec = obj.get("spec") or {}
        where = f"Plan {self.ref.namespace}/{self.ref.name}"
        kind = spec.get("type") or ("warm" if spec.get("warm") else "cold")
        if kind != "warm":
            raise UsageError(f"{where} is a {kind} migration: only warm migrations have a "
                             "cutover")
        when = normalize_time(at)
        if not vms:
            self.api.patch(self.ref, {"spec": {"cutover": when}})
            return (f"cutover of all VMs of {where} set to {when} (spec.cutover); the operator "
                    "cuts over when the current precopy round or wait ends")
        entries = [dict(v) for v in spec.get("vms") or []]
        chosen = []
        for name in vms:
            found = [v for v in entries if name in (v.get("name"), f"{v.get('namespace')}/"
                                                                     f"{v.get('name')}")]
            if not found:
                known = ", ".join(f"{v.get('namespace')}/{v.get('name')}" for v in entries)
                raise UsageError(f"{where}: --vm {name}: no such VM in the plan (known: {known})")
            for v in found:
                v["cutover"] = when
                chosen.append(f"{v.get('namespace')}/{v.get('name')}")
        self.api.patch(self.ref, {"metadata": {"resourceVersion":
                                               obj["metadata"]["resourceVersion"]},
                                  "spec": {"vms": entries}})
        return (f"cutover of {', '.join(chosen)} of {where} set to {when} (spec.vms[].cutover); "
                "the operator cuts over when the current precopy round or wait ends")


def _row(key: str, row: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"vm": key, "phase": row.get("phase") or "Pending", "state": row.get("state") or "",
            "message": row.get("message") or "", "outputs": row.get("outputs") or {},
            "run": status.get("run") or None}


@contextmanager
def plan_object(context: str, name: str, *, kubeconfig: Path | None = None,
                namespace: str | None = None) -> Iterator[PlanObject]:
    """Connect to ``context`` and hand the Plan ``name`` (in ``namespace``, default the
    context's) to the caller; the connection is closed afterwards."""
    from statemachine.k8s.client import connect
    from statemachine.k8s.retry import RetryPolicy

    with tempfile.TemporaryDirectory(prefix="smrun-plan-") as cache:
        api = connect(name=context, kubeconfig=kubeconfig, context=context, cache_dir=Path(cache),
                      retry_policy=RetryPolicy(attempts=3, total=_RETRY_SECONDS))
        try:
            yield PlanObject(api, context, namespace or context_namespace(kubeconfig, context),
                             name)
        finally:
            api.close()
