"""The ``dryRun`` option of a write (create, update, patch, delete), as kube-apiserver reads it.

``dryRun`` is a list: every value must be ``All`` (apimachinery's ``ValidateDryRun``), else the
write is refused with 422 before anything else happens to the object: the cause is
``dryRun: Unsupported value: []string{"x"}: supported values: "All"`` inside the Invalid status
of the write's options kind (``CreateOptions.meta.k8s.io "" is invalid: ...``). An empty value
(``?dryRun=``) is a list holding one empty string, so it is refused too. A dry-run write then
runs exactly as a real one (validation, defaulting, admission webhooks) and stops before storage:
see ``Store.create``/``_write``/``delete`` and docs/simulator.md.

It does not decide what a dry run returns; the store does.
"""
from __future__ import annotations

from urllib.parse import parse_qs

from statemachine.sim import validation

ALL = "All"


def from_query(raw_query: str) -> list[str] | None:
    """Every ``dryRun`` value of a query string, in order; ``None`` when there is none.

    The parsed query the server keeps holds one value per name; a list needs them all."""
    if "dryRun" not in raw_query:
        return None
    return parse_qs(raw_query, keep_blank_values=True).get("dryRun")


def cause(values: list[str] | None) -> validation.Cause | None:
    """The validation cause for unsupported ``values``, or ``None`` when they are all ``All``."""
    if values is None or all(v == ALL for v in values):
        return None
    return validation.not_supported("dryRun", list(values), [ALL])


def is_dry(values: list[str] | None) -> bool:
    """Whether a write with these (valid) values is a dry run."""
    return bool(values) and ALL in (values or ())
