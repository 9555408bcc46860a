"""The packaged JSON Schema itself and how violations are reported."""
from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from statemachine.errors import SchemaError
from statemachine.schema import load_schema, problems, validate_document
from statemachine.yamlsource import loads

HEAD = "apiVersion: smrun.io/v1alpha1\nkind: Itinerary\nmetadata: {name: t}\nspec:\n" \
       "  migrationType: live\n  states:\n"


def test_itinerary_schema_is_a_valid_2020_12_schema() -> None:
    schema = load_schema("itinerary")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_valid_document_passes() -> None:
    validate_document(loads(HEAD + "    - name: Completed\n", "ok.yaml"), "itinerary")


def test_every_violation_is_reported_with_line_and_path() -> None:
    doc = loads(HEAD + "    - name: lower\n      timeout: 5 minutes\n      colour: red\n"
                "    - name: Completed\n", "bad.yaml")
    found = [str(p) for p in problems(doc, "itinerary")]
    assert found == [
        "bad.yaml:7: spec.states[0].name: 'lower' is not a PascalCase name (like CreateTargetVM)",
        "bad.yaml:8: spec.states[0].timeout: '5 minutes' is not a duration like 30s, 10m, "
        "1h30m or a number of seconds",
        "bad.yaml:9: spec.states[0].colour: unknown field 'colour' (did you mean 'cluster'?)",
    ]
    with pytest.raises(SchemaError) as caught:
        validate_document(doc, "itinerary")
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize("duration", ["30s", "10m", "1h30m", "2h", "1h0m5s", 90, 0])
def test_durations_accepted(duration: object) -> None:
    doc = loads(HEAD + f"    - {{name: A, timeout: {duration}}}\n    - name: Completed\n", "d.yaml")
    assert problems(doc, "itinerary") == []


@pytest.mark.parametrize("duration", ["1.5m", '"10"', "h", "-5", "5d", "true"])
def test_durations_rejected(duration: str) -> None:
    doc = loads(HEAD + f"    - {{name: A, timeout: {duration}}}\n    - name: Completed\n", "d.yaml")
    assert [p.path for p in problems(doc, "itinerary")] == ["spec.states[0].timeout"]


@pytest.mark.parametrize("name,ok", [("CreateTargetVM", True), ("A1", True), ("create", False),
                                     ("Create_VM", False), ("Create-VM", False), ("1A", False)])
def test_state_names_are_pascal_case(name: str, ok: bool) -> None:
    doc = loads(HEAD + f"    - name: {name}\n    - name: Completed\n", "n.yaml")
    assert (problems(doc, "itinerary") == []) is ok
