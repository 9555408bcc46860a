"""The engine's own, minimal view of an itinerary: what it executes, nothing about how it was written.

:func:`statemachine.engine.adapt.flow_from_itinerary` builds a :class:`Flow` from the loader's
frozen ``Itinerary``; keeping this seam means the scheduler, actions and runner depend on a few
small dataclasses rather than on every detail of the YAML schema. All strings that are templates
or expressions stay strings here; the engine evaluates them through :mod:`statemachine.engine.lang`.
This module does no I/O and evaluates nothing.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ActionKind = Literal["apply", "ensure", "patch", "delete", "delete_created", "wait"]
PatchType = Literal["merge", "json"]
TERMINAL_STATES = ("Completed", "Failed", "Canceled")


@dataclass(frozen=True)
class RefT:
    """An object reference whose strings are templates."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""
    cluster: str | None = None


@dataclass(frozen=True)
class ActionT:
    kind: ActionKind
    template: str | None = None         # apply/ensure; patch {template: ...}
    ref: RefT | None = None             # patch/delete
    patch: Any = None                   # patch value (strings are templates)
    patch_type: PatchType = "merge"
    seconds: Any = None                 # wait: number, or expression string
    until: str | None = None            # wait: expression giving an RFC 3339 time (or none)
    when: str | None = None
    cluster: str | None = None


@dataclass(frozen=True)
class ReadinessT:
    ready: str | None = None
    failed: str | None = None
    failed_for: float | None = None
    progress: str | None = None
    timeout: float | None = None
    object: RefT | None = None
    spec: Any = None                    # the loader's ReadinessSpec, handed back to readiness.evaluate


@dataclass(frozen=True)
class RetryT:
    limit: int = 0
    backoff: float = 10.0
    recreate: bool = True


@dataclass(frozen=True)
class NextT:
    to: str
    when: str | None = None


@dataclass(frozen=True)
class StateT:
    name: str
    step: str = ""
    when_all: tuple[str, ...] = ()
    when_any: tuple[str, ...] = ()
    cluster: str = "target"
    for_each: str | None = None
    actions: tuple[ActionT, ...] = ()
    readiness: ReadinessT | None = None
    timeout: float | None = None
    retry: RetryT | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)
    undo: tuple[ActionT, ...] = ()
    next: tuple[NextT, ...] = ()
    reads: tuple[ReadT, ...] = ()       # resolved at each entry (runner.resolve_state_reads)


@dataclass(frozen=True)
class ReadT:
    name: str
    cluster: str
    ref: RefT
    for_each: str | None = None
    optional: bool = False
    when: str | None = None


@dataclass(frozen=True)
class CheckT:
    name: str
    check: str
    message: str = ""
    severity: str = "block"
    for_each: str | None = None
    block_if: str | None = None


@dataclass(frozen=True)
class CommitT:
    after: str
    cluster: str
    object: RefT
    condition: str


@dataclass(frozen=True)
class Flow:
    """An itinerary as the engine runs it. ``states`` ends with ``Completed``."""

    name: str
    states: tuple[StateT, ...]
    reads: tuple[ReadT, ...] = ()
    predicates: Mapping[str, str] = field(default_factory=dict)
    commit: CommitT | None = None
    checks: tuple[CheckT, ...] = ()
    setup_states: tuple[StateT, ...] = ()
    setup_reads: tuple[ReadT, ...] = ()
    source: Any = None                  # the loader's Itinerary (for predicates.evaluate_all etc.)

    def state(self, name: str) -> StateT:
        for s in self.states:
            if s.name == name:
                return s
        for s in self.setup_states:
            if s.name == name:
                return s
        raise KeyError(name)

    def index(self, name: str, *, setup: bool = False) -> int:
        names = [s.name for s in (self.setup_states if setup else self.states)]
        return names.index(name)
