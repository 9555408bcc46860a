"""Readiness verdicts, table-driven over real KubeVirt / CDI / batch object shapes."""
from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from statemachine.errors import TemplateError
from statemachine.itinerary import ReadinessSpec, parse_condition
from statemachine.readiness import (Verdict, evaluate, explain, format_duration, progress,
                                    settle_failure, timeout_message)


def spec(ready: str | None = None, failed: str | None = None, prog: str | None = None,
         failed_for: float | None = None) -> ReadinessSpec:
    return ReadinessSpec(ready=parse_condition(ready) if ready else None,
                         failed=parse_condition(failed) if failed else None,
                         progress=prog, failed_for=failed_for)


VM = """
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: web-1, namespace: shop, generation: 3}
spec: {runStrategy: WaitAsReceiver}
status:
  printableStatus: {printable}
  ready: {ready}
  conditions:
  - {{type: Ready, status: "{ready_cond}", reason: {reason}}}
"""
VMI = """
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: web-1, namespace: shop}
status:
  phase: {phase}
  conditions:
  - {{type: Ready, status: "{ready}"}}
  - {{type: Paused, status: "{paused}"}}
"""
VMIM = """
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstanceMigration
metadata: {name: web-1-target, namespace: shop}
spec: {vmiName: web-1, receive: {migrationID: abc} }
status:
  phase: {phase}
  synchronizationAddresses: {addresses}
"""
DV = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: web-1-disk0, namespace: shop}
status:
  phase: {phase}
  progress: "{progress}"
  conditions:
  - {{type: Bound, status: "{bound}", reason: {bound}}}
  - {{type: Running, status: "{running}", reason: "{running_reason}"}}
  - {{type: Ready, status: "{ready}"}}
"""
JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: hook, namespace: shop}
status:
  conditions: {conditions}
"""

VM_READY = "object.status.printableStatus == 'Running'"
VMIM_READY = "object.status.phase == 'Succeeded'"
VMIM_FAILED = "object.status.phase == 'Failed'"
DV_READY = "object.status.phase in ['Succeeded', 'WaitForFirstConsumer', 'PendingPopulation']"
DV_FAILED = "object.status.phase == 'Failed'"

