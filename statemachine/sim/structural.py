"""Structural schemas, as kube-apiserver applies a CRD's ``openAPIV3Schema`` to custom resources.

A :class:`StructuralSchema` wraps one version's schema (a dict, or a function returning it, so the
shipped data is only read when a kind is first written) and compiles it once into a tree of
:class:`Node` objects. Three passes over a request body, in upstream's order:

1. :meth:`StructuralSchema.prune`: removes the fields the schema does not declare (unless
   ``x-kubernetes-preserve-unknown-fields``) and returns their paths (``spec.runing``); the caller
   turns them into a strict-decoding error or warnings, per ``fieldValidation``.
2. :meth:`StructuralSchema.default`: fills in ``default`` values of absent properties.
3. :meth:`StructuralSchema.validate`: type, required, enum, pattern, bounds, lengths; returns
   field errors shaped as upstream's (``(cause reason, field, message)``).

``metadata`` is not part of the schema walk: the API server checks it itself (here: only unknown
top-level metadata fields are pruned, see :data:`OBJECT_META_FIELDS`). This module does not know
about HTTP or the store; ``admission.py`` wires it in. Not implemented: CEL rules
(``x-kubernetes-validations``), ``x-kubernetes-list-type`` uniqueness, ``oneOf``/``not``, formats
other than what the type implies.
"""
from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from statemachine.yamlsource import json_type_name

FieldError = tuple[str, str, str]  # (cause reason, field path, message)

