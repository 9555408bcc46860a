"""Server-side printing: ``meta.k8s.io`` Table responses for get, list and watch.

kubectl asks for tables with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`` (also
``v1beta1``); :func:`table_request` reads that header and the TableOptions query (``includeObject``
``None``/``Metadata``/``Object``, ``noHeaders``). Columns come from, in this order:

- the built-in printer of the kind (``printers.PRINTERS``);
- a custom resource's ``Kind.printer_columns`` (CRD ``additionalPrinterColumns``), evaluated with
  ``jsonpath`` and formatted by type, ``date`` as an age computed on the server; a custom resource
  without columns gets Name and Age;
- any other built-in kind: the generic Name and Created At (an RFC 3339 timestamp).

Column definitions are computed once per kind and cached. A watch sends the definitions with its
first event only (later events are ``noHeaders``), as upstream does.

What it does not do: protobuf tables, ``PartialObjectMetadata`` lists without a table, sorting
(kubectl sorts), or hiding priority columns (kubectl hides them unless ``-o wide``).
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from statemachine.errors import PermanentClusterError
from statemachine.sim import jsonpath, printers
from statemachine.sim.kinds import Kind

Obj = dict[str, Any]
INCLUDE_OBJECT = ("None", "Metadata", "Object")


@dataclass(frozen=True)
class TableRequest:
    """What the client asked for: the Table version and the TableOptions."""

    version: str  # "v1" or "v1beta1"
    include_object: str = "Metadata"
    no_headers: bool = False

    @property
    def api_version(self) -> str:
        return f"meta.k8s.io/{self.version}"


def table_request(accept: str | None, query: dict[str, str]) -> TableRequest | None:
    """The Table the client accepts first, or ``None`` for a plain JSON answer.

    Media ranges are taken in the order sent (kubectl lists its preference first); a plain
    ``application/json`` or ``*/*`` before any Table range means no Table. An unknown
    ``includeObject`` is a 400, as upstream.
    """
    if not accept or "as=Table" not in accept:
        return None
    version = None
    for clause in accept.split(","):
        media, *raw_params = (p.strip() for p in clause.split(";"))
        params = dict(p.split("=", 1) for p in raw_params if "=" in p)
        if media not in ("application/json", "application/*", "*/*"):
            continue
        if "as" not in params:
            return None
        if (params.get("as") == "Table" and params.get("g") == "meta.k8s.io"
                and params.get("v") in ("v1", "v1beta1")):
            version = params["v"]
            break
    if version is None:
        return None
    include = query.get("includeObject") or "Metadata"
    if include not in INCLUDE_OBJECT:
        raise PermanentClusterError(f'unrecognized includeObject value: "{include}"',
                                    status=400, reason="BadRequest")
    return TableRequest(version, include, query.get("noHeaders") == "true")


# ----------------------------------------------------------------------------- columns per kind

Renderer = Callable[[Obj, _dt.datetime], list[Any]]


def _custom_cell(steps: tuple[Any, ...] | None, type_: str) -> Callable[[Obj, _dt.datetime], Any]:
    def cell(obj: Obj, now: _dt.datetime) -> Any:
        if steps is None:
            return None
        found = jsonpath.find(obj, steps)
        if not found:
            return None
        value = found[0]
        if value is None:
            return None
        if type_ == "string":
            return jsonpath.go_text(value)
        if type_ == "integer":
            return int(value) if isinstance(value, (int, float)) and \
                not isinstance(value, bool) else None
        if type_ == "number":
            return float(value) if isinstance(value, (int, float)) and \
                not isinstance(value, bool) else None
        if type_ == "boolean":
            return value if isinstance(value, bool) else None
        if type_ == "date":
            if not isinstance(value, str):
                return None
            when = printers.parse_time(value)
            return "<invalid>" if when is None else printers.human_duration(
                (now - when).total_seconds())
        return None
    return cell


