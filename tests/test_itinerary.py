"""Itinerary loading: file-driven valid/invalid cases, the built-ins, and the dataclasses."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from statemachine.errors import DefinitionError, SchemaError
from statemachine.itinerary import (Action, Itinerary, builtin_itineraries, flow_edges,
                                    load_itinerary, parse_condition, parse_duration)
from statemachine.resources import data_dir

DATA = Path(__file__).parent / "data" / "itineraries"
VALID = sorted((DATA / "valid").glob("*.yaml"))
INVALID = sorted((DATA / "invalid").glob("*.yaml"))


def _expectations(path: Path) -> tuple[str, str]:
    head = path.read_text().splitlines()[:2]
    found = dict(re.match(r"# expect-(\w+): ?(.*)", line).groups() for line in head)  # type: ignore[union-attr]
    return found["path"], found["message"]


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_itineraries_load(path: Path) -> None:
    itinerary = load_itinerary(path)
    assert isinstance(itinerary, Itinerary)
    assert itinerary.states[-1].name == "Completed"


def test_there_are_enough_invalid_itineraries() -> None:
    assert len(INVALID) >= 20


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_itinerary_names_file_line_and_field(path: Path) -> None:
    want_path, want_message = _expectations(path)
    with pytest.raises(DefinitionError) as caught:
        load_itinerary(path)
    error = caught.value
    assert isinstance(error, SchemaError)
    matching = [p for p in error.problems if p.path == want_path and want_message in p.message]
    assert matching, f"no problem at {want_path!r} with {want_message!r} in:\n{error}"
    problem = matching[0]
    assert problem.file == str(path)
    assert problem.line is not None and problem.line >= 1
    # One line per problem, starting with file:line, no traceback text.
    for line in str(error).splitlines():
        assert line.startswith(f"{path}:"), line
        assert "Traceback" not in line


@pytest.mark.parametrize("name", ["cold", "warm", "live"])
def test_builtin_itineraries_validate(name: str) -> None:
    itinerary = load_itinerary(name)
    assert itinerary.migration_type == name
    assert itinerary.file == data_dir("itineraries") / f"{name}.yaml"


def test_builtin_itineraries_lists_name_description_and_path() -> None:
    listed = {name: (description, path) for name, description, path in builtin_itineraries()}
    assert {"cold", "warm", "live"} <= set(listed)
    for name, (description, path) in listed.items():
        assert description, name
        assert path.is_file() and path.stem == name


def test_unknown_builtin_name_is_a_one_line_error() -> None:
    with pytest.raises(SchemaError) as caught:
        load_itinerary("tepid")
    assert "tepid" in str(caught.value) and "unknown itinerary" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "many.yaml"
    bad.write_text(
        "apiVersion: smrun.io/v1alpha1\nkind: Itinerary\nmetadata: {name: many}\nspec:\n"
        "  migrationType: live\n  states:\n"
        "    - name: Started\n      when: {all: [Nope]}\n"
        "    - name: Copy\n      next: [{to: Gone}]\n"
        "    - name: Completed\n")
    with pytest.raises(SchemaError) as caught:
        load_itinerary(bad)
    messages = [p.message for p in caught.value.problems]
    assert any("unknown predicate 'Nope'" in m for m in messages)
    assert any("unknown state 'Gone'" in m for m in messages)
    assert [p.line for p in caught.value.problems] == sorted(p.line or 0 for p in caught.value.problems)


def test_full_itinerary_becomes_frozen_dataclasses() -> None:
    it = load_itinerary(DATA / "valid" / "full.yaml")
    assert it.template_dir == (DATA / "templates").resolve()
    assert it.pipeline == ("Initialize", "Copy", "Cutover")
    assert it.predicate_names[:3] == ("HasPreHook", "HasPostHook", "Intercluster")
    assert "Submariner" in it.predicate_names
    disks = it.state("CreateDisks")
    assert disks.for_each is not None and disks.retry is not None
    assert (disks.retry.limit, disks.retry.backoff, disks.retry.recreate) == (2, 30.0, True)
    assert disks.readiness is not None
    assert disks.readiness.failed_for == 60.0 and disks.readiness.timeout == 5400.0
    assert disks.undo == (Action("delete_created", where=disks.undo[0].where),)
    assert dict(disks.outputs) == {"diskPhases": "object.status.phase"}
    stop = it.state("StopSource")
    assert stop.cluster == "source" and stop.timeout == 600.0
    assert stop.when is not None and stop.when.any == ("Intercluster", "Submariner")
    patch = stop.actions[0]
    assert patch.kind == "patch" and patch.patch_type == "merge"
    assert patch.patch == {"spec": {"runStrategy": "Halted"}}
    assert it.state("PrecopyWait").actions[0].until == "vm.cutover"
    assert it.state("PreHook").actions[0].seconds == 5.0
    assert it.state("StartTarget").actions[0].template == "vm.yaml.j2"
    assert it.state("StartTarget").actions[0].kind == "ensure"
    assert it.reads[1].optional and it.reads[1].object.name == "{{ item }}"
    assert it.reads[0].cluster == "source"
    assert it.preflight[1].severity == "warn"
    assert it.setup.states[0].name == "ExchangeCA"
    assert it.commit is not None and it.commit.after == "StartTarget"
    with pytest.raises(AttributeError):
        it.name = "other"  # type: ignore[misc]
    assert disks.where.startswith(f"{DATA / 'valid' / 'full.yaml'}:")
    assert disks.where.endswith("spec.states[2]")


def test_ref_render_fills_name_and_namespace() -> None:
    it = load_itinerary(DATA / "valid" / "full.yaml")
    ref = it.reads[0].object.render({"vm": {"name": "web-1", "namespace": "shop"}})
    assert (ref.kind, ref.namespace, ref.name) == ("VirtualMachine", "shop", "web-1")


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("10m", 600), ("1h30m", 5400),
                                          ("2h", 7200), (45, 45), ("1m5s", 65)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1.5m", "10 minutes", "m", "5d", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text,kind,expression", [
    ("condition=Ready", "condition", "condition_is(object, 'Ready', 'True')"),
    ("condition=Ready=False", "condition", "condition_is(object, 'Ready', 'False')"),
    ("jsonpath={.status.phase}=Succeeded", "jsonpath",
     "jsonpath_text(object.status.phase) == 'Succeeded'"),
    ("jsonpath={.status.addresses[0]}", "jsonpath", "jsonpath_text(object.status.addresses[0]) != ''"),
    ("jsonpath={.metadata.labels['app.kubernetes.io/name']}=x", "jsonpath",
     "jsonpath_text(object.metadata.labels['app.kubernetes.io/name']) == 'x'"),
    ("delete", "delete", "object is none"),
    ("exists", "exists", "object is not none"),
    ("object.status.phase == 'Running'", "expression", "object.status.phase == 'Running'"),
])
def test_condition_shorthand(text: str, kind: str, expression: str) -> None:
    cond = parse_condition(text)
    assert (cond.kind, cond.expression, cond.source) == (kind, expression, text)


def test_flow_edges_fall_through_past_states_with_when() -> None:
    it = load_itinerary(DATA / "valid" / "full.yaml")
    edges = {(e.source, e.target, e.kind) for e in flow_edges(it.states)}
    assert ("Started", "PreHook", "linear") in edges
    assert ("Started", "CreateDisks", "skip") in edges   # PreHook may be skipped
    assert ("PrecopyWait", "CreateDisks", "next") in edges
    assert ("PrecopyWait", "StartTarget", "skip") in edges
    assert not any(src == "Completed" for src, _, _ in edges)


def test_problem_line_is_the_offending_key() -> None:
    path = DATA / "invalid" / "unknown-field.yaml"
    with pytest.raises(SchemaError) as caught:
        load_itinerary(path)
    lines = path.read_text().splitlines()
    problem = caught.value.problems[0]
    assert problem.line is not None
    assert lines[problem.line - 1].strip().startswith("readyness:")


_STATE_READS = """apiVersion: smrun.io/v1alpha1
kind: Itinerary
metadata: {name: reads}
spec:
  migrationType: cold
  reads:
    - name: sourceVM
      cluster: source
      object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine, namespace: "{{ vm.namespace }}", name: "{{ vm.name }}"}
  states:
    - {name: Started, outputs: {tokenName: "vm.name"}}
    - name: CopyToken
      reads:
        - name: %s
          cluster: source
          object: {apiVersion: v1, kind: Secret, namespace: "{{ vm.namespace }}", name: "{{ outputs.tokenName }}"}
        - name: %s
          forEach: "%s"
          optional: true
          object: {apiVersion: v1, kind: ConfigMap, namespace: "{{ vm.targetNamespace }}", name: "{{ item }}"}
    - name: Completed
