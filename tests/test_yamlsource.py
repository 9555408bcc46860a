"""YAML loading with line numbers and one-line errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from statemachine.errors import SchemaError
from statemachine.yamlsource import format_path, load, loads

TEXT = """\
apiVersion: v1
spec:
  states:
    - name: A
      readiness:
        ready: exists
    - name: B
"""


def test_lines_of_keys_and_items() -> None:
    doc = loads(TEXT, "x.yaml")
    assert doc.data["spec"]["states"][1]["name"] == "B"
    assert doc.line(("apiVersion",)) == 1
    assert doc.line(("spec", "states")) == 3
    assert doc.line(("spec", "states", 0)) == 4
    assert doc.line(("spec", "states", 0, "readiness", "ready")) == 6
    assert doc.line(("spec", "states", 1, "name")) == 7
    # a path below a scalar falls back to the nearest ancestor
    assert doc.line(("spec", "states", 1, "name", "deeper")) == 7


def test_problem_reads_file_line_path_message() -> None:
    doc = loads(TEXT, "x.yaml")
    problem = doc.problem(("spec", "states", 0, "readiness", "ready"), "bad")
    assert str(problem) == "x.yaml:6: spec.states[0].readiness.ready: bad"


@pytest.mark.parametrize("parts,text", [
    ((), ""), (("spec",), "spec"), (("spec", "states", 3, "name"), "spec.states[3].name"),
    (("a", 0, 1), "a[0][1]"),
])
def test_format_path(parts: tuple[str | int, ...], text: str) -> None:
    assert format_path(parts) == text


def test_bad_yaml_is_one_line_with_file_and_line() -> None:
    with pytest.raises(SchemaError) as caught:
        loads("a: 1\nb:\n  - x\n - y\n", "bad.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bad.yaml:4: invalid YAML")


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(SchemaError) as caught:
        loads("a:\n  name: x\n  name: y\n", "dup.yaml")
    assert str(caught.value) == "dup.yaml:3: a.name: duplicate key"


def test_python_tags_are_not_constructed() -> None:
    with pytest.raises(SchemaError, match="invalid YAML"):
        loads("a: !!python/object/apply:os.system ['true']\n", "evil.yaml")


def test_empty_document_is_none() -> None:
    assert loads("", "e.yaml").data is None


def test_load_reads_files_and_reports_missing_ones(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(TEXT)
    assert load(path).file == str(path)
    with pytest.raises(SchemaError) as caught:
        load(tmp_path / "missing.yaml")
    assert str(caught.value).startswith(f"{tmp_path / 'missing.yaml'}: cannot read")


def test_merge_keys_still_work() -> None:
    doc = loads("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n", "m.yaml")
    assert doc.data["use"] == {"x": 1, "y": 2}
