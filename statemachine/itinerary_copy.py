"""Copy a built-in itinerary and the templates it uses into a folder an author can edit.

``copy_itinerary("live", Path("my-flow"))`` writes ``my-flow/live.yaml`` (the built-in file,
comments kept, with ``spec.templates: templates`` added) and ``my-flow/templates/`` holding every
template the itinerary applies or patches with, and every template those include by a literal
name. A plan then runs the copy with ``spec.itinerary: my-flow/live.yaml``.

Decisions recorded here:

- The YAML is copied as text (one line inserted after ``spec:``), not re-dumped, so the comments
  that explain each state survive.
- Nothing is overwritten: an existing itinerary file or template is an error naming it, before
  anything is written.
- Only the templates the itinerary uses are copied, not the whole built-in folder.

It does not load plans or talk to a cluster.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from statemachine.errors import DefinitionError
from statemachine.expressions import referenced_templates, template_environment
from statemachine.itinerary import Itinerary, load_itinerary

__all__ = ["copy_itinerary", "describe", "used_templates"]

_SPEC = re.compile(r"^spec:[ \t]*$", re.MULTILINE)


def used_templates(itinerary: Itinerary) -> list[str]:
    """Every template file ``itinerary`` uses (actions, undo, and what they include), sorted."""
    env = template_environment(itinerary.template_dir)
    todo = [a.template for s in (*itinerary.states, *itinerary.setup.states)
            for a in (*s.actions, *s.undo) if a.template]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(referenced_templates(env, name))
    return sorted(seen)


def describe(name_or_path: str) -> str:
    """``smrun itineraries show``: a comment header (file, templates, flow, parameters, values)
    followed by the itinerary's YAML as written."""
    import json

    from statemachine.providers import find_itinerary

    # A name is an installed itinerary (the built-ins, or a provider's); anything else a file.
    is_file = "/" in name_or_path or name_or_path.endswith((".yaml", ".yml"))
    path = Path(name_or_path) if is_file else find_itinerary(name_or_path).path
    itinerary = load_itinerary(path)
    head = [f"# itinerary {itinerary.name!r}: {path}",
            f"# templates: {itinerary.template_dir}",
            f"# flow (migrationType): {itinerary.migration_type or '(none: the plan type is its name)'}"]
    if itinerary.parameters:
        head.append("# parameters (a plan sets them in spec.parameters; read as params.NAME):")
        for p in itinerary.parameters:
            default = f", default {json.dumps(p.default)}" if p.has_default else ", required"
            text = f": {p.description}" if p.description else ""
            head.append(f"#   {p.name} {json.dumps(dict(p.schema))}{default}{text}")
    else:
        head.append("# parameters: none")
    if itinerary.values:
        head.append(f"# values (values.NAME): {', '.join(itinerary.values)}")
    for state in (*itinerary.setup.states, *itinerary.states):
        if state.values:
            head.append(f"# values of state {state.name} (there only): {', '.join(state.values)}")
    return "\n".join(head) + "\n" + path.read_text(encoding="utf-8")


def copy_itinerary(name: str, folder: Path) -> tuple[Path, list[Path]]:
    """Write the built-in itinerary ``name`` and its templates under ``folder``; return the
    itinerary file and the template files written."""
    from statemachine.providers import builtin_itinerary_path

    source = builtin_itinerary_path(name)
    itinerary = load_itinerary(source)
    text = source.read_text(encoding="utf-8")
    if re.search(r"^  templates:", text, re.MULTILINE) or not _SPEC.search(text):
        raise DefinitionError(f"{source}: cannot copy: expected a top-level 'spec:' line and no "
                              "spec.templates")
    target = folder / source.name
    templates = [(itinerary.template_dir / t, folder / "templates" / t)
                 for t in used_templates(itinerary)]
    for path in (target, *(dst for _, dst in templates)):
        if path.exists():
            raise DefinitionError(f"{path}: already exists (smrun itineraries --copy never "
                                  "overwrites; choose another folder)")
    text = _SPEC.sub("spec:\n  templates: templates           # copied with `smrun itineraries "
                     "--copy`: relative to this file", text, count=1)
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    for src, dst in templates:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return target, [dst for _, dst in templates]