CASES: list[tuple[str, str, dict[str, Any], ReadinessSpec, str]] = [
    # id, template, fields, spec, expected status
    ("vm-running", VM, dict(printable="Running", ready="true", ready_cond="True", reason="Ready"),
     spec(VM_READY), "ready"),
    ("vm-migrating", VM, dict(printable="Migrating", ready="false", ready_cond="False",
                              reason="Migrating"), spec(VM_READY), "pending"),
    ("vm-waiting-for-receiver", VM, dict(printable="WaitingForReceiver", ready="false",
                                         ready_cond="False", reason="Receiving"),
     spec("jsonpath={.status.printableStatus}=WaitingForReceiver"), "ready"),
    ("vm-stopped-shorthand", VM, dict(printable="Stopped", ready="false", ready_cond="False",
                                      reason="Stopped"),
     spec("jsonpath={.status.printableStatus}=Stopped"), "ready"),
    ("vm-ready-bool-jsonpath", VM, dict(printable="Running", ready="true", ready_cond="True",
                                        reason="Ready"), spec("jsonpath={.status.ready}=true"), "ready"),
    ("vm-condition-ready-false", VM, dict(printable="Starting", ready="false", ready_cond="False",
                                          reason="Starting"), spec("condition=Ready=False"), "ready"),
    ("vm-condition-ready-case-insensitive", VM, dict(printable="Running", ready="true",
                                                     ready_cond="true", reason="Ready"),
     spec("condition=ready"), "ready"),
    ("vmi-running", VMI, dict(phase="Running", ready="True", paused="False"),
     spec("jsonpath={.status.phase}=Running", "jsonpath={.status.phase}=Failed"), "ready"),
    ("vmi-scheduling", VMI, dict(phase="Scheduling", ready="False", paused="False"),
     spec("jsonpath={.status.phase}=Running", "jsonpath={.status.phase}=Failed"), "pending"),
    ("vmi-failed", VMI, dict(phase="Failed", ready="False", paused="False"),
     spec("jsonpath={.status.phase}=Running", "jsonpath={.status.phase}=Failed"), "failed"),
    ("vmi-paused", VMI, dict(phase="Running", ready="True", paused="True"),
     spec("object.status.phase == 'Running' and condition_true(object, 'Paused')"), "ready"),
    ("vmim-waiting-for-sync", VMIM, dict(phase="WaitingForSync", addresses="[]"),
     spec(VMIM_READY, VMIM_FAILED), "pending"),
    ("vmim-running", VMIM, dict(phase="Running", addresses="['10.0.0.7:9185']"),
     spec(VMIM_READY, VMIM_FAILED), "pending"),
    ("vmim-succeeded", VMIM, dict(phase="Succeeded", addresses="['10.0.0.7:9185']"),
     spec(VMIM_READY, VMIM_FAILED), "ready"),
    ("vmim-failed", VMIM, dict(phase="Failed", addresses="[]"),
     spec(VMIM_READY, VMIM_FAILED), "failed"),
    ("vmim-sync-addresses", VMIM, dict(phase="Pending", addresses="['10.0.0.7:9185']"),
     spec("object.status.synchronizationAddresses | default([]) | length > 0"), "ready"),
    ("vmim-sync-addresses-empty", VMIM, dict(phase="WaitingForSync", addresses="[]"),
     spec("object.status.synchronizationAddresses | default([]) | length > 0"), "pending"),
    ("vmim-address-jsonpath-index", VMIM, dict(phase="Pending", addresses="['10.0.0.7:9185']"),
     spec("jsonpath={.status.synchronizationAddresses[0]}"), "ready"),
    ("dv-import-in-progress", DV, dict(phase="ImportInProgress", progress="45.20%", bound="True",
                                       running="True", running_reason="Pod is running",
                                       ready="False"),
     spec(DV_READY, DV_FAILED), "pending"),
    ("dv-succeeded", DV, dict(phase="Succeeded", progress="100.0%", bound="True", running="False",
                              running_reason="Completed", ready="True"),
     spec(DV_READY, DV_FAILED), "ready"),
    ("dv-wffc", DV, dict(phase="WaitForFirstConsumer", progress="N/A", bound="False",
                         running="False", running_reason="", ready="False"),
     spec(DV_READY, DV_FAILED), "ready"),
    ("dv-pending-population", DV, dict(phase="PendingPopulation", progress="N/A", bound="False",
                                       running="False", running_reason="", ready="False"),
     spec(DV_READY, DV_FAILED), "ready"),
    ("dv-failed", DV, dict(phase="Failed", progress="N/A", bound="False", running="False",
                           running_reason="Error", ready="False"),
     spec(DV_READY, DV_FAILED), "failed"),
    ("dv-ready-condition", DV, dict(phase="Succeeded", progress="100.0%", bound="True",
                                    running="False", running_reason="Completed", ready="True"),
     spec("condition=Ready"), "ready"),
    ("dv-running-error-is-not-failure", DV, dict(phase="ImportInProgress", progress="N/A",
                                                 bound="True", running="False",
                                                 running_reason="Error", ready="False"),
     spec("condition=Ready", DV_FAILED), "pending"),
    ("job-complete", JOB, dict(conditions="[{type: Complete, status: 'True'}]"),
     spec("condition=Complete", "condition=Failed"), "ready"),
    ("job-failed", JOB, dict(conditions="[{type: Failed, status: 'True', reason: BackoffLimitExceeded}]"),
     spec("condition=Complete", "condition=Failed"), "failed"),
    ("job-running-no-conditions", JOB, dict(conditions="[]"),
     spec("condition=Complete", "condition=Failed"), "pending"),
    ("job-failure-target-then-failed-first", JOB,
     dict(conditions="[{type: Complete, status: 'True'}, {type: Failed, status: 'True'}]"),
     spec("condition=Complete", "condition=Failed"), "failed"),
    ("exists-shorthand", JOB, dict(conditions="[]"), spec("exists"), "ready"),
    ("delete-shorthand-still-there", JOB, dict(conditions="[]"), spec("delete"), "pending"),
    ("no-ready-clause-exists", JOB, dict(conditions="[]"), spec(), "ready"),
]


def _fill(template: str, fields: dict[str, Any]) -> str:
    text = re.sub(r"\{(\w+)\}", lambda m: str(fields.get(m.group(1), m.group(0))), template)
    return text.replace("{{", "{").replace("}}", "}")


@pytest.mark.parametrize("template,fields,rspec,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_verdicts(template: str, fields: dict[str, Any], rspec: ReadinessSpec,
                  expected: str) -> None:
    obj = yaml.safe_load(_fill(template, fields))
    verdict = evaluate(obj, rspec, {})
    assert verdict.status == expected, verdict.message
    assert verdict.message


@pytest.mark.parametrize("rspec,expected", [
    (spec("delete"), "ready"), (spec("exists"), "pending"), (spec(VMIM_READY, VMIM_FAILED), "pending"),
    (spec(), "pending"), (spec("condition=Ready"), "pending"),
])
def test_absent_object(rspec: ReadinessSpec, expected: str) -> None:
    assert evaluate(None, rspec, {}).status == expected


