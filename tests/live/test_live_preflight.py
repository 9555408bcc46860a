"""Each live preflight rule refuses (or warns about) the VM that breaks it, naming VM and rule.

The seeds are in tests/data/live/: preflight-seed.yaml holds one VM per rule (its annotation says
which) plus ok-vm, which passes every rule; nosync-seed.yaml has clusters without decentralized
live migration. Preflight runs as ``smrun validate`` runs it, against simulated clusters started
from the seed (in process).
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from statemachine.commands import preflight
from statemachine.errors import PreflightError
from statemachine.plan import load_plan

from tests.live.conftest import DATA, live_itinerary

# VM -> the blocking rules it must be refused with (and no others).
EXPECTED = {
    "ok-vm": set(),
    "stopped-vm": {"SourceRunning"},
    "bridge-vm": {"StorageLiveMigratable", "LiveMigratable"},
    "shared-disk-vm": {"NoShareableDisks"},
    "lun-vm": {"NoLunDisks"},
    "fs-vm": {"NoFilesystemDevices"},
    "taken-vm": {"TargetVMNameFree"},
    "taken-dv-vm": {"TargetDataVolumeNamesFree"},
    "taken-pvc-vm": {"TargetClaimNamesFree"},
    "unmapped-net-vm": {"NetworksMapped"},
    "ignored-net-vm": {"NetworksMapped"},
    "unmapped-sc-vm": {"StorageMapped"},
    "missing-it-vm": {"ClusterInstancetypePresent"},
    "diff-it-vm": set(),
    "missing-pref-vm": {"ClusterPreferencePresent"},
    "diff-pref-vm": set(),
}
WARNED = {"diff-it-vm": "ClusterInstancetypeMatches", "diff-pref-vm": "ClusterPreferenceMatches"}
_FINDING = re.compile(r"^(?:warning: )?apps/(?P<vm>[a-z0-9-]+): (?P<rule>[A-Za-z]+): (?P<msg>.+)$")


def _preflight(plan_file: Path) -> tuple[list[str], list[str]]:
    """(blocking findings, warnings) of ``smrun validate``'s cluster checks for ``plan_file``."""
    stream = io.StringIO()
    try:
        preflight(load_plan(plan_file), live_itinerary(), stream=stream)
        problems: list[str] = []
    except PreflightError as e:
        problems = list(e.problems)
    warnings = [line for line in stream.getvalue().splitlines() if line.startswith("warning: ")]
    return problems, warnings


def _by_vm(lines: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for line in lines:
        m = _FINDING.match(line)
        assert m is not None, f"a finding that does not name VM and rule: {line!r}"
        out.setdefault(m["vm"], {})[m["rule"]] = m["msg"]
    return out


@pytest.fixture(scope="module")
def findings() -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    problems, warnings = _preflight(DATA / "preflight-plan.yaml")
    return _by_vm(problems), _by_vm(warnings)


@pytest.mark.parametrize("vm", sorted(EXPECTED))
def test_each_vm_is_refused_by_its_rule_only(
        vm: str, findings: tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]) -> None:
    blocking, _ = findings
    assert set(blocking.get(vm, {})) == EXPECTED[vm]


def test_messages_say_what_is_wrong(
        findings: tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]) -> None:
    blocking, _ = findings
    assert "Stopped" in blocking["stopped-vm"]["SourceRunning"]
    assert "InterfaceNotLiveMigratable" in blocking["bridge-vm"]["LiveMigratable"]
    assert blocking["shared-disk-vm"]["NoShareableDisks"].endswith(": quorum")
    assert blocking["lun-vm"]["NoLunDisks"].endswith(": scsi")
    assert blocking["fs-vm"]["NoFilesystemDevices"].endswith(": share")
    assert "apps/taken-dv-vm-root" in blocking["taken-dv-vm"]["TargetDataVolumeNamesFree"]
    assert "apps/taken-pvc-vm-root" in blocking["taken-pvc-vm"]["TargetClaimNamesFree"]
    assert "apps/storage-net" in blocking["unmapped-net-vm"]["NetworksMapped"]
    assert "ignored" in blocking["ignored-net-vm"]["NetworksMapped"]
    assert "storage class slow" in blocking["unmapped-sc-vm"]["StorageMapped"]
    assert "u1.large" in blocking["missing-it-vm"]["ClusterInstancetypePresent"]
    assert "windows" in blocking["missing-pref-vm"]["ClusterPreferencePresent"]


def test_instancetype_differences_warn(
        findings: tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]) -> None:
    _, warnings = findings
    assert {vm: set(rules) for vm, rules in warnings.items()} == \
        {vm: {rule} for vm, rule in WARNED.items()}
    assert "u1.small differs" in warnings["diff-it-vm"]["ClusterInstancetypeMatches"]


def test_instancetype_differences_block_when_required() -> None:
    problems, warnings = _preflight(DATA / "preflight-strict-plan.yaml")
    blocking = _by_vm(problems)
    for vm, rule in WARNED.items():
        assert set(blocking[vm]) == {rule}
    assert not warnings


def test_clusters_without_decentralized_live_migration_refuse_every_vm() -> None:
    problems, _ = _preflight(DATA / "nosync-plan.yaml")
    blocking = _by_vm(problems)
    assert set(blocking) == {"ok-vm"}
    assert set(blocking["ok-vm"]) == {"LiveMigrationAvailable", "TargetLiveMigrationAvailable"}
    assert "synchronizationAddresses" in blocking["ok-vm"]["LiveMigrationAvailable"]