"""


def _state_reads(tmp_path: Path, first: str = "token", second: str = "maps",
                 for_each: str = "['a', 'b']") -> Path:
    path = tmp_path / "reads.yaml"
    path.write_text(_STATE_READS % (first, second, for_each))
    return path


def test_state_reads_load_into_the_state(tmp_path: Path) -> None:
    state = load_itinerary(_state_reads(tmp_path)).state("CopyToken")
    token, maps = state.reads
    assert (token.name, token.cluster, token.optional, token.for_each) == ("token", "source", False, None)
    assert (token.object.kind, token.object.name) == ("Secret", "{{ outputs.tokenName }}")
    assert (maps.name, maps.cluster, maps.optional, maps.for_each) == ("maps", "target", True, "['a', 'b']")


@pytest.mark.parametrize(("first", "second", "message"), [
    ("sourceVM", "maps", "read 'sourceVM' is already defined in spec.reads"),
    ("token", "token", "duplicate read name 'token' in state 'CopyToken'"),
])
def test_state_read_names_are_unique(tmp_path: Path, first: str, second: str, message: str) -> None:
    path = _state_reads(tmp_path, first, second)
    with pytest.raises(SchemaError) as caught:
        load_itinerary(path)
    (problem,) = [p for p in caught.value.problems if message in p.message]
    assert problem.file == str(path) and problem.line is not None
    assert "states[1].reads" in problem.path


def test_state_read_expressions_are_compiled(tmp_path: Path) -> None:
    with pytest.raises(SchemaError) as caught:
        load_itinerary(_state_reads(tmp_path, for_each="['a' +"))
    assert any("states[1].reads[1].forEach" in p.path for p in caught.value.problems)


def test_state_read_without_object_is_a_schema_error(tmp_path: Path) -> None:
    path = tmp_path / "noobj.yaml"
    path.write_text(_STATE_READS.replace(
        "          object: {apiVersion: v1, kind: Secret", "          objekt: {apiVersion: v1, kind: Secret")
        % ("token", "maps", "[]"))
    with pytest.raises(SchemaError) as caught:
        load_itinerary(path)
    assert "reads" in str(caught.value)
