"""What a running Plan takes from a spec change (statemachine/operator/livespec.py): the cutover,
per VM (its own, else the plan's, in UTC with a Z) and the cancel flag; any other change is not a
live one."""
from __future__ import annotations

from statemachine.cutover import CutoverOverride
from statemachine.operator.livespec import cutover_override, only_live_changes

SPEC = {"type": "warm", "settings": {"precopyInterval": "1s"},
        "vms": [{"name": "a", "namespace": "ns"}, {"name": "b", "namespace": "ns"}]}


def test_cutover_override_per_vm() -> None:
    assert cutover_override(SPEC) == CutoverOverride()
    moved = {**SPEC, "cutover": "2031-01-01T01:00:00+01:00",
             "vms": [SPEC["vms"][0], {"name": "b", "namespace": "ns",  # type: ignore[index]
                                      "cutover": "2030-06-01T00:00:00Z"}]}
    assert cutover_override(moved) == CutoverOverride(vms={"ns/a": "2031-01-01T00:00:00Z",
                                                           "ns/b": "2030-06-01T00:00:00Z"})
    # A time that does not parse moves nothing (the plan's validation names it).
    assert cutover_override({**SPEC, "cutover": "tomorrow"}) == CutoverOverride()


def test_only_cancel_and_cutover_are_live_changes() -> None:
    assert only_live_changes(SPEC, {**SPEC, "cancel": True, "cutover": "2031-01-01T00:00:00Z"})
    per_vm = {**SPEC, "vms": [{"name": "a", "namespace": "ns", "cutover": "2031-01-01T00:00:00Z"},
                              {"name": "b", "namespace": "ns"}]}
    assert only_live_changes(SPEC, per_vm)
    assert not only_live_changes(SPEC, {**SPEC, "settings": {"precopyInterval": "2s"}})
    assert not only_live_changes(SPEC, {**SPEC, "vms": SPEC["vms"][:1]})  # type: ignore[index]
