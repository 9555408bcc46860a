"""What the start-up optimisations of issue 8 keep: same documents, same errors, same checks.

Loading a plan and its itinerary was made cheaper (libyaml first in ``yamlsource``, schemas not
re-checked against the metaschema on every command, templates compiled once per process and
shared by the checks and rendering). These tests pin that nothing observable changed, and
(issue 17) guard the import structure start-up relies on: what ``import statemachine`` and
``smrun validate --offline`` load (not their timing; bench/startup.py measures that).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from statemachine import yamlsource
from statemachine.errors import SchemaError
from statemachine.resources import data_dir

ITINERARIES = sorted(data_dir("itineraries").glob("*.yaml"))
SCHEMAS = sorted(data_dir("schemas").glob("*.schema.json"))


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_every_packaged_schema_is_a_valid_2020_12_schema(path: Path) -> None:
    # schema.py no longer checks this at run time: the check lives here.
    Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))


def test_there_are_packaged_schemas_to_check() -> None:
    assert {p.name for p in SCHEMAS} >= {"itinerary.schema.json", "plan.schema.json"}


@pytest.mark.skipif(yamlsource._FAST is None, reason="PyYAML built without libyaml")
@pytest.mark.parametrize("path", ITINERARIES, ids=lambda p: p.stem)
def test_fast_and_pure_yaml_give_the_same_data_and_lines(path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fast = yamlsource.load(path)
    monkeypatch.setattr(yamlsource, "_FAST", None)
    pure = yamlsource.load(path)
    assert fast.data == pure.data
    assert dict(fast.lines) == dict(pure.lines)
    assert len(fast.lines) > 100  # a real itinerary, not an empty document


BAD_YAML = [
    "a: 1\nb:\n  - x\n - y\n",               # bad indentation
    "a: [1, 2\nb: 3\n",                     # unclosed flow sequence
    "a: 'unterminated\n",                   # unclosed quote
    "a: !!python/object/apply:os.system ['true']\n",  # an unsafe tag
    "--- 1\n--- 2\n",                       # two documents
    "a:\n  name: x\n  name: y\n",           # a duplicate key (smrun's own check)
    "a: 1\n\tb: 2\n",                       # a tab
]


@pytest.mark.parametrize("text", BAD_YAML)
def test_yaml_errors_are_the_pure_python_parsers(text: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SchemaError) as fast:
        yamlsource.loads(text, "bad.yaml")
    monkeypatch.setattr(yamlsource, "_FAST", None)  # the reference: PyYAML's own parser
    with pytest.raises(SchemaError) as pure:
        yamlsource.loads(text, "bad.yaml")
    assert str(fast.value) == str(pure.value)
    assert [str(p) for p in fast.value.problems] == [str(p) for p in pure.value.problems]
    assert str(fast.value).startswith("bad.yaml:")


def test_the_fast_parser_is_used_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guard against a silent fallback: a clean document never reaches the pure-Python loader.
    if yamlsource._FAST is None:
        pytest.skip("PyYAML built without libyaml")
    calls: list[str] = []

    class Spy(yamlsource._Loader):
        def __init__(self, stream: str) -> None:
            calls.append(stream)
            super().__init__(stream)

    monkeypatch.setattr(yamlsource, "_Loader", Spy)
    assert yamlsource.loads("a: [1, 2]\n").data == {"a": [1, 2]}
    assert calls == []
    with pytest.raises(SchemaError):
        yamlsource.loads("a: [1, 2\n")
    assert calls == ["a: [1, 2\n"]


def _modules_after(code: str) -> set[str]:
    """Top-level module names loaded by a fresh interpreter running ``code``."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120, cwd=Path(__file__).parent.parent,
                         env={**os.environ}).stdout
    return set(out.strip().splitlines()[-1].split())


HEAVY = {"kubernetes", "transitions", "jsonschema", "urllib3", "jinja2", "yaml", "pydantic"}


def test_import_statemachine_loads_no_heavy_library() -> None:
    # Issue 17 item 1: importing the package (an embedder, `smrun --help`) costs only smrun's
    # own small modules; every library is imported by the command or function that needs it.
    assert _modules_after("import statemachine") & HEAVY == set()


def test_validate_offline_never_imports_the_cluster_client_or_the_engine() -> None:
    loaded = _modules_after(
        "import sys\nsys.argv = ['smrun', 'validate', '--offline', 'examples/live/plan.yaml']\n"
        "from statemachine.cli import main\nassert main() == 0")
    assert loaded & {"kubernetes", "transitions", "urllib3"} == set()


def _entry_probe(*argv: str) -> list[str]:
    """What a fresh ``smrun`` process (``cli.entry``) leaves: collector on?, objects frozen?"""
    probe = ("import gc, sys\nfrom statemachine import cli\n"
             f"sys.argv = ['smrun', *{list(argv)!r}]\n"
             "code = cli.entry()\n"
             "print(code, gc.isenabled(), gc.get_freeze_count() > 0)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120, cwd=Path(__file__).parent.parent).stdout
    return out.strip().splitlines()[-1].split()


def test_the_process_entry_pauses_collection_for_start_up_only() -> None:
    # gcpolicy: a command without a long start-up collects again at once, with start-up's
    # objects frozen; at exit everything is frozen (the final collections skip the heap).
    assert _entry_probe("itineraries") == ["0", "True", "True"]
    # validate --offline never connects: it stays paused to the end (a short process).
    assert _entry_probe("validate", "--offline", "examples/live/plan.yaml") == ["0", "False", "True"]


def test_main_called_in_process_leaves_the_collector_alone() -> None:
    import gc

    from statemachine import cli

    frozen = gc.get_freeze_count()
    assert gc.isenabled()
    assert cli.main(["itineraries"]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_locking_a_journal_and_connecting_need_neither_the_engine_nor_the_itinerary() -> None:
    # `smrun run` locks the journal and starts connecting (commands.start) as soon as the plan is
    # loaded; the engine (transitions), preflight, providers and the itinerary language with its
    # template engine are imported after the first request is on its way (issue 17 item 1).
    probe = ("import sys\nfrom statemachine import commands, plan\n"
             "print(' '.join(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120, cwd=Path(__file__).parent.parent).stdout
    loaded = set(out.split())
    assert "statemachine.engine.journal" in loaded
    assert loaded & {"transitions", "kubernetes", "statemachine.engine.core",
                     "statemachine.engine.preflight", "statemachine.providers",
                     "statemachine.itinerary", "jinja2"} == set()


def test_loading_a_plan_with_a_cached_verdict_needs_no_template_engine(tmp_path: Path) -> None:
    # The verdict cache's folder is found without importing the template-code cache (Jinja2,
    # ~13 ms): a plan loaded before the first request leaves Jinja2 for after it (issue 17).
    env = {**os.environ, "SMRUN_CACHE_DIR": str(tmp_path / "cache")}
    probe = ("import sys\nfrom pathlib import Path\nfrom statemachine.plan import load_plan\n"
             "load_plan(Path('examples/live/plan.yaml'))\n"
             "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))\n")
    for _ in range(2):  # the first run validates and stores the verdict; the second hits it
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True, timeout=120, cwd=Path(__file__).parent.parent,
                             env=env).stdout
    assert "jinja2" not in set(out.split())
    assert any((tmp_path / "cache" / "verdicts").iterdir())
