"""YAML loading with line numbers and one-line errors."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from types import MappingProxyType

import pytest

from statemachine.errors import SchemaError
from statemachine.yamlsource import format_path, json_type_name, load, loads

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


@pytest.mark.parametrize("value,kube,named", [
    (None, "null", "null"), (True, "boolean", "boolean"), (3, "integer", "integer"),
    (1.5, "number", "number"), ("x", "string", "string"), ([1], "array", "array"),
    ({"a": 1}, "object", "object"), (MappingProxyType({}), "object", "object"),
    ((1,), "object", "tuple"), (date(2026, 12, 5), "object", "date"),
])
def test_json_type_name(value: object, kube: str, named: str) -> None:
    # kube-openapi calls anything not scalar or list an object (the simulator's messages);
    # the Forklift importer names a value of no JSON type by its Python type
    assert json_type_name(value) == kube
    assert json_type_name(value, python_names=True) == named


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


def test_input_limits_name_file_line_and_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: each limit is one SchemaError line; the corpus (tests/test_hostile_corpus.py)
    runs the same through the command line."""
    from statemachine import yamlsource

    def refused(text: str) -> str:
        with pytest.raises(SchemaError) as caught:
            loads(text, "p.yaml")
        (line,) = str(caught.value).splitlines()
        return line

    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n"
        for i in range(8))
    assert "too many alias references" in refused(bomb)
    assert refused("a: " + "[" * 150 + "]" * 150 + "\n") == "p.yaml:1:103: nested deeper than 100 levels"
    assert refused("a: 1\nb: x\0y\n") == ("p.yaml:2:5: forbidden character NUL (YAML allows no "
                                          "control characters)")
    monkeypatch.setattr(yamlsource, "MAX_NODES", 50)
    assert "more than 50 values" in refused("a: [" + ", ".join(["1"] * 60) + "]\n")
    monkeypatch.setattr(yamlsource, "MAX_BYTES", 10)
    assert refused("a: " + "x" * 20) == "p.yaml: larger than 10 bytes: refused before parsing"


def test_a_file_over_the_cap_is_not_read_whole(tmp_path: Path) -> None:
    from statemachine import yamlsource

    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    with pytest.raises(SchemaError, match="larger than 4 MiB: refused before parsing"):
        yamlsource.load(path)
    (tmp_path / "bad.yaml").write_bytes(b"a: 1\nb: \xc3\x28\n")
    with pytest.raises(SchemaError, match=r"bad.yaml:2:4: not UTF-8 text \(byte 0xc3\)"):
        yamlsource.load(tmp_path / "bad.yaml")