OBJECT_META_FIELDS = frozenset((
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields"))

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def go_value(value: Any) -> str:
    """A value as Go's field errors print it: strings quoted, ``null`` for nil, JSON otherwise."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


class Node:
    """One compiled schema node. Only the keywords a structural schema can carry are kept."""

    __slots__ = ("type", "type_ok", "properties", "additional", "items", "required", "enum", "preserve",
                 "int_or_string", "nullable", "defaults", "pattern", "pattern_text", "minimum",
                 "maximum", "exclusive_min", "exclusive_max", "min_length", "max_length",
                 "min_items", "max_items", "embedded", "has_defaults")

    has_defaults: bool

    def __init__(self, schema: dict[str, Any]) -> None:
        self.type: str | None = schema.get("type") if isinstance(schema.get("type"), str) else None
        self.int_or_string = bool(schema.get("x-kubernetes-int-or-string"))
        self.type_ok: Callable[[Any], bool] | None = (
            _JSON_TYPES.get(self.type) if self.type is not None and not self.int_or_string
            else None)
        self.preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        self.embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        self.nullable = bool(schema.get("nullable"))
        props = schema.get("properties")
        self.properties: dict[str, Node] | None = (
            {k: Node(v) for k, v in props.items()} if isinstance(props, dict) else None)
        add = schema.get("additionalProperties")
        self.additional: Node | None = Node(add) if isinstance(add, dict) else None
        if add is True:
            self.preserve = True
        items = schema.get("items")
        self.items: Node | None = Node(items) if isinstance(items, dict) else None
        self.required: tuple[str, ...] = tuple(schema.get("required") or ())
        enum = schema.get("enum")
        self.enum: list[Any] | None = list(enum) if isinstance(enum, list) else None
        self.defaults: dict[str, Any] = {k: v["default"] for k, v in (props or {}).items()
                                         if isinstance(v, dict) and "default" in v}
        pattern = schema.get("pattern")
        self.pattern_text: str = pattern if isinstance(pattern, str) else ""
        self.pattern: re.Pattern[str] | None = None
        if self.pattern_text:
            try:
                self.pattern = re.compile(self.pattern_text)
            except re.error:
                self.pattern = None
        self.minimum: float | None = schema.get("minimum")
        self.maximum: float | None = schema.get("maximum")
        self.exclusive_min = bool(schema.get("exclusiveMinimum"))
        self.exclusive_max = bool(schema.get("exclusiveMaximum"))
        self.min_length: int | None = schema.get("minLength")
        self.max_length: int | None = schema.get("maxLength")
        self.min_items: int | None = schema.get("minItems")
        self.max_items: int | None = schema.get("maxItems")
        children = [*(self.properties or {}).values(), self.additional, self.items]
        self.has_defaults = bool(self.defaults) or any(
            c.has_defaults for c in children if c is not None)

    # ------------------------------------------------------------------ pruning
    def prune(self, value: Any, path: str, unknown: list[str]) -> None:
        if isinstance(value, dict):
            props = self.properties
            if props is not None:
                for key in list(value):
                    child = props.get(key)
                    if child is not None:
                        child.prune(value[key], _join(path, key), unknown)
                    elif self.additional is not None:
                        self.additional.prune(value[key], _join(path, key), unknown)
                    elif not self.preserve and not (self.embedded and key in (
                            "apiVersion", "kind", "metadata")):
                        del value[key]
                        unknown.append(_join(path, key))
            elif self.additional is not None:
                for key, item in value.items():
                    self.additional.prune(item, _join(path, key), unknown)
            elif not self.preserve and self.type == "object":
                for key in list(value):
                    if not (self.embedded and key in ("apiVersion", "kind", "metadata")):
                        del value[key]
                        unknown.append(_join(path, key))
        elif isinstance(value, list) and self.items is not None:
            for i, item in enumerate(value):
                self.items.prune(item, f"{path}[{i}]", unknown)

    # ------------------------------------------------------------------ defaulting
    def default(self, value: Any) -> None:
        if not self.has_defaults:
            return
        if isinstance(value, dict):
            for key, dflt in self.defaults.items():
                if key not in value:
                    value[key] = copy.deepcopy(dflt)
            if self.properties is not None:
                for key, child in self.properties.items():
                    if key in value and child.has_defaults:
                        child.default(value[key])
            if self.additional is not None and self.additional.has_defaults:
                for item in value.values():
                    self.additional.default(item)
        elif isinstance(value, list) and self.items is not None:
            for item in value:
                self.items.default(item)

    # ------------------------------------------------------------------ validation
    def validate(self, value: Any, path: str, errors: list[FieldError]) -> None:
        if value is None:
            if not self.nullable and (self.type is not None or self.int_or_string):
                expected = self.type or "integer"
                errors.append(("FieldValueTypeInvalid", path,
                               f'Invalid value: "null": {path} in body must be of type '
                               f"{expected}: \"null\""))
            return
        if self.int_or_string:
            if not (isinstance(value, str) or _JSON_TYPES["integer"](value)):
                actual = json_type_name(value)
                errors.append(("FieldValueTypeInvalid", path,
                               f'Invalid value: "{actual}": {path} in body must be of type '
                               f'integer,string: "{actual}"'))
                return
        elif self.type_ok is not None and not self.type_ok(value):
            actual = json_type_name(value)
            errors.append(("FieldValueTypeInvalid", path,
                           f'Invalid value: "{actual}": {path} in body must be of type '
                           f'{self.type}: "{actual}"'))
            return
        if isinstance(value, dict):
            props = self.properties
            additional = self.additional
            for key in self.required:
                if key not in value:
                    errors.append(("FieldValueRequired", _join(path, key), "Required value"))
            prefix = f"{path}." if path else ""
            for key, item in value.items():
                child = props.get(key) if props is not None else None
                if child is None:
                    child = additional
                if child is not None:
                    child.validate(item, prefix + key, errors)
            return
        if self.enum is not None and value not in self.enum:
            supported = ", ".join(go_value(v) for v in self.enum)
            errors.append(("FieldValueNotSupported", path,
                           f"Unsupported value: {go_value(value)}: supported values: "
                           f"{supported}"))
        if isinstance(value, str):
            self._validate_string(value, path, errors)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            self._validate_number(value, path, errors)
        elif isinstance(value, list):
            if self.max_items is not None and len(value) > self.max_items:
                errors.append(("FieldValueTooMany", path,
                               f"Too many: {len(value)}: must have at most {self.max_items} "
                               "items"))
            if self.min_items is not None and len(value) < self.min_items:
                errors.append(("FieldValueInvalid", path,
                               f"Invalid value: {len(value)}: {path} in body should have at "
                               f"least {self.min_items} items"))
            if self.items is not None:
                for i, item in enumerate(value):
                    self.items.validate(item, f"{path}[{i}]", errors)

    def _validate_string(self, value: str, path: str, errors: list[FieldError]) -> None:
        if self.max_length is not None and len(value) > self.max_length:
            errors.append(("FieldValueTooLong", path,
                           f"Too long: may not be more than {self.max_length} bytes"))
        if self.min_length is not None and len(value) < self.min_length:
            errors.append(("FieldValueInvalid", path,
                           f"Invalid value: {go_value(value)}: {path} in body should be at "
                           f"least {self.min_length} chars long"))
        if self.pattern is not None and not self.pattern.search(value):
            errors.append(("FieldValueInvalid", path,
                           f"Invalid value: {go_value(value)}: {path} in body should match "
                           f"'{self.pattern_text}'"))

    def _validate_number(self, value: float, path: str, errors: list[FieldError]) -> None:
        if self.minimum is not None and (value < self.minimum or
                                         (self.exclusive_min and value == self.minimum)):
            relation = "greater than" if self.exclusive_min else "greater than or equal to"
            errors.append(("FieldValueInvalid", path,
                           f"Invalid value: {go_value(value)}: {path} in body should be "
                           f"{relation} {go_value(self.minimum)}"))
        if self.maximum is not None and (value > self.maximum or
                                         (self.exclusive_max and value == self.maximum)):
            relation = "less than" if self.exclusive_max else "less than or equal to"
            errors.append(("FieldValueInvalid", path,
                           f"Invalid value: {go_value(value)}: {path} in body should be "
                           f"{relation} {go_value(self.maximum)}"))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class StructuralSchema:
    """One kind version's schema, compiled on first use (thread-safe, once)."""

    def __init__(self, source: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        self._source = source
        self._raw: dict[str, Any] | None = source if isinstance(source, dict) else None
        self._root: Node | None = None
        self._lock = threading.Lock()

    @property
    def raw(self) -> dict[str, Any]:
        """The schema as a JSON dict (what the OpenAPI documents publish)."""
        if self._raw is None:
            assert callable(self._source)
            self._raw = self._source()
        return self._raw

    def _node(self) -> Node:
        root = self._root
        if root is None:
            with self._lock:
                if self._root is None:
                    self._root = Node(self.raw)
                root = self._root
        return root

    def node(self, field: str) -> Node | None:
        """The compiled node of a top-level property (``spec``, ``status``), or ``None``."""
        props = self._node().properties
        return props.get(field) if props is not None else None

    def prune(self, obj: dict[str, Any], *, skip: tuple[str, ...] = ()) -> list[str]:
        """Drop undeclared fields of ``obj`` in place (not under ``skip`` top-level keys);
        return their paths, metadata's included."""
        unknown: list[str] = []
        root = self._node()
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            for key in [k for k in meta if k not in OBJECT_META_FIELDS]:
                del meta[key]
                unknown.append(f"metadata.{key}")
        props = root.properties or {}
        for key in list(obj):
            if key in ("apiVersion", "kind", "metadata") or key in skip:
                continue
            child = props.get(key)
            if child is None:
                if not root.preserve:
                    del obj[key]
                    unknown.append(key)
            else:
                child.prune(obj[key], key, unknown)
        return unknown

    def default(self, obj: dict[str, Any], *, skip: tuple[str, ...] = ()) -> None:
        root = self._node()
        if not root.has_defaults:
            return
        for key, dflt in root.defaults.items():
            if key not in obj and key not in skip and key != "metadata":
                obj[key] = copy.deepcopy(dflt)
        for key, child in (root.properties or {}).items():
            if key in obj and key not in skip and key != "metadata":
                child.default(obj[key])

    def validate(self, obj: dict[str, Any], *, skip: tuple[str, ...] = ()) -> list[FieldError]:
        root = self._node()
        errors: list[FieldError] = []
        for key in root.required:
            if key not in obj and key not in skip:
                errors.append(("FieldValueRequired", key, "Required value"))
        props = root.properties or {}
        for key, value in obj.items():
            if key in ("apiVersion", "kind", "metadata") or key in skip:
                continue
            child = props.get(key)
            if child is not None:
                child.validate(value, key, errors)
        return errors
