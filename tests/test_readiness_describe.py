"""``readiness.evaluate(..., describe=False)``: the engine's cheap per-watch-event judgement.

The status must be exactly what the described evaluation gives (ready, failed, pending); only a
pending verdict's message is left empty, because describing a wait costs more evaluations and
the engine explains a wait only when it times out. A failure is always explained: it ends the
state, and its message is what the user sees.
"""
from __future__ import annotations

from typing import Any

import pytest

from statemachine.itinerary import ReadinessSpec, parse_condition
from statemachine.readiness import evaluate, explain, progress


def spec(ready: str | None, failed: str | None = None, prog: str | None = None) -> ReadinessSpec:
    return ReadinessSpec(ready=parse_condition(ready) if ready else None,
                         failed=parse_condition(failed) if failed else None, progress=prog)


def dv(phase: str, progress_text: str = "45.0%", ready: str = "False") -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "web-1-disk0", "namespace": "shop"},
            "status": {"phase": phase, "progress": progress_text,
                       "conditions": [{"type": "Ready", "status": ready, "reason": phase}]}}


PHASE = spec("object.status.phase == 'Succeeded'", "object.status.phase == 'Failed'",
             "object.status.progress")
COND = spec("condition=Ready", "object.status.phase in ['Failed', 'Unknown']")
CASES = [  # (object, spec, status)
    (dv("Succeeded", "100.0%"), PHASE, "ready"),
    (dv("ImportInProgress"), PHASE, "pending"),
    (None, PHASE, "pending"),
    (dv("Failed"), PHASE, "failed"),
    (dv("Succeeded", ready="True"), COND, "ready"),
    (dv("ImportInProgress"), COND, "pending"),
    (dv("Unknown"), COND, "failed"),
    (None, spec("condition=Ready"), "pending"),
]


@pytest.mark.parametrize(("obj", "rspec", "status"), CASES)
def test_describe_false_gives_the_same_status(obj: dict[str, Any] | None, rspec: ReadinessSpec,
                                              status: str) -> None:
    described = evaluate(obj, rspec, {})
    quick = evaluate(obj, rspec, {}, describe=False)
    assert described.status == quick.status == status
    if status != "pending":  # ready and failed verdicts read the same either way
        assert quick.message == described.message != ""


def test_a_pending_message_is_empty_without_describe_and_full_by_default() -> None:
    obj = dv("ImportInProgress", "45.0%")
    assert evaluate(obj, PHASE, {}, describe=False).message == ""
    full = evaluate(obj, PHASE, {}).message
    assert PHASE.ready is not None
    assert full == (f"{explain(PHASE.ready, obj, {}, clause='ready')}; "
                    f"progress: {progress(obj, PHASE, {})}")
    assert full == ("ready: object.status.phase == 'Succeeded' was false "
                    "(object.status.phase = 'ImportInProgress'); progress: 45.0%")
    assert evaluate(None, COND, {}, describe=False).message == ""
    assert evaluate(None, COND, {}).message == \
        "ready: condition=Ready was false (the object does not exist)"
    assert evaluate(dv("ImportInProgress"), COND, {}).message == \
        "ready: condition=Ready was false (condition Ready: status=False, reason=ImportInProgress)"


def test_failures_are_explained_without_describe() -> None:
    failed = evaluate(dv("Failed"), PHASE, {}, describe=False)
    assert failed.failed
    assert failed.message == ("failed: object.status.phase == 'Failed' was true "
                              "(object.status.phase = 'Failed')")
    unknown = evaluate(dv("Unknown"), COND, {}, describe=False)
    assert unknown.failed and unknown.message.startswith(
        "failed: object.status.phase in ['Failed', 'Unknown'] was true")
