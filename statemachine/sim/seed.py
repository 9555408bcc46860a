"""Seed files of the simulated clusters: ``{source: [objects], target: [objects]}``.

:func:`load_seed` reads a YAML/JSON file (or takes an already parsed mapping) and checks its
shape: two known cluster keys, each a list of objects with ``apiVersion``, ``kind`` (a kind the
simulator serves, or one a CustomResourceDefinition in the same list defines) and
``metadata.name``. Problems raise ``DefinitionError`` with one line naming
the file and the field; the file is read within yamlsource's input limits (size, characters,
nesting, aliases). It does not create anything (``cluster.py`` does).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from statemachine import yamlsource
from statemachine.errors import DefinitionError, Problem
from statemachine.sim.kinds import KindRegistry

CLUSTERS = ("source", "target")
Seed = dict[str, list[dict[str, Any]]]


def _fail(where: str, path: str, message: str) -> DefinitionError:
    return DefinitionError(f"{where}: {path}: {message}", [Problem(where, path, message)])


def load_seed(seed: str | Path | Mapping[str, Any] | None,
              registry: KindRegistry | None = None) -> Seed:
    """The validated seed (``{"source": [...], "target": [...]}``; missing keys are empty)."""
    registry = registry or KindRegistry.default()
    if seed is None:
        return {c: [] for c in CLUSTERS}
    if isinstance(seed, (str, Path)):
        where = str(seed)
        # The input limits of every YAML smrun reads (size, characters, nesting, aliases).
        text = yamlsource.read_text(seed, what="seed file", limit=yamlsource.MAX_SEED_BYTES)
        docs = yamlsource.load_all_text(text, where, limit=yamlsource.MAX_SEED_BYTES)
        if len(docs) > 1:
            raise _fail(where, "", f"{len(docs)} YAML documents; a seed file is one mapping "
                                   "{source: [...], target: [...]}")
        data: Any = docs[0] if docs else None
    else:
        where, data = "<seed>", seed
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise _fail(where, "", "a seed file must be a mapping {source: [...], target: [...]}")
    out: Seed = {}
    for key in data:
        if key not in CLUSTERS:
            raise _fail(where, str(key), "unknown cluster (expected source or target)")
    for cluster in CLUSTERS:
        objects = data.get(cluster) or []
        if not isinstance(objects, list):
            raise _fail(where, cluster, "must be a list of objects")
        defined: set[tuple[str, str]] = set()
        if any(isinstance(o, Mapping) and o.get("kind") == "CustomResourceDefinition"
               for o in objects):
            # Only a seed with CRDs needs the CRD machinery (schema admission, the store): an
            # offline `smrun validate` of a simulated plan reads the seed without importing it.
            from statemachine.sim import crd

            defined = crd.seed_kinds([dict(o) for o in objects if isinstance(o, Mapping)])
        for i, obj in enumerate(objects):
            path = f"{cluster}[{i}]"
            if not isinstance(obj, Mapping):
                raise _fail(where, path, "must be an object")
            api_version, kind = obj.get("apiVersion"), obj.get("kind")
            if not isinstance(api_version, str) or not api_version:
                raise _fail(where, f"{path}.apiVersion", "required")
            if not isinstance(kind, str) or not kind:
                raise _fail(where, f"{path}.kind", "required")
            if registry.by_kind(api_version, kind) is None and \
                    (api_version, kind) not in defined:
                raise _fail(where, f"{path}.kind",
                            f"{api_version} {kind} is not served by the simulator")
            meta = obj.get("metadata")
            if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) \
                    or not meta.get("name"):
                raise _fail(where, f"{path}.metadata.name", "required")
        out[cluster] = [dict(o) for o in objects]
    return out
