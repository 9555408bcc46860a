"""The built-in live itinerary loads, passes the language's checks, and keeps the seed's shape."""
from __future__ import annotations

from statemachine import readiness
from statemachine.itinerary import StateSpec

from tests.live.conftest import live_itinerary

# The Forklift enhancement's pipeline (PR 1348), in order; refinements may add states between.
SEED_STATES = ["Started", "PreHook", "CreateEmptyDataVolumes", "EnsureResources", "CreateStandbyVM",
               "CreateTargetMigration", "WaitForTargetMigration", "CreateSourceMigration",
               "WaitForStateTransfer", "PostHook", "Completed"]


def _state(name: str) -> StateSpec:
    return next(s for s in live_itinerary().states if s.name == name)


def test_loads_as_a_live_itinerary() -> None:
    it = live_itinerary()
    assert it.migration_type == "live"
    assert it.states[-1].name == "Completed"


def test_seed_states_are_present_in_order() -> None:
    names = [s.name for s in live_itinerary().states]
    positions = [names.index(s) for s in SEED_STATES]
    assert positions == sorted(positions)


def test_target_vmi_is_waited_for_before_the_target_migration() -> None:
    names = [s.name for s in live_itinerary().states]
    assert names.index("CreateStandbyVM") < names.index("WaitForTargetVMI") \
        < names.index("CreateTargetMigration")
    ready = _state("WaitForTargetVMI").readiness
    assert ready is not None and ready.object is not None
    assert ready.object.kind == "VirtualMachineInstance"
    assert ready.ready is not None and "WaitingForSync" in ready.ready.source


def test_target_vm_must_run_with_the_restored_strategy_and_report_ready() -> None:
    # kubevirt-lifecycle.md §8.2 step 6: runStrategy restored, printableStatus Running, ready.
    spec = _state("WaitForTargetVM").readiness
    ctx = {"outputs": {"restoreRunStrategy": "Always"}}

    def vm(**status: object) -> dict[str, object]:
        return {"spec": {"runStrategy": "Always"}, "status": {"printableStatus": "Running", **status}}

    assert readiness.evaluate(vm(ready=True), spec, ctx).status == "ready"
    assert readiness.evaluate(vm(ready=False), spec, ctx).status == "pending"
    assert readiness.evaluate(vm(), spec, ctx).status == "pending"
    halted = {"spec": {"runStrategy": "WaitAsReceiver"},
              "status": {"printableStatus": "Running", "ready": True}}
    assert readiness.evaluate(halted, spec, ctx).status == "pending"


def test_hooks_run_only_when_the_vm_has_them() -> None:
    for name in ("PreHook", "PostHook"):
        when = _state(name).when
        assert when is not None and when.all == (f"Has{name}",), name


def test_service_exports_need_submariner_between_two_clusters() -> None:
    state = _state("CreateServiceExports")
    assert state.when is not None and set(state.when.all) == {"Submariner", "Intercluster"}
    assert [a.kind for a in state.undo] == ["delete_created"]


def test_every_wait_has_a_timeout() -> None:
    # States without their own timeout fall back to settings.stepTimeout; the short waits that can
    # hang on a broken cluster (connectivity, missing instancetype) carry a shorter one.
    for name in ("WaitForTargetVMI", "WaitForTargetMigration", "CreateSourceMigration",
                 "WaitForTargetVM", "WaitForSourceHalted"):
        readiness = _state(name).readiness
        assert readiness is not None and readiness.timeout is not None, name


def test_migration_id_and_connect_url_are_outputs() -> None:
    assert "migrationID" in _state("CreateTargetMigration").outputs
    assert _state("WaitForTargetMigration").outputs["connectURL"] \
        == "object.status.synchronizationAddresses[0]"


def test_commit_guards_the_hand_off() -> None:
    commit = live_itinerary().commit
    assert commit is not None
    assert commit.after == "CreateSourceMigration"
    assert commit.object.kind == "VirtualMachineInstance" and commit.cluster == "target"
    assert "completed" in commit.condition.source and "failed" in commit.condition.source


def test_undo_removes_target_objects_but_not_shared_resources() -> None:
    for name in ("CreateEmptyDataVolumes", "CreateEmptyPersistentVolumeClaims", "CreateStandbyVM",
                 "CreateTargetMigration", "CreateSourceMigration"):
        assert [a.kind for a in _state(name).undo] == ["delete_created"], name
    assert _state("EnsureResources").undo == ()
    assert all(a.kind == "ensure" for a in _state("EnsureResources").actions)


def test_ca_exchange_is_a_setup_in_both_directions() -> None:
    setup = live_itinerary().setup
    assert {s.cluster for s in setup.states} == {"source", "target"}
    for state in setup.states:
        patches = [a for a in state.actions if a.kind == "patch"]
        assert patches and patches[0].object is not None
        assert patches[0].object.name == "kubevirt-external-ca"


def test_preflight_rules() -> None:
    names = {c.name for c in live_itinerary().preflight}
    assert names == {
        "LiveMigrationAvailable", "TargetLiveMigrationAvailable", "SourceRunning",
        "StorageLiveMigratable", "LiveMigratable", "NoShareableDisks", "NoLunDisks",
        "NoFilesystemDevices", "TargetVMNameFree", "TargetDataVolumeNamesFree",
        "TargetClaimNamesFree", "NetworksMapped", "StorageMapped", "ClusterInstancetypePresent",
        "ClusterInstancetypeMatches", "ClusterPreferencePresent", "ClusterPreferenceMatches"}
    warns = {c.name for c in live_itinerary().preflight if c.severity == "warn"}
    assert warns == {"ClusterInstancetypeMatches", "ClusterPreferenceMatches"}
