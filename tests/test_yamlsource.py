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


# -- load_all_text's plain constructor (issue 17, tenth session) ------------------------------

_EDGES = [
    "a: 1\nb: 1.5\nc: true\nd: ~\ne: yes\nf: 0x1F\ng: 0o17\nh: 1_000\ni: .inf\nj: -.nan\n",
    "t: 2001-12-14t21:59:43.10-05:00\nd: 2002-12-14\nbin: !!binary aGVsbG8=\n",
    "s: !!str 12\nn: !!int '7'\nf: !!float 1\nk: 'quoted'\nm: |\n  block\n  text\n",
    "? [a, b]\n: complex key\n",
    "base: &b {x: 1}\nderived:\n  <<: {x: 2, y: 3}\n  z: 4\n",
    "=: value key\n",
    "set: !!set {a, b}\nomap: !!omap [{a: 1}, {b: 2}]\npairs: !!pairs [{a: 1}, {a: 2}]\n",
    "dup: 1\ndup: 2\nother: 3\n",
    "1: int key\n2.5: float key\ntrue: bool key\nnull: null key\n2001-01-01: date key\n",
    "- a\n- [1, 2, {b: c}]\n- {}\n- []\n- ''\n",
    "x: !custom 1\n",
    "x: !!map [1]\n",
    "---\na: 1\n---\n- 2\n---\n",
    "",
    "just a scalar\n",
    "nested: {a: {b: {c: [1, {d: e}]}}}\n",
    "odd: 010\nsexagesimal: 1:30\nexp: 1e3\nneg: -0b101\n",
]


def _typed(value: object) -> object:
    """``value`` with every node's type kept: 1, 1.0 and True compare unequal."""
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple, set)):
        return (type(value).__name__, [_typed(v) for v in value])
    if isinstance(value, float) and value != value:
        return ("float", "nan")
    return (type(value).__name__, value)


def _corpus() -> list[str]:
    root = Path(__file__).resolve().parent.parent
    texts = list(_EDGES)
    for folder in ("examples", "itineraries", "tests/data"):
        for path in sorted((root / folder).rglob("*.yaml")):
            if path.stat().st_size < 200_000:
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts


def test_plain_construction_gives_what_pyyaml_constructs() -> None:
    """Every document ``load_all_text`` builds without PyYAML's constructor is the one PyYAML's
    safe constructor builds from the same nodes (same types, same key order); what it leaves
    (merge keys, tags, complex keys, aliases) PyYAML constructs, errors included."""
    import yaml

    from statemachine import yamlsource

    loader_cls = yamlsource._FAST or yamlsource._Loader
    plain_docs = 0
    for text in _corpus():
        loader = loader_cls(text)
        expected: list[object] = []
        plain: list[object] = []
        try:
            while loader.check_node():
                node = loader.get_node()
                try:
                    plain.append(("plain", _typed(yamlsource._plain(loader, node))))
                    plain_docs += 1
                except yamlsource._NotPlain:
                    plain.append(None)
                try:
                    expected.append(_typed(loader.construct_document(node)))
                except yaml.YAMLError as exc:
                    expected.append(("error", str(exc)))
        except yaml.YAMLError:
            continue  # not YAML at all: load_all_text's errors are the parser's, unchanged
        finally:
            loader.dispose()
        for mine, theirs in zip(plain, expected):
            if mine is not None:
                assert mine == ("plain", theirs), text[:200]
        try:
            got: object = [_typed(d) for d in yamlsource.load_all_text(text, "t.yaml")]
        except Exception as exc:  # noqa: BLE001 - the same error either way
            got = ("error", type(exc).__name__)
        if "*" not in text and all(not (isinstance(e, tuple) and e[0] == "error") for e in expected):
            assert got == expected, text[:200]
    assert plain_docs > 50  # the corpus exercises the plain path


@pytest.mark.parametrize("text", ["base: &b {x: 1}\nderived:\n  <<: *b\n  z: 4\n",
                                  "x: !custom 1\n", "=: 1\n", "? [a]\n: 1\n"])
def test_documents_left_to_pyyaml_load_as_before(text: str) -> None:
    import yaml

    from statemachine import yamlsource
    from statemachine.errors import SchemaError as _SchemaError

    try:
        expected: object = list(yaml.load_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        with pytest.raises(_SchemaError):
            yamlsource.load_all_text(text, "t.yaml")
        return
    assert yamlsource.load_all_text(text, "t.yaml") == expected
