"""Where an itinerary uses an apiVersion/kind: ``file:line: path`` of the first place that names it.

Preflight reports a kind a cluster does not serve as one line pointing at the itinerary
(:func:`statemachine.engine.preflight.report_unserved`; offline, for a simulated plan, :func:`render_served`). A kind comes from a rendered template
(an ``apply``/``ensure`` action) or is written literally in a reference (``reads``, a readiness
``object``, ``patch``/``delete`` objects, ``commit``). This module looks, in that order, at the
manifests preflight rendered, at the itinerary's references, and at the text of its templates
(a ``kind:`` line: for a VM whose render stopped at the missing kind). It re-reads the itinerary
file, which happens only when a kind is missing. It talks to no cluster.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from statemachine.errors import DefinitionError, KindNotServed, SmrunError
from statemachine.itinerary import Itinerary, StateSpec
from statemachine.yamlsource import DocPath

if TYPE_CHECKING:
    from statemachine.render import RenderedManifest

__all__ = ["kind_origin", "unserved_line", "render_served"]


def kind_origin(itinerary: Itinerary, api_version: str, kind: str,
                rendered: Iterable[RenderedManifest] = ()) -> str | None:
    """``flow.yaml:22: spec.states[1].actions[0].apply`` where ``itinerary`` uses the kind, or
    ``None`` when it cannot be found (a kind built at run time)."""
    from statemachine.itinerary_include import load_assembled

    try:
        doc = load_assembled(itinerary.file).doc  # with its fragments: a kind may come from one
    except SmrunError:
        return None
    path = _from_rendered(itinerary, api_version, kind, rendered) \
        or _from_refs(doc.data, api_version, kind) \
        or _from_template_text(itinerary, kind)
    if path is None:
        return None
    return doc.where(path)


def unserved_line(itinerary: Itinerary, cluster: str, api_version: str, kind: str,
                  rendered: Iterable[RenderedManifest] = (), *, simulated: bool = False,
                  served: Sequence[str] | None = None) -> str:
    """The one line for a kind ``cluster`` does not serve: where, which cluster, which kind, and
    (given the kinds ``served`` in that apiVersion) the closest one or that there are none."""
    where = kind_origin(itinerary, api_version, kind, rendered)
    what = f"the {'simulated ' if simulated else ''}{cluster} cluster"
    hint = ""
    if served is not None:
        # Compared in lower case with a high cutoff: a wrong case or a stray letter is
        # suggested; a different kind of the same API (DataSource for DataVolume) is not.
        lower = {k.lower(): k for k in served}
        close = difflib.get_close_matches(kind.lower(), list(lower), n=1, cutoff=0.8)
        hint = f" (did you mean {lower[close[0]]!r}?)" if close else \
            (f" (it serves no {api_version} kinds: is that API installed?)" if not served else "")
    return f"{where + ': ' if where else ''}{what} does not serve {api_version} {kind}{hint}"


class _Served(Protocol):
    def served(self, cluster: str, api_version: str, kind: str) -> bool: ...

    def kinds_served(self, cluster: str, api_version: str) -> Sequence[str]: ...


def render_served(itinerary: Itinerary, render: Callable[[], list[RenderedManifest]],
                  clusters: _Served) -> list[RenderedManifest]:
    """``render()`` (offline, from a simulation seed), then: a kind the simulated clusters do not
    serve, read or rendered, is a :class:`DefinitionError` of one line (``smrun validate
    --offline``: the same finding preflight makes against the started clusters)."""
    try:
        manifests = render()
    except KindNotServed as e:
        raise DefinitionError(unserved_line(
            itinerary, e.cluster, e.api_version, e.kind, simulated=True,
            served=clusters.kinds_served(e.cluster, e.api_version))) from None
    for m in manifests:
        obj = m.manifest if m.action in ("apply", "ensure") else m.manifest.get("object") or {}
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        if api_version and kind and not clusters.served(m.cluster, api_version, kind):
            raise DefinitionError(unserved_line(
                itinerary, m.cluster, api_version, kind, manifests, simulated=True,
                served=clusters.kinds_served(m.cluster, api_version)))
    return manifests


def _actions(itinerary: Itinerary) -> Iterator[tuple[StateSpec, DocPath, int, str, str]]:
    """(state, path of its actions list, index, template, apply|ensure) of every templated
    action."""
    for base, states in ((("spec", "states"), itinerary.states),
                         (("spec", "setup", "states"), itinerary.setup.states)):
        for i, state in enumerate(states):
            for key, actions in (("actions", state.actions), ("undo", state.undo)):
                for j, action in enumerate(actions):
                    if action.template is not None and action.kind in ("apply", "ensure"):
                        yield state, (*base, i, key), j, action.template, action.kind


def _from_rendered(itinerary: Itinerary, api_version: str, kind: str,
                   rendered: Iterable[RenderedManifest]) -> DocPath | None:
    for m in rendered:
        if m.action not in ("apply", "ensure") or m.manifest.get("kind") != kind \
                or m.manifest.get("apiVersion") != api_version:
            continue
        for state, base, j, template, _ in _actions(itinerary):
            if state.name == m.state and template == m.template:
                return (*base, j, m.action)
    return None


def _from_refs(data: Any, api_version: str, kind: str, path: DocPath = ()) -> DocPath | None:
    if isinstance(data, dict):
        if data.get("apiVersion") == api_version and data.get("kind") == kind and path:
            return path
        for key, value in data.items():
            found = _from_refs(value, api_version, kind, (*path, key))
            if found is not None:
                return found
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found = _from_refs(value, api_version, kind, (*path, i))
            if found is not None:
                return found
    return None


def _from_template_text(itinerary: Itinerary, kind: str) -> DocPath | None:
    line = re.compile(rf"^kind:\s*[\"']?{re.escape(kind)}[\"']?\s*$", re.MULTILINE)
    for _, base, j, template, key in _actions(itinerary):
        try:
            text = (itinerary.template_dir / template).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if line.search(text):
            return (*base, j, key)
    return None
