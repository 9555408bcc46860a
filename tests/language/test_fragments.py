"""Shared fragments (``spec.include``, ``kind: ItineraryFragment``, ``use: STATE``): issue 15
item 3, the parts the built-in flows share written once.

A small flow includes ``parts/shared.yaml`` (a value, a read, a preflight check and a library
state) and places the fragment's state with ``use``, patching it. The tests check what the
assembled itinerary holds, that problems in a fragment are reported at the fragment's own file,
line and path, each refusal of bad input (missing file, cycle, a name defined twice, an unknown
``use``) as one line with exit 2, the commands that read itineraries (validate, graph, show,
export), and that the schema verdict cache never keeps a verdict for a fragment's old text.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from statemachine.cli import main
from statemachine.errors import SchemaError
from statemachine.itinerary import load_itinerary
from statemachine.kindorigin import kind_origin

FLOW = """\
apiVersion: smrun.io/v1alpha1
kind: Itinerary
metadata: {name: flow}
spec:
  include: [parts/shared.yaml]
  values:
    label: "values.base ~ '-x'"
  reads:
    - name: sourceVM
      cluster: source
      object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine,
               namespace: "{{ vm.namespace }}", name: "{{ vm.name }}"}
  states:
    - name: Started
    - use: Wait
      timeout: 5m
      readiness:
        failed: null
        progress: "values.label"
    - name: Completed
"""

SHARED = """\
apiVersion: smrun.io/v1alpha1
kind: ItineraryFragment
metadata: {name: shared}
spec:
  values:
    base: "reads.sourceVM.metadata.name"
  reads:
    - name: sourceVMI
      cluster: source
      optional: true
      object: {apiVersion: kubevirt.io/v1, kind: VirtualMachineInstance,
               namespace: "{{ vm.namespace }}", name: "{{ vm.name }}"}
  preflight:
    - name: Running
      check: "reads.sourceVMI"
      message: "the VM is not running"
  states:
    - name: Wait
      cluster: source
      readiness:
        object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine,
                 namespace: "{{ vm.namespace }}", name: "{{ values.base }}"}
        ready: "object.status.ready"
        failed: "object.status.phase == 'Failed'"
        timeout: 1m
"""


def _write(folder: Path, flow: str = FLOW, shared: str = SHARED) -> Path:
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    (folder / "parts" / "shared.yaml").write_text(shared)
    (folder / "flow.yaml").write_text(flow)
    return folder / "flow.yaml"


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _refused(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``smrun validate`` of ``path``: exit 2 and exactly one line on stderr, returned."""
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_a_fragment_joins_the_itinerary_and_its_state_is_placed_and_patched(tmp_path: Path) -> None:
    it = load_itinerary(_write(tmp_path))
    assert it.includes == ((tmp_path / "parts" / "shared.yaml").resolve(),)
    # the including file's entries first, then the fragment's
    assert list(it.values) == ["label", "base"]
    assert [r.name for r in it.reads] == ["sourceVM", "sourceVMI"]
    assert [c.name for c in it.preflight] == ["Running"]
    assert it.state_names == ("Started", "Wait", "Completed")
    wait = it.state("Wait")
    # the fragment's fields, with the entry's merged over them (null removes one)
    assert wait.cluster == "source" and wait.timeout == 300.0
    assert wait.readiness is not None and wait.readiness.failed is None
    assert wait.readiness.ready is not None and wait.readiness.ready.source == "object.status.ready"
    assert wait.readiness.timeout == 60.0 and wait.readiness.progress == "values.label"
    # where a state's parts were written: the entry in the itinerary, the rest in the fragment
    assert wait.where.startswith(f"{tmp_path / 'flow.yaml'}:{_line_of(FLOW, 'use: Wait')}: spec.states[1]")
    assert wait.readiness.ready.where == (f"{tmp_path / 'parts' / 'shared.yaml'}:"
                                          f"{_line_of(SHARED, 'ready:')}: spec.states[0].readiness.ready")


