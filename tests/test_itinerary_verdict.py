"""The kept verdict of an itinerary's semantic checks (statemachine/itinerary_verdict.py): a hit
skips the checks and gives back the same warnings; editing the itinerary, a fragment or any
template it uses (or creating one that would now be found first) is a miss; an error is never
kept; an unusable or corrupt cache is a miss, never an error; a run after a hit renders as
before."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from statemachine import expressions, itinerary_checks, itinerary_verdict
from statemachine.cli import main
from statemachine.errors import SchemaError
from statemachine.itinerary import load_itinerary
from tests.language.conftest import DATA

FLOW = """\
apiVersion: smrun.io/v1alpha1
kind: Itinerary
metadata: {name: cached}
spec:
  migrationType: restart
  templates: templates
  include: [parts/shared.yaml]
  pipeline: [Prepare, Cleanup]
  reads:
    - {name: sourceVM, cluster: source, object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine, name: "{{ vm.name }}", namespace: "{{ vm.namespace }}"}}
  states:
    - name: Record
      cluster: source
      step: Cleanup
      actions:
        - apply: report.yaml.j2
        - ensure: common/namespace.yaml.j2
    - name: Settle
      cluster: source
      step: Prepare
      actions:
        - wait: 0s
    - name: Completed
"""

SHARED = """\
apiVersion: smrun.io/v1alpha1
kind: ItineraryFragment
metadata: {name: shared}
spec:
  values:
    owner: "reads.sourceVM.metadata.name"
"""

REPORT = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-report", namespace: "{{ vm.namespace }}"}
data:
{% include "data.j2" %}
"""

DATA_PART = """\
  flow: "{{ plan.type }}"
  owner: "{{ values.owner }}"
"""

WARNING = ("spec.states[1].step: step 'Prepare' of state 'Settle' is out of pipeline order: "
           "state 'Record' before it has step 'Cleanup', a later step of spec.pipeline")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The verdict cache's folder (a fresh one for each test)."""
    monkeypatch.setenv("SMRUN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "verdicts"


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "report.yaml.j2").write_text(REPORT, encoding="utf-8")
    (tmp_path / "templates" / "data.j2").write_text(DATA_PART, encoding="utf-8")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "shared.yaml").write_text(SHARED, encoding="utf-8")
    (tmp_path / "flow.yaml").write_text(FLOW, encoding="utf-8")
    return tmp_path / "flow.yaml"


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The itineraries the semantic checks ran on from now on (not answered by the cache)."""
    ran: list[str] = []
    original = itinerary_checks.findings

    def counting(itinerary: object, doc: object) -> itinerary_checks.Findings:
        ran.append(str(getattr(itinerary, "file")))
        return original(itinerary, doc)  # type: ignore[arg-type]

    monkeypatch.setattr(itinerary_checks, "findings", counting)
    return ran


def _kept(folder: Path) -> list[Path]:
    """Entries holding a checks verdict (the schema verdicts are bare keys)."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.read_bytes() != p.name.encode()]


def test_a_hit_skips_the_checks_and_gives_the_same_itinerary_and_warnings(
        folder: Path, flow: Path, checks: list[str]) -> None:
    first = load_itinerary(flow)
    assert checks == [str(flow)] and len(_kept(folder)) == 1
    second = load_itinerary(flow)
    assert checks == [str(flow)]  # answered from the cache
    assert second == first
    assert [str(w) for w in second.warnings] == [str(w) for w in first.warnings] \
        == [f"{flow}:20: {WARNING}"]


