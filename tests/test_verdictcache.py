"""The disk cache of clean schema verdicts (statemachine/verdictcache.py): a hit skips jsonschema,
and nothing observable changes -- a valid document stays valid, an invalid one is reported with the
same problems every time, a tampered or foreign cache is not trusted."""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest

from statemachine import schema, verdictcache, yamlsource
from statemachine.plan import load_plan

ROOT = Path(__file__).parent.parent
LIVE_PLAN = ROOT / "examples" / "live" / "plan.yaml"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SMRUN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "verdicts"


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Schema names validated with jsonschema from now on (not answered by the cache)."""
    seen: list[str] = []
    original = schema._validator

    def counting(name: str) -> object:
        seen.append(name)
        return original(name)

    monkeypatch.setattr(schema, "_validator", counting)
    return seen


def test_a_valid_document_is_validated_once_then_answered_from_the_cache(
        folder: Path, validations: list[str]) -> None:
    first = load_plan(LIVE_PLAN)
    assert validations == ["plan"]
    assert len(list(folder.iterdir())) == 1
    second = load_plan(LIVE_PLAN)
    assert validations == ["plan"]  # no second validation
    assert (second.name, [v.name for v in second.vms]) == (first.name, [v.name for v in first.vms])


def test_an_invalid_document_is_never_cached_and_fails_the_same_way(
        folder: Path, validations: list[str]) -> None:
    bad = yamlsource.loads(LIVE_PLAN.read_text().replace("  type: live", "  tpye: live"), "bad.yaml")
    first = [str(p) for p in schema.problems(bad, "plan")]
    second = [str(p) for p in schema.problems(bad, "plan")]
    assert first == second and "unknown field 'tpye'" in first[0]
    assert validations == ["plan", "plan"]
    assert not folder.exists() or not list(folder.iterdir())


def test_a_changed_document_or_schema_is_a_miss(folder: Path, validations: list[str]) -> None:
    doc = yamlsource.load(LIVE_PLAN)
    assert schema.problems(doc, "plan") == []
    changed = yamlsource.loads(LIVE_PLAN.read_text().replace("live-demo", "live-demo2"),
                               str(LIVE_PLAN))
    assert schema.problems(changed, "plan") == []
    assert validations == ["plan", "plan"]
    key = verdictcache.verdict_key(b"schema-a", doc.data)
    assert key != verdictcache.verdict_key(b"schema-b", doc.data)


def test_keys_tell_apart_what_json_would_merge() -> None:
    # an int key and its string, a timestamp and its text, 1 and 1.0 and True
    assert verdictcache.verdict_key(b"s", {1: "a"}) is None
    when = datetime.datetime(2026, 1, 1)
    keys = {verdictcache.verdict_key(b"s", v) for v in
            ({"a": when}, {"a": str(when)}, {"a": when.isoformat()}, {"a": 1}, {"a": 1.0},
             {"a": True}, {"a": "1"})}
    assert len(keys) == 7 and None not in keys


def test_a_tampered_entry_is_a_miss(folder: Path, validations: list[str]) -> None:
    load_plan(LIVE_PLAN)
    (entry,) = folder.iterdir()
    entry.write_bytes(b"not the key")
    load_plan(LIVE_PLAN)
    assert validations == ["plan", "plan"]  # validated again, and stored again
    assert entry.read_bytes() == entry.name.encode()


def test_a_folder_others_may_write_is_not_used(folder: Path, validations: list[str]) -> None:
    load_plan(LIVE_PLAN)
    os.chmod(folder, 0o777)
    load_plan(LIVE_PLAN)
    assert validations == ["plan", "plan"]


def test_off_disables_it(monkeypatch: pytest.MonkeyPatch, validations: list[str]) -> None:
    monkeypatch.setenv("SMRUN_CACHE_DIR", "off")
    load_plan(LIVE_PLAN)
    load_plan(LIVE_PLAN)
    assert validations == ["plan", "plan"]


def test_validate_offline_with_warm_caches_imports_neither_jsonschema_nor_kubernetes(
        tmp_path: Path) -> None:
    # The import structure issue 17 item 1 relies on (a guard, not a timing): once the caches
    # hold the live example, `smrun validate --offline` needs neither library.
    env = {**os.environ, "SMRUN_CACHE_DIR": str(tmp_path / "cache")}
    probe = ("import sys\n"
             f"sys.argv = ['smrun', 'validate', '--offline', {str(LIVE_PLAN)!r}]\n"
             "from statemachine.cli import main\n"
             "code = main()\n"
             "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
             "{'jsonschema', 'referencing', 'kubernetes', 'transitions', 'urllib3'})\n"
             "print('HEAVY', heavy, code)\n")
    outputs = [subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                              text=True, check=True, timeout=120).stdout for _ in range(2)]
    assert "HEAVY ['jsonschema', 'referencing'] 0" in outputs[0]  # a cold cache validates
    assert "HEAVY [] 0" in outputs[1]
    assert "plan 'live-demo' is valid" in outputs[1]