def test_a_problem_in_a_fragment_is_reported_at_its_file_line_and_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared = SHARED.replace('ready: "object.status.ready"', 'ready: "reads.sourceVMM.status.ready"')
    path = _write(tmp_path, shared=shared)
    line = _refused(path, capsys)
    assert line.startswith(f"{tmp_path / 'parts' / 'shared.yaml'}:{_line_of(shared, 'sourceVMM')}: "
                           "spec.states[0].readiness.ready: unknown read reads.sourceVMM")
    assert "did you mean 'sourceVM'" in line and "in state 'Wait'" in line
    # a schema problem of the fragment too (its own schema, its own lines)
    shared = SHARED.replace("timeout: 1m", "timeout: soon")
    _write(tmp_path, shared=shared)
    line = _refused(path, capsys)
    assert line.startswith(f"{tmp_path / 'parts' / 'shared.yaml'}:{_line_of(shared, 'soon')}: "
                           "spec.states[0].readiness.timeout: ")


def test_a_patch_from_the_itinerary_is_reported_in_the_itinerary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = FLOW.replace('progress: "values.label"', 'progress: "values.lable"')
    line = _refused(_write(tmp_path, flow=flow), capsys)
    assert line.startswith(f"{tmp_path / 'flow.yaml'}:{_line_of(flow, 'lable')}: "
                           "spec.states[1].readiness.progress: unknown value values.lable")


def test_a_missing_fragment_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, flow=FLOW.replace("parts/shared.yaml", "parts/gone.yaml"))
    line = _refused(path, capsys)
    assert line == (f"{path}:{_line_of(FLOW, 'include:')}: spec.include[0]: fragment file "
                    f"'parts/gone.yaml' does not exist (looked for {tmp_path / 'parts' / 'gone.yaml'})")


def test_an_include_cycle_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # shared.yaml includes other.yaml, which includes shared.yaml again
    shared = SHARED.replace("spec:\n", "spec:\n  include: [other.yaml]\n", 1)
    path = _write(tmp_path, shared=shared)
    other = SHARED.replace("name: shared", "name: other").split("  values:")[0] + \
        "  include: [shared.yaml]\n"
    (tmp_path / "parts" / "other.yaml").write_text(other)
    line = _refused(path, capsys)
    assert line == (f"{tmp_path / 'parts' / 'other.yaml'}:{_line_of(other, 'include:')}: "
                    "spec.include[0]: include cycle: flow.yaml -> shared.yaml -> other.yaml -> shared.yaml")


def test_a_fragment_included_twice_is_included_once(tmp_path: Path) -> None:
    path = _write(tmp_path, flow=FLOW.replace("include: [parts/shared.yaml]",
                                              "include: [parts/shared.yaml, parts/../parts/shared.yaml]"))
    assert [r.name for r in load_itinerary(path).reads] == ["sourceVM", "sourceVMI"]


@pytest.mark.parametrize("where, change, expect", [
    ("flow", ('label: "values.base', 'base: "values.base'),
     "spec.values.base: value 'base' is also defined at {flow}:7: spec.values.base; a name may be "
     "defined once in an itinerary and its fragments"),
    ("flow", ("    - name: Started\n", "    - name: Started\n    - name: Wait\n"),
     "spec.states[1].name: state 'Wait' is also defined at {shared}:{wait}: spec.states[0].name; "
     "place the fragment's state with `use: Wait`, or rename this one"),
    ("shared", ("name: sourceVMI", "name: sourceVM"),
     "spec.reads[0].name: read 'sourceVM' is also defined at {flow}:9: spec.reads[0].name; a name may "
     "be defined once in an itinerary and its fragments"),
], ids=["value", "state", "read"])
def test_a_name_defined_twice_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          where: str, change: tuple[str, str], expect: str) -> None:
    flow, shared = FLOW, SHARED
    if where == "flow":
        flow = flow.replace(*change)
    else:
        shared = shared.replace(*change)
    path = _write(tmp_path, flow=flow, shared=shared)
    line = _refused(path, capsys)
    files = {"flow": path, "shared": tmp_path / "parts" / "shared.yaml",
             "wait": _line_of(SHARED, "- name: Wait")}
    assert line.endswith(expect.format(**files)), line
    # reported where the second definition is: the fragment (merged after), or the itinerary's
    # own state that takes a fragment state's name
    assert line.startswith(f"{path if 'use: Wait' in expect else files['shared']}:")


