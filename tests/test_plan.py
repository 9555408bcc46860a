"""The plan file: schema, defaults, path resolution, semantic checks and error format."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from statemachine.errors import SchemaError
from statemachine.plan import ClusterRef, load_plan

VALID = Path(__file__).parent / "data" / "plans" / "valid"


def write_plan(tmp_path: Path, spec: str, name: str = "plan.yaml") -> Path:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    path = tmp_path / name
    path.write_text("apiVersion: smrun.io/v1alpha1\nkind: Plan\nmetadata: {name: p}\nspec:\n"
                    f"{body}\n", encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(SchemaError) as info:
        load_plan(path)
    return [str(p) for p in info.value.problems]


MINIMAL_SIM = """
simulation: {seed: ./seed.yaml}
vms: [{name: a, namespace: ns}]
"""


@pytest.fixture()
def sim_dir(tmp_path: Path) -> Path:
    (tmp_path / "seed.yaml").write_text("source: []\ntarget: []\n", encoding="utf-8")
    return tmp_path


def test_the_simulated_example_plan_loads_with_every_field_resolved() -> None:
    plan = load_plan(VALID / "sim-live.yaml")
    assert plan.name == "sim-live"
    assert plan.type == "live"
    assert plan.provider == "kubevirt"
    assert plan.simulation is not None and plan.simulation.seed == VALID / "seed.yaml"
    assert plan.settings.max_in_flight == 2 and plan.settings.step_timeout == 600.0
    assert plan.storage_map[0].storage_class == "gp3" and plan.storage_map[0].volume_mode == "Block"
    vm = plan.vms[0]
    assert (vm.name, vm.namespace, vm.target_name, vm.target_namespace) == ("web-1", "shop", "web-1", "shop")
    hook = vm.hook_for("PostHook")
    assert hook is not None and hook.image == "quay.io/konveyor/hook-runner"
    assert hook.playbook is not None and "quiesce" in hook.playbook
    assert vm.hook_for("PreHook") is None


def test_type_takes_precedence_over_the_legacy_warm_flag(sim_dir: Path) -> None:
    assert load_plan(write_plan(sim_dir, "type: live\nwarm: true\n" + MINIMAL_SIM)).type == "live"
    assert load_plan(write_plan(sim_dir, "warm: true\n" + MINIMAL_SIM)).type == "warm"
    assert load_plan(write_plan(sim_dir, "warm: false\n" + MINIMAL_SIM)).type == "cold"
    assert load_plan(write_plan(sim_dir, MINIMAL_SIM)).type == "cold"


def test_settings_defaults_apply_when_the_plan_sets_none(sim_dir: Path) -> None:
    settings = load_plan(write_plan(sim_dir, MINIMAL_SIM)).settings
    assert settings.max_in_flight == 10
    assert settings.step_timeout == 30 * 60
    assert settings.require_matching_instance_types is False
    assert settings.cutover_method == "restartPaused"


def test_warm_settings_are_parsed(sim_dir: Path) -> None:
    plan = load_plan(write_plan(sim_dir, """
        settings: {precopyInterval: 1h30m, maxPrecopyRounds: 5, autoCutoverDeltaBytes: 1048576, cutoverMethod: pause}
        """ + MINIMAL_SIM))
    assert plan.settings.precopy_interval == 5400.0
    assert plan.settings.max_precopy_rounds == 5
    assert plan.settings.auto_cutover_delta_bytes == 1048576
    assert plan.settings.cutover_method == "pause"


def test_cluster_plan_resolves_kubeconfig_relative_to_the_plan_and_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/a.yaml:/etc/kube/b.yaml")
    plan = load_plan(VALID / "clusters.yaml")
    assert plan.type == "warm"
    assert plan.source == ClusterRef(VALID / "kube" / "east.yaml", "east")
    assert plan.target == ClusterRef(Path("/etc/kube/a.yaml"), "west")
    db1, db2 = plan.vms
    assert (db1.target_name, db1.target_namespace, db1.cutover) == ("db-1", "vms", "2026-12-01T02:00:00Z")
    assert (db2.target_name, db2.target_namespace, db2.cutover) == ("db-2-new", "other", "2026-12-02T00:00:00Z")
    assert db2.namespaces == {"source": db2.namespace, "target": "other"}


def test_kubeconfig_falls_back_to_home_when_kubeconfig_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert load_plan(VALID / "clusters.yaml").target.kubeconfig == Path.home() / ".kube" / "config"


def test_itinerary_is_a_builtin_name_or_a_file_relative_to_the_plan(sim_dir: Path) -> None:
    assert load_plan(write_plan(sim_dir, "itinerary: live\n" + MINIMAL_SIM)).itinerary == "live"
    (sim_dir / "mine.yaml").write_text("{}", encoding="utf-8")
    assert load_plan(write_plan(sim_dir, "itinerary: ./mine.yaml\n" + MINIMAL_SIM)).itinerary == sim_dir / "mine.yaml"
    assert load_plan(write_plan(sim_dir, MINIMAL_SIM)).itinerary is None


def test_a_missing_itinerary_file_is_reported_at_its_field(sim_dir: Path) -> None:
    path = write_plan(sim_dir, "itinerary: ./nope.yaml\n" + MINIMAL_SIM)
    assert problems_of(path) == [f"{path}:5: spec.itinerary: file not found: ./nope.yaml"]


def test_an_unknown_hook_name_is_an_error_naming_the_field(sim_dir: Path) -> None:
    path = write_plan(sim_dir, """
        simulation: {seed: ./seed.yaml}
        hooks: [{name: quiesce, image: img}]
        vms:
          - name: a
            namespace: ns
            hooks: [{step: PreHook, hook: quiese}]
        """)
    assert problems_of(path) == [f"{path}:10: spec.vms[0].hooks[0].hook: unknown hook 'quiese' (known: quiesce)"]


def test_duplicate_vms_are_rejected(sim_dir: Path) -> None:
    path = write_plan(sim_dir, """
        simulation: {seed: ./seed.yaml}
        vms:
          - {name: a, namespace: ns}
          - {name: a, namespace: ns}
        """)
    assert problems_of(path) == [f"{path}:8: spec.vms[1]: duplicate VM ns/a (also spec.vms[0])"]


def test_two_vms_with_one_target_are_rejected(sim_dir: Path) -> None:
    path = write_plan(sim_dir, """
        simulation: {seed: ./seed.yaml}
        vms:
          - {name: a, namespace: ns}
          - {name: b, namespace: ns, targetName: a}
        """)
    assert "spec.vms[1]: target ns/a is also the target of spec.vms[0]" in problems_of(path)[0]


def test_unknown_settings_are_rejected_with_a_suggestion(sim_dir: Path) -> None:
    path = write_plan(sim_dir, "settings: {maxInFlite: 3}\n" + MINIMAL_SIM)
    assert problems_of(path) == [f"{path}:5: spec.settings.maxInFlite: unknown field 'maxInFlite' "
                                 "(did you mean 'maxInFlight'?)"]


def test_every_problem_is_reported_at_once(sim_dir: Path) -> None:
    path = write_plan(sim_dir, """
        type: Hot
        settings: {stepTimeout: soon}
        simulation: {seed: ./seed.yaml}
        vms: [{name: A, namespace: ns}]
        """)
    found = problems_of(path)
    assert len(found) == 3
    assert found[0].startswith(f"{path}:5: spec.type: ")
    assert found[1].startswith(f"{path}:6: spec.settings.stepTimeout: 'soon' is not a duration")
    assert found[2].startswith(f"{path}:8: spec.vms[0].name: 'A' is not a DNS subdomain")


def test_clusters_are_required_unless_simulated(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "target: {context: west}\nvms: [{name: a, namespace: ns}]")
    assert problems_of(path) == [f"{path}:4: spec: source is required (or give spec.simulation)"]


def test_a_missing_seed_or_playbook_is_reported(tmp_path: Path) -> None:
    path = write_plan(tmp_path, """
        simulation: {seed: ./nope.yaml}
        hooks: [{name: h, image: img, playbook: ./missing.yml}]
        vms: [{name: a, namespace: ns}]
        """)
    assert problems_of(path) == [f"{path}:5: spec.simulation.seed: file not found: ./nope.yaml",
                                 f"{path}:6: spec.hooks[0].playbook: cannot read playbook file ./missing.yml"]


def test_vm_lookup_accepts_name_or_namespace_slash_name() -> None:
    plan = load_plan(VALID / "clusters.yaml")
    assert plan.vm("db-2").target_name == "db-2-new"
    assert plan.vm("data/db-1").name == "db-1"
    with pytest.raises(KeyError):
        plan.vm("other/db-1")


def test_durations_may_be_numbers_of_seconds(sim_dir: Path) -> None:
    plan = load_plan(write_plan(sim_dir, "settings: {stepTimeout: 90, precopyInterval: 1h2m3s}\n" + MINIMAL_SIM))
    assert (plan.settings.step_timeout, plan.settings.precopy_interval) == (90.0, 3723.0)


def test_itinerary_specific_settings_have_defaults_and_keep_kubernetes_durations(sim_dir: Path) -> None:
    defaults = load_plan(write_plan(sim_dir, MINIMAL_SIM)).settings
    assert (defaults.export_ttl, defaults.import_restart_limit, defaults.submariner) == ("12h", 5, False)
    plan = load_plan(write_plan(sim_dir, "settings: {exportTTL: 7200, importRestartLimit: 2, submariner: true}\n"
                                + MINIMAL_SIM))
    assert (plan.settings.export_ttl, plan.settings.import_restart_limit, plan.settings.submariner) == \
        ("7200s", 2, True)


def test_hook_deadline_and_service_account_are_parsed(sim_dir: Path) -> None:
    plan = load_plan(write_plan(sim_dir, """
        simulation: {seed: ./seed.yaml}
        hooks: [{name: h, image: img, serviceAccount: hooks, deadline: 5m}]
        vms: [{name: a, namespace: ns, hooks: [{step: PreHook, hook: h}]}]
        """))
    hook = plan.vms[0].hook_for("PreHook")
    assert hook is not None and (hook.service_account, hook.deadline, hook.playbook) == ("hooks", 300.0, None)


def test_a_zero_step_timeout_is_rejected_not_silently_thirty_minutes(sim_dir: Path) -> None:
    path = write_plan(sim_dir, "settings: {stepTimeout: 0s}\n" + MINIMAL_SIM)
    assert problems_of(path) == [f"{path}:5: spec.settings.stepTimeout: must be longer than 0s"]


def test_cutover_times_are_normalised_to_utc(sim_dir: Path) -> None:
    """Itineraries compare cutover times with now() as text: one form, UTC with Z."""
    plan = load_plan(write_plan(sim_dir, """
        type: warm
        cutover: "2026-12-01T03:00:00+01:00"
        simulation: {seed: ./seed.yaml}
        vms: [{name: a, namespace: ns}, {name: b, namespace: ns, cutover: "2026-12-01T01:30:00.5Z"}]
        """))
    assert plan.cutover == "2026-12-01T02:00:00Z"
    assert [vm.cutover for vm in plan.vms] == ["2026-12-01T02:00:00Z", "2026-12-01T01:30:00Z"]


def test_a_cutover_without_an_offset_is_refused_at_its_field(sim_dir: Path) -> None:
    found = problems_of(write_plan(sim_dir, """
        type: warm
        cutover: "2026-12-01T02:00:00"
        simulation: {seed: ./seed.yaml}
        vms: [{name: a, namespace: ns}]
        """))
    assert any("spec.cutover" in p and "RFC 3339" in p for p in found), found


def test_warm_copy_settings_reach_the_template_context(sim_dir: Path) -> None:
    from statemachine.context import settings_context
    plan = load_plan(write_plan(sim_dir, """
        settings: {backupTTL: 2h, scratchStorageClass: fast, scratchSize: 20Gi, copyImage: "python:3.13", copyParallelism: 8, quiescePrecopy: true}
        simulation: {seed: ./seed.yaml}
        vms: [{name: a, namespace: ns}]
        """))
    ctx = settings_context(plan.settings)
    assert {k: ctx[k] for k in ("backupTTL", "scratchStorageClass", "scratchSize", "copyImage",
                                "copyParallelism", "quiescePrecopy")} == {
        "backupTTL": "2h", "scratchStorageClass": "fast", "scratchSize": "20Gi",
        "copyImage": "python:3.13", "copyParallelism": 8, "quiescePrecopy": True}
    assert problems_of(write_plan(sim_dir, "settings: {copyParallelism: 0}\nsimulation: {seed: ./seed.yaml}\n"
                                  "vms: [{name: a, namespace: ns}]\n"))
