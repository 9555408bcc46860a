"""Validate a loaded YAML document against one of smrun's packaged JSON Schemas.

Every violation is collected (``iter_errors``), not just the first, and reported as a
:class:`~statemachine.errors.Problem` with the file, the line (from :mod:`statemachine.yamlsource`)
and a path like ``spec.states[3].readiness.ready``. For ``oneOf``/``anyOf`` failures the most
relevant sub-error is reported instead of jsonschema's "is not valid under any of the given
schemas". This module knows nothing about what the documents mean; semantic checks live with the
loaders (``itinerary.py``, ``plan.py``).
"""
from __future__ import annotations

import difflib
import json
import os
from functools import lru_cache
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from statemachine import verdictcache
from statemachine.errors import Problem, SchemaError
from statemachine.resources import data_dir
from statemachine.yamlsource import DocPath, SourceDoc

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

# Decision (start-up time, issue 17): jsonschema is imported only when a document has to be
# validated, which a clean verdict kept by ``verdictcache`` spares (see problems()).


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """The packaged schema ``schemas/<name>.schema.json`` (``name`` like ``itinerary``)."""
    path = data_dir("schemas") / f"{name}.schema.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


@lru_cache(maxsize=None)
def _schema_bytes(name: str) -> bytes:
    # Every packaged schema, the named one first: a schema may refer to another one (the
    # fragment schema to the itinerary's definitions), so a verdict depends on all of them.
    folder = data_dir("schemas")
    others = sorted(p for p in folder.glob("*.schema.json") if p.name != f"{name}.schema.json")
    return b"\0".join(p.read_bytes() for p in (folder / f"{name}.schema.json", *others))


@lru_cache(maxsize=None)
def _this_validation() -> str:
    # What in smrun decides a verdict: this module (how the validator is built), by identity.
    info = os.stat(__file__)
    return f"{__file__}:{info.st_size}:{info.st_mtime_ns}"


@lru_cache(maxsize=None)
def _validator(name: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    # Built once per schema and process. Decision (start-up time, issue 8): the packaged schemas
    # are not checked against the 2020-12 metaschema here -- that took 16-22 ms per schema on
    # every command and can only fail on a broken build; tests/test_startup.py checks every
    # packaged schema instead.
    from referencing import Registry, Resource

    # The packaged schemas by their $id, so that one may $ref another's definitions.
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema))
        for schema in (load_schema(p.name[:-len(".schema.json")])
                       for p in sorted(data_dir("schemas").glob("*.schema.json"))))
    return Draft202012Validator(load_schema(name), registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(doc: SourceDoc, schema_name: str) -> list[Problem]:
    """Every schema violation of ``doc``, sorted by line."""
    key = verdictcache.verdict_key(_schema_bytes(schema_name) + _this_validation().encode(),
                                   doc.data)
    if verdictcache.is_valid(key):
        return []
    found: list[Problem] = []
    for error in _validator(schema_name).iter_errors(doc.data):
        error = _most_relevant(error)
        path: DocPath = tuple(error.absolute_path)
        message = _message(error)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # Point at the unexpected key itself, one problem per key: that is the typo to fix.
            # error.schema is typed as a union (bool/unset schemas); an additionalProperties
            # failure always comes from a mapping schema.
            schema = error.schema if isinstance(error.schema, Mapping) else {}
            allowed = set(schema.get("properties", {}))
            patterns = schema.get("patternProperties", {})
            extras = [k for k in error.instance if k not in allowed and not patterns]
            for key in extras or [None]:
                if key is None:
                    found.append(doc.problem(path, message))
                else:
                    found.append(doc.problem((*path, key), f"unknown field {key!r}"
                                             + _suggest(key, allowed)))
            continue
        found.append(doc.problem(path, message))
    found.sort(key=lambda p: (p.line or 0, p.path))
    if not found:
        verdictcache.remember_valid(key)
    return found


def validate_document(doc: SourceDoc, schema_name: str) -> None:
    """Raise :class:`SchemaError` listing every violation of ``doc`` against ``schema_name``."""
    found = problems(doc, schema_name)
    if found:
        raise SchemaError(str(found[0]), found)


def _most_relevant(error: ValidationError) -> ValidationError:
    # oneOf/anyOf: descend to the sub-error that best explains the failure.
    # A titled definition (duration, condition...) explains itself better than any branch.
    from jsonschema.exceptions import best_match

    while error.context and not (isinstance(error.schema, dict) and "title" in error.schema):
        deeper = best_match(error.context)
        if deeper is None:
            break
        error = deeper
    return error


def _message(error: ValidationError) -> str:
    # Custom wording for our own pattern-based definitions (the raw regex helps nobody).
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    if error.validator in ("pattern", "type", "oneOf", "anyOf") and title:
        return f"{error.instance!r} is not {title}"
    if error.validator == "required" and isinstance(error.validator_value, list):
        return str(error.message).replace("is a required property", "is required")
    return str(error.message)


def _suggest(key: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


__all__ = ["load_schema", "problems", "validate_document"]