def _custom_columns(kind: Kind) -> tuple[tuple[dict[str, Any], ...], Renderer]:
    specs = kind.printer_columns or ({"name": "Age", "type": "date",
                                      "jsonPath": ".metadata.creationTimestamp"},)
    columns = [printers.NAME]
    cells: list[Callable[[Obj, _dt.datetime], Any]] = []
    for spec in specs:
        path = str(spec.get("jsonPath") or "")
        description = spec.get("description") or \
            f"Custom resource definition column (in JSONPath format): {path}"
        columns.append(printers.column(str(spec.get("name", "")), str(spec.get("type", "string")),
                                      description, priority=int(spec.get("priority") or 0),
                                      fmt=str(spec.get("format") or "")))
        try:
            steps: tuple[Any, ...] | None = jsonpath.compile_path(path)
        except jsonpath.JSONPathError:
            steps = None  # upstream refuses such a CRD; here the cell is simply empty
        cells.append(_custom_cell(steps, str(spec.get("type", "string"))))

    def render(obj: Obj, now: _dt.datetime) -> list[Any]:
        return [(obj.get("metadata") or {}).get("name", ""), *(c(obj, now) for c in cells)]
    return tuple(columns), render


_CREATED_AT = printers.column("Created At", "date", "When the object was created.")


def _generic(obj: Obj, now: _dt.datetime) -> list[Any]:
    meta = obj.get("metadata") or {}
    when = printers.parse_time(meta.get("creationTimestamp"))
    stamp = when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if when else \
        "0001-01-01T00:00:00Z"
    return [meta.get("name", ""), stamp]


Columns = tuple[tuple[dict[str, Any], ...], Renderer]
# By Kind identity, not equality: a CRD updated with other printer columns makes an equal Kind.
_COLUMNS: dict[int, tuple[Kind, Columns]] = {}


def columns_for(kind: Kind) -> Columns:
    """The column definitions of ``kind`` and the function that renders one row's cells."""
    cached = _COLUMNS.get(id(kind))
    if cached is not None and cached[0] is kind:
        return cached[1]
    printer = printers.PRINTERS.get((kind.group, kind.kind))
    if printer is not None:
        found: Columns = (printer.columns, printer.cells)
    elif kind.custom:
        found = _custom_columns(kind)
    else:
        found = ((printers.NAME, _CREATED_AT), _generic)
    _COLUMNS[id(kind)] = (kind, found)
    return found


# ----------------------------------------------------------------------------- tables

def _row(kind: Kind, obj: Obj, render: Renderer, req: TableRequest,
         now: _dt.datetime) -> dict[str, Any]:
    row: dict[str, Any] = {"cells": render(obj, now)}
    if kind.group == "" and kind.kind == "Pod":
        conditions = printers.pod_conditions(obj)
        if conditions:
            row["conditions"] = conditions
    if req.include_object == "Object":
        row["object"] = obj
    elif req.include_object == "Metadata":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": req.api_version,
                         "metadata": obj.get("metadata") or {}}
    return row


def table(req: TableRequest, kind: Kind, objects: list[Obj], list_meta: dict[str, Any], *,
          headers: bool = True) -> dict[str, Any]:
    """A Table of ``objects``; ``list_meta`` is copied from the list (or the object's RV)."""
    columns, render = columns_for(kind)
    now = _dt.datetime.now(_dt.timezone.utc)
    return {"kind": "Table", "apiVersion": req.api_version, "metadata": list_meta,
            "columnDefinitions": list(columns) if headers and not req.no_headers else None,
            "rows": [_row(kind, obj, render, req, now) for obj in objects]}


def object_table(req: TableRequest, kind: Kind, obj: Obj) -> dict[str, Any]:
    """The Table answer to a GET of one object."""
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return table(req, kind, [obj], {"resourceVersion": rv} if rv else {})


class WatchTables:
    """Turns watch event objects into one-row Tables; headers with the first event only."""

    def __init__(self, req: TableRequest, kind: Kind) -> None:
        self.req, self.kind = req, kind
        self._headers = True

    def __call__(self, obj: Obj) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        rv = meta.get("resourceVersion")
        # A bookmark (an object with no name) becomes a Table with no rows.
        out = table(self.req, self.kind, [obj] if meta.get("name") else [],
                    {"resourceVersion": rv} if rv else {}, headers=self._headers)
        self._headers = False
        return out
