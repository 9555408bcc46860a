"""Which states a preview covers: the states that run first.

A preview runs before the run, so it only knows what the clusters hold now. The rule, per VM (and
once for the plan's ``setup``), in the itinerary's order over the states the VM's predicates
enable: **the preview covers every state up to, not including, the first state that depends on
what an earlier state records during the run**: anything it renders holds a placeholder,
``<output:NAME>`` (an ``outputs`` value of an earlier state, such as the target VM's uid or the
migration's connect URL) or ``<read:NAME>`` (a state read of an object that does not exist yet,
such as an export's token Secret) — see :mod:`statemachine.render`.

States after that one are not previewed even if they alone would render: they run after it, on
a cluster it has changed. Waits, timers and states switched off by predicates render nothing and
do not stop the preview. The first state that stops a VM's preview is reported with its reason.
Objects an earlier previewed state creates (a namespace, a DataVolume a VM names) do not stop
it: a diff shows them as new, and the server dry run does not send what the server cannot judge
yet (:mod:`statemachine.diff.serverdryrun`).

This module reads no cluster.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from statemachine.render import RenderedManifest

__all__ = ["Preview", "Stop", "first_states", "namespace_of"]

_PLACEHOLDER = re.compile(r"<(output|read):([^>]+)>")


@dataclass(frozen=True)
class Stop:
    """Where a VM's (``vm`` ``None``: setup's) preview stops, and why."""

    vm: str | None
    state: str
    reason: str


@dataclass(frozen=True)
class Preview:
    manifests: tuple[RenderedManifest, ...]
    """What the first states would do, in the order the run would do it."""
    stops: tuple[Stop, ...]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _placeholder(manifest: RenderedManifest) -> str | None:
    for text in _strings(manifest.manifest):
        found = _PLACEHOLDER.search(text)
        if found is not None:
            what, name = found.groups()
            if what == "output":
                return f"it uses outputs.{name}, which an earlier state records during the run"
            return f"it reads {name}, which does not exist before the run"
    return None


def namespace_of(manifest: RenderedManifest) -> str:
    """The namespace the manifest's object lives in (``""`` when cluster-scoped or unknown)."""
    if manifest.action in ("apply", "ensure"):
        return str((manifest.manifest.get("metadata") or {}).get("namespace") or "")
    return str((manifest.manifest.get("object") or {}).get("namespace") or "")


def _groups(manifests: Sequence[RenderedManifest]) -> Iterator[list[list[RenderedManifest]]]:
    """Per VM (setup first, as rendered), its states' manifests, one list per state."""
    by_vm: dict[str | None, list[list[RenderedManifest]]] = {}
    for m in manifests:
        states = by_vm.setdefault(m.vm, [])
        if states and states[-1][0].state == m.state:
            states[-1].append(m)
        else:
            states.append([m])
    yield from by_vm.values()


def first_states(manifests: Sequence[RenderedManifest]) -> Preview:
    """The manifests of the states that run first (the module's rule), and where each VM stops.

    ``manifests`` is :func:`statemachine.render.render_plan`'s output."""
    kept: list[RenderedManifest] = []
    stops: list[Stop] = []
    for states in _groups(manifests):
        for state in states:
            reason = next((r for r in map(_placeholder, state) if r is not None), None)
            if reason is not None:
                stops.append(Stop(state[0].vm, state[0].state, reason))
                break
            kept.extend(state)
    return Preview(tuple(kept), tuple(stops))