def test_explain_names_clause_and_observed_values() -> None:
    obj = {"status": {"phase": "Running"}}
    cond = parse_condition(VMIM_READY)
    assert explain(cond, obj, {}) == \
        "ready: object.status.phase == 'Succeeded' was false (object.status.phase = 'Running')"
    assert explain(parse_condition(VMIM_FAILED), {"status": {"phase": "Failed"}}, {},
                   clause="failed") == \
        "failed: object.status.phase == 'Failed' was true (object.status.phase = 'Failed')"


def test_explain_lists_every_field_read_and_missing_ones_as_none() -> None:
    cond = parse_condition("object.status.phase == 'Running' and "
                           "object.status.migrationState.completed")
    message = explain(cond, {"status": {"phase": "Running"}}, {})
    assert message.endswith("(object.status.phase = 'Running', "
                            "object.status.migrationState.completed = none)")


def test_explain_shorthands() -> None:
    job = {"status": {"conditions": [{"type": "Failed", "status": "True",
                                      "reason": "BackoffLimitExceeded",
                                      "message": "Job has reached the specified backoff limit"}]}}
    assert explain(parse_condition("condition=Failed"), job, {}, clause="failed") == (
        "failed: condition=Failed was true (condition Failed: status=True, "
        "reason=BackoffLimitExceeded, message=Job has reached the specified backoff limit)")
    assert explain(parse_condition("condition=Complete"), job, {}) == \
        "ready: condition=Complete was false (no Complete condition)"
    assert explain(parse_condition("jsonpath={.status.phase}=Succeeded"),
                   {"status": {"phase": "Running"}}, {}) == \
        "ready: jsonpath={.status.phase}=Succeeded was false (object.status.phase = 'Running')"
    assert explain(parse_condition("delete"), {"a": 1}, {}) == \
        "ready: delete was false (the object exists)"
    assert explain(parse_condition(VMIM_READY), None, {}) == \
        "ready: object.status.phase == 'Succeeded' was false (the object does not exist)"


def test_pending_message_includes_progress() -> None:
    obj = {"status": {"phase": "ImportInProgress", "progress": "45.20%"}}
    rspec = spec(DV_READY, DV_FAILED, prog="object.status.progress | default('')")
    verdict = evaluate(obj, rspec, {})
    assert verdict == Verdict("pending", (
        "ready: object.status.phase in ['Succeeded', 'WaitForFirstConsumer', 'PendingPopulation']"
        " was false (object.status.phase = 'ImportInProgress'); progress: 45.20%"))
    assert progress(obj, rspec, {}) == "45.20%"
    assert progress({}, rspec, {}) == ""
    assert progress(obj, spec(DV_READY), {}) == ""


def test_conditions_see_the_context() -> None:
    rspec = spec("object.metadata.name == vm.name + '-target'")
    assert evaluate({"metadata": {"name": "web-target"}}, rspec, {"vm": {"name": "web"}}).ready


def test_undefined_variable_in_a_condition_is_an_error() -> None:
    with pytest.raises(TemplateError, match="'objct' is undefined"):
        evaluate({}, spec("objct.status.phase == 'x'"), {})


def test_failed_for_dwell() -> None:
    failed = Verdict("failed", "failed: x was true")
    verdict, first = settle_failure(failed, now=100.0, first_failed_at=None, failed_for=60.0)
    assert verdict.status == "pending" and first == 100.0
    assert "for 0s of 1m" in verdict.message
    verdict, first = settle_failure(failed, now=130.0, first_failed_at=first, failed_for=60.0)
    assert verdict.status == "pending" and first == 100.0
    verdict, first = settle_failure(failed, now=160.0, first_failed_at=first, failed_for=60.0)
    assert verdict is failed and first == 100.0
    # a blip: the failure stops holding, the clock resets
    verdict, first = settle_failure(Verdict("pending", "p"), now=170.0, first_failed_at=100.0,
                                    failed_for=60.0)
    assert verdict.status == "pending" and first is None
    verdict, first = settle_failure(failed, now=5.0, first_failed_at=None, failed_for=None)
    assert verdict is failed and first == 5.0


def test_timeout_message() -> None:
    rspec = spec(VMIM_READY)
    assert timeout_message("WaitForTargetMigration", 600, {"status": {"phase": "Running"}},
                           rspec, {}) == (
        "WaitForTargetMigration: timed out after 10m: ready: object.status.phase == 'Succeeded'"
        " was false (object.status.phase = 'Running')")
    assert timeout_message("Create", 5400, None, None, {}) == \
        "Create: timed out after 1h30m: the object does not exist"


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (42.4, "42s"), (600, "10m"), (5400, "1h30m"),
                                          (3661, "1h1m1s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