def test_use_of_a_state_no_fragment_has(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = FLOW.replace("use: Wait", "use: Wiat")
    line = _refused(_write(tmp_path, flow=flow), capsys)
    assert line == (f"{tmp_path / 'flow.yaml'}:{_line_of(flow, 'Wiat')}: spec.states[1].use: no "
                    "included fragment has a state 'Wiat' (did you mean 'Wait'?); their states: Wait")
    line = _refused(_write(tmp_path, flow=flow.replace("  include: [parts/shared.yaml]\n", "")), capsys)
    assert "spec.states[1].use: `use: Wiat` needs a fragment that has state 'Wiat' in spec.include" in line


def test_an_itinerary_is_not_a_fragment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, shared=FLOW.replace("include: [parts/shared.yaml]", "include: []"))
    line = _refused(path, capsys)
    assert line.startswith(f"{tmp_path / 'parts' / 'shared.yaml'}:2: kind: this file looks like an "
                           "itinerary (kind: Itinerary), not an itinerary fragment")


def test_a_changed_fragment_is_validated_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The schema verdicts are cached by content: a fragment's change is never hidden by the
    verdict kept for its earlier text (nor the itinerary's, assembled with it)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SMRUN_CACHE_DIR", str(cache))
    path = _write(tmp_path / "flow")
    load_itinerary(path)
    assert list((cache / "verdicts").iterdir())  # clean verdicts were kept
    load_itinerary(path)  # and used
    _write(tmp_path / "flow", shared=SHARED.replace("timeout: 1m", "timeout: soon"))
    with pytest.raises(SchemaError, match=r"shared\.yaml:\d+: spec\.states\[0\]\.readiness\.timeout"):
        load_itinerary(path)
    # valid for the fragment schema, but not once placed in the itinerary: a patch that
    # removes what a readiness needs is found in the assembled document
    _write(tmp_path / "flow", flow=FLOW.replace("failed: null", "failed: null\n        ready: 5"))
    with pytest.raises(SchemaError, match=r"flow\.yaml:\d+: spec\.states\[1\]\.readiness\.ready"):
        load_itinerary(path)


def test_validate_graph_show_and_export_take_an_itinerary_with_fragments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path)
    assert main(["validate", str(path)]) == 0
    assert "is valid (3 states)" in capsys.readouterr().out
    assert main(["graph", str(path)]) == 0
    assert "Started --> Wait" in capsys.readouterr().out
    assert main(["itineraries", "show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert f"# includes parts/shared.yaml: {(tmp_path / 'parts' / 'shared.yaml').resolve()}" in shown
    assert shown.endswith(SHARED) and "---\n# fragment parts/shared.yaml" in shown
    # the built-ins: exported with their fragments, the copy validates on its own
    out = tmp_path / "mine"
    assert main(["itineraries", "export", "live", str(out)]) == 0
    said = capsys.readouterr().out
    assert "common/vm-resources.yaml" in said and "common/hooks.yaml" in said
    assert (out / "common" / "hooks.yaml").read_text() == \
        (Path(load_itinerary("live").file).parent / "common" / "hooks.yaml").read_text()
    assert main(["validate", str(out / "live.yaml")]) == 0


def test_a_kind_written_in_a_fragment_is_found_there(tmp_path: Path) -> None:
    it = load_itinerary(_write(tmp_path))
    where = kind_origin(it, "kubevirt.io/v1", "VirtualMachineInstance")
    assert where == f"{tmp_path / 'parts' / 'shared.yaml'}:{_line_of(SHARED, 'object:')}: spec.reads[0].object"


def test_run_time_errors_name_the_fragment_that_wrote_the_expression(tmp_path: Path) -> None:
    from statemachine.errors import SmrunError
    from statemachine.parameters import compute_values
    from statemachine.predicates import evaluate_all

    shared = SHARED.replace('base: "reads.sourceVM.metadata.name"',
                            'base: "reads.sourceVM.metadata.name ~ vmm.name"\n'
                            '  predicates:\n    Broken: "vmm.ready"')
    it = load_itinerary(_write(tmp_path, shared=shared))
    fragment = str(tmp_path / "parts" / "shared.yaml")
    assert it.file_of("values", "base") == fragment and it.file_of("values", "label") == str(it.file)
    assert it.file_of("reads", "sourceVMI") == fragment and it.file_of("predicates", "Broken") == fragment
    ctx = {"reads": {"sourceVM": {"metadata": {"name": "web-1"}}}, "vm": {"name": "web-1"}}
    with pytest.raises(SmrunError, match=rf"^{fragment}: spec\.values\.base: "):
        compute_values(it, ctx)
    with pytest.raises(SmrunError, match=rf"^{fragment}: spec\.predicates\.Broken: "):
        evaluate_all(it, ctx)


@pytest.mark.parametrize("flow", [
    FLOW.replace("  reads:\n    - name: sourceVM\n", "  reads:\n    sourceVM:\n      name: sourceVM\n"),
    FLOW.replace('  values:\n    label: "values.base ~ \'-x\'"\n', "  values: [label]\n"),
    FLOW.replace("    - use: Wait\n", "    - use: 5\n"),
    FLOW.replace("    - use: Wait\n      timeout: 5m\n", "    - use: Wait\n      readiness: 5\n"),
    FLOW.replace("include: [parts/shared.yaml]", "include: parts/shared.yaml"),
], ids=["reads-mapping", "values-list", "use-number", "patch-scalar", "include-string"])
def test_malformed_input_around_includes_is_reported_not_raised(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flow: str) -> None:
    path = _write(tmp_path, flow=flow)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(str(tmp_path))


@pytest.mark.parametrize("shared", ["", "just text\n", "- a\n- list\n",
                                    SHARED.replace("kind: ItineraryFragment", "kind: Fragment")],
                         ids=["empty", "scalar", "list", "wrong-kind"])
def test_a_fragment_that_is_not_one_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                shared: str) -> None:
    assert main(["validate", str(_write(tmp_path, shared=shared))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(str(tmp_path / "parts" / "shared.yaml")), err


def test_an_edited_fragment_of_a_copied_flow_is_checked_by_validate_offline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The author's path: copy live (with its fragments), point the example plan at the copy,
    edit a fragment; `smrun validate --offline PLAN` names the fragment's line, and passes again
    once the edit is right."""
    import yaml

    example = Path(__file__).resolve().parents[2] / "examples" / "live" / "plan.yaml"
    folder = tmp_path / "mine"
    assert main(["itineraries", "--copy", "live", str(folder)]) == 0
    data = yaml.safe_load(example.read_text())
    data["spec"]["itinerary"] = str(folder / "live.yaml")
    data["spec"]["simulation"]["seed"] = str(example.parent / "seed.yaml")
    for hook in data["spec"].get("hooks", []):
        hook["playbook"] = str((example.parent / hook["playbook"]).resolve())
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data))
    assert main(["validate", "--offline", str(plan)]) == 0
    hooks = folder / "common" / "hooks.yaml"
    good = hooks.read_text()
    bad = good.replace("'-prehook-' ~", "'-prehook-' ~ values.hookk ~", 1)
    hooks.write_text(bad)
    capsys.readouterr()
    assert main(["validate", "--offline", str(plan)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{hooks}:{_line_of(bad, 'values.hookk')}: "
                                               "spec.states[0].values.job: unknown value values.hookk")
    hooks.write_text(good.replace("ready: \"condition=Complete\"", "ready: \"condition=Complete\"\n"
                                  "        message: \"hook job {{ values.job }} is not complete\"", 1))
    assert main(["validate", "--offline", str(plan)]) == 0
    assert main(["graph", str(folder / "live.yaml")]) == 0
    assert "PreHook" in capsys.readouterr().out


def test_a_fragment_state_may_be_placed_in_setup_and_under_another_name(tmp_path: Path) -> None:
    shared = SHARED.replace("  states:\n", """  states:
    - name: Pause
      actions: [{wait: 1s}]
""", 1)
    flow = FLOW.replace("  states:\n", """  setup:
    states:
      - use: Pause
  states:
""", 1).replace("    - name: Completed\n", "    - {use: Pause, name: PauseAgain}\n    - name: Completed\n")
    it = load_itinerary(_write(tmp_path, flow=flow, shared=shared))
    assert [s.name for s in it.setup.states] == ["Pause"]
    assert it.state_names == ("Started", "Wait", "PauseAgain", "Completed")
    assert it.state("PauseAgain").actions[0].seconds == 1.0
