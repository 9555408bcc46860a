"""Copy an installed itinerary, the fragments it includes and the templates it uses into a folder
an author can edit, and show one (``smrun itineraries show NAME``).

``copy_itinerary("live", Path("my-flow"))`` writes ``my-flow/live.yaml`` (the installed file,
comments kept, with ``spec.templates: templates``), the fragment files it includes at the same
paths relative to it (``my-flow/common/hooks.yaml``), and ``my-flow/templates/`` holding every
template the itinerary (and the fragment states it uses) applies or patches with, and every
template those include by a literal name. A plan then runs the copy with
``spec.itinerary: my-flow/live.yaml``. Installed means the built-ins and the itineraries
providers install (:mod:`statemachine.providers.catalog`).

Decisions recorded here:

- The YAML is copied as text (the ``spec.templates`` line set or inserted after ``spec:``), not
  re-dumped, so the comments that explain each state survive. Fragments are copied unchanged.
- Nothing is overwritten: an existing itinerary, fragment or template file is an error naming
  it, before anything is written.
- Only the templates the itinerary uses are copied, not the whole template folder.
- A fragment outside the itinerary's folder (``../shared.yaml``) is refused: the copy could not
  keep the path the itinerary names it by.

It does not load plans or talk to a cluster.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from statemachine.errors import DefinitionError
from statemachine.expressions import referenced_templates, template_environment
from statemachine.itinerary import Itinerary, load_itinerary

__all__ = ["copy_itinerary", "describe", "used_templates"]

_SPEC = re.compile(r"^spec:[ \t]*$", re.MULTILINE)
_TEMPLATES = re.compile(r"^  templates:.*$", re.MULTILINE)
_COPIED = "  templates: templates           # copied with `smrun itineraries --copy`: relative to this file"


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


def _installed_path(name_or_path: str) -> Path:
    from statemachine.providers import find_itinerary

    # A name is an installed itinerary (the built-ins, or a provider's); anything else a file.
    is_file = "/" in name_or_path or name_or_path.endswith((".yaml", ".yml"))
    return Path(name_or_path) if is_file else find_itinerary(name_or_path).path


def describe(name_or_path: str) -> str:
    """``smrun itineraries show``: a comment header (file, fragments, templates, flow, parameters,
    values) followed by the itinerary's YAML as written, then each fragment it includes as a
    further YAML document (``---``) headed by its file."""
    import json

    path = _installed_path(name_or_path)
    itinerary = load_itinerary(path)
    head = [f"# itinerary {itinerary.name!r}: {path}"]
    for fragment in itinerary.includes:
        head.append(f"# includes {_relative(fragment, path)}: {fragment} (shown below)")
    head += [f"# templates: {itinerary.template_dir}",
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
    parts = ["\n".join(head) + "\n" + path.read_text(encoding="utf-8")]
    for fragment in itinerary.includes:
        parts.append(f"---\n# fragment {_relative(fragment, path)} ({fragment})\n"
                     + fragment.read_text(encoding="utf-8"))
    return "".join(part if part.endswith("\n") else part + "\n" for part in parts)


def _relative(fragment: Path, itinerary: Path) -> str:
    return os.path.relpath(fragment, itinerary.resolve().parent)


def copy_itinerary(name: str, folder: Path) -> tuple[Path, list[Path], list[Path]]:
    """Write the installed itinerary ``name``, its fragments and its templates under ``folder``;
    return the itinerary file, the template files and the fragment files written."""
    from statemachine.providers import find_itinerary

    source = find_itinerary(name).path
    itinerary = load_itinerary(source)
    text = source.read_text(encoding="utf-8")
    if not _SPEC.search(text):
        raise DefinitionError(f"{source}: cannot copy: expected a top-level 'spec:' line")
    target = folder / source.name
    fragments = []
    for fragment in itinerary.includes:
        relative = _relative(fragment, source)
        if relative.startswith(".."):
            raise DefinitionError(f"{fragment}: cannot copy: the fragment is outside the folder "
                                  f"of {source}")
        fragments.append((fragment, folder / relative))
    templates = [(itinerary.template_dir / t, folder / "templates" / t)
                 for t in used_templates(itinerary)]
    for path in (target, *(dst for _, dst in (*fragments, *templates))):
        if path.exists():
            raise DefinitionError(f"{path}: already exists (smrun itineraries --copy never "
                                  "overwrites; choose another folder)")
    if _TEMPLATES.search(text):  # a provider's itinerary names its own folder: now the copy's
        text = _TEMPLATES.sub(_COPIED, text, count=1)
    else:
        text = _SPEC.sub("spec:\n" + _COPIED, text, count=1)
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    for src, dst in (*fragments, *templates):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return target, [dst for _, dst in templates], [dst for _, dst in fragments]