def test_validate_prints_the_same_warning_on_a_hit(
        folder: Path, flow: Path, checks: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    printed = []
    for _ in range(2):
        assert main(["validate", str(flow)]) == 0
        printed.append(capsys.readouterr().err)
    assert len(checks) == 1
    assert printed[0] == printed[1] and f"warning: {flow}:20: {WARNING}" in printed[0]


@pytest.mark.parametrize("edit", [
    "itinerary", "fragment", "template", "included template", "a template found earlier",
])
def test_editing_any_input_is_a_miss(folder: Path, flow: Path, checks: list[str], edit: str) -> None:
    load_itinerary(flow)
    load_itinerary(flow)
    assert len(checks) == 1
    root = flow.parent
    if edit == "itinerary":
        flow.write_text(FLOW + "# edited\n", encoding="utf-8")
    elif edit == "fragment":
        (root / "parts" / "shared.yaml").write_text(SHARED + "# edited\n", encoding="utf-8")
    elif edit == "template":
        (root / "templates" / "report.yaml.j2").write_text(REPORT + "# edited\n", encoding="utf-8")
    elif edit == "included template":
        (root / "templates" / "data.j2").write_text(DATA_PART + "  more: x\n", encoding="utf-8")
    else:  # common/namespace.yaml.j2 comes from the built-in folder: one in templates/ wins now
        (root / "templates" / "common").mkdir()
        (root / "templates" / "common" / "namespace.yaml.j2").write_text(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: \"{{ vm.namespace }}\"}\n",
            encoding="utf-8")
    load_itinerary(flow)
    assert len(checks) == 2
    load_itinerary(flow)
    assert len(checks) == 2  # the new text's verdict is kept in turn


@pytest.mark.parametrize("broken", ["template", "included template", "fragment"])
def test_an_edit_that_breaks_a_checked_itinerary_is_reported(
        folder: Path, flow: Path, checks: list[str], broken: str) -> None:
    load_itinerary(flow)
    # A new process, as far as templates go: the shared environment keeps what it compiled for
    # the life of a process (auto_reload off), so this process would not compile the edit.
    expressions._template_env.cache_clear()
    root = flow.parent
    if broken == "template":
        (root / "templates" / "report.yaml.j2").write_text(REPORT + "{% if %}\n", encoding="utf-8")
    elif broken == "included template":
        (root / "templates" / "data.j2").write_text("  owner: \"{{ values.ownr }}\"\n",
                                                   encoding="utf-8")
    else:
        (root / "parts" / "shared.yaml").write_text(SHARED.replace("owner:", "holder:"),
                                                    encoding="utf-8")
    with pytest.raises(SchemaError) as raised:
        load_itinerary(flow)
    assert ("syntax error" if broken == "template" else "unknown value values.owner"
            if broken == "fragment" else "unknown value values.ownr") in str(raised.value)


def test_an_error_is_never_kept_and_reads_the_same_every_time(
        folder: Path, flow: Path, checks: list[str]) -> None:
    flow.write_text(FLOW.replace("report.yaml.j2", "missing.yaml.j2"), encoding="utf-8")
    messages = []
    for _ in range(2):
        with pytest.raises(SchemaError) as raised:
            load_itinerary(flow)
        messages.append(str(raised.value))
    assert len(checks) == 2 and messages[0] == messages[1]
    assert "template 'missing.yaml.j2' not found" in messages[0]
    assert _kept(folder) == []


def test_another_file_name_is_a_miss(folder: Path, flow: Path, checks: list[str]) -> None:
    # Messages name the file, so a copy elsewhere is checked (and its warnings name it).
    load_itinerary(flow)
    copy = flow.parent / "copy.yaml"
    shutil.copy(flow, copy)
    assert [str(w) for w in load_itinerary(copy).warnings] == [f"{copy}:20: {WARNING}"]
    assert len(checks) == 2


def test_a_corrupt_entry_is_a_miss_and_is_replaced(
        folder: Path, flow: Path, checks: list[str]) -> None:
    first = load_itinerary(flow)
    (entry,) = _kept(folder)
    for junk in (entry.name.encode() + b"{not json", entry.name.encode() + b'{"templates": 1}',
                 b"someone else's key", entry.name.encode() + b'{"templates":[],"warnings":[[1]]}'):
        entry.write_bytes(junk)
        assert load_itinerary(flow).warnings == first.warnings
    assert len(checks) == 5
    assert _kept(folder) == [entry]


def test_an_unwritable_or_unusable_cache_is_no_error(
        tmp_path: Path, folder: Path, flow: Path, checks: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    load_itinerary(flow)
    (entry,) = _kept(folder)
    # An entry that can be neither read nor replaced (a non-empty folder in its place: this
    # holds for root too, whom file modes do not stop).
    entry.unlink()
    (entry / "x").mkdir(parents=True)
    for _ in range(2):
        assert len(load_itinerary(flow).warnings) == 1
    assert len(checks) == 3
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    if os.geteuid() != 0:
        os.chmod(folder, 0o500)  # a read-only folder
        try:
            assert len(load_itinerary(flow).warnings) == 1
        finally:
            os.chmod(folder, 0o700)
        assert len(checks) == 4
    (tmp_path / "file").write_text("not a folder")
    for unusable in (str(tmp_path / "file"), str(tmp_path / "file" / "below"), "off"):
        monkeypatch.setenv("SMRUN_CACHE_DIR", unusable)
        before = len(checks)
        for _ in range(2):
            assert len(load_itinerary(flow).warnings) == 1
        assert len(checks) == before + 2


def test_the_key_covers_the_checking_code() -> None:
    # In a development tree the version does not change when a check does: the modules' own
    # identity is part of the key (a guard against narrowing it by mistake).
    identity = itinerary_verdict._code_identity().decode()
    for module in ("itinerary_checks.py", "names.py", "fieldpaths.py", "expressions.py",
                   "itinerary.py", "itinerary_include.py", "yamlsource.py", "budget.py",
                   "sim/schemas.py", "sim/data/kind-fields.json"):
        assert f"\n{module}:" in identity
    assert "jinja2" in identity and "yaml" in identity


def test_every_module_the_checks_run_is_in_the_key(tmp_path: Path) -> None:
    # A fresh process loads the built-ins with the cache off (so every check runs): each smrun
    # module it imported must be one whose identity is part of the key.
    probe = ("import os, sys\n"
             "from statemachine.itinerary import load_itinerary\n"
             "for name in ('live', 'cold', 'warm'):\n"
             "    load_itinerary(name)\n"
             "import statemachine\n"
             "root = os.path.dirname(statemachine.__file__)\n"
             "for name, module in list(sys.modules.items()):\n"
             "    if name.startswith('statemachine') and getattr(module, '__file__', None):\n"
             "        print(os.path.relpath(module.__file__, root))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120, env={**os.environ, "SMRUN_CACHE_DIR": "off"},
                         cwd=tmp_path).stdout.split()
    assert "fieldpaths.py" in out and "itinerary_checks.py" in out
    assert [m for m in out if os.sep in m and m not in itinerary_verdict._ALSO] == []


def test_a_run_after_a_hit_renders_the_templates_the_checks_did_not_compile(
        folder: Path, flow: Path, checks: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # A plan that runs the flow on the simulated clusters: the first command keeps the verdict,
    # the run (in the same process, so the templates are not in the shared environment from a
    # compile by the checks: they are rendered from the cache's hit) completes.
    root = flow.parent
    shutil.copy(DATA / "seed.yaml", root / "seed.yaml")
    plan = root / "plan.yaml"
    plan.write_text("apiVersion: smrun.io/v1alpha1\nkind: Plan\nmetadata: {name: cached}\n"
                    "spec:\n  itinerary: ./flow.yaml\n  simulation: {seed: ./seed.yaml}\n"
                    "  vms:\n    - {name: web-1, namespace: shop}\n", encoding="utf-8")
    assert main(["validate", "--offline", str(plan)]) == 0
    expressions._template_env.cache_clear()  # forget what the checks compiled
    assert main(["run", str(plan), "--state-dir", str(root / "state")]) == 0
    assert len(checks) == 1
    assert "Completed" in capsys.readouterr().out
