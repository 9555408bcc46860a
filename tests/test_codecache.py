"""The disk cache of compiled Jinja2 code (statemachine/codecache.py): hits skip compiling, and
nothing observable changes -- the same itineraries load, the same errors are reported, the same
manifests render."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine import codecache, expressions
from statemachine.errors import SchemaError, TemplateError
from statemachine.itinerary import load_itinerary

DATA = Path(__file__).parent / "data"
INVALID = DATA / "itineraries" / "invalid"
LIVE_EXAMPLE = Path(__file__).parent.parent / "examples" / "live" / "plan.yaml"


def _fresh_process_state() -> None:
    """Forget every environment and compiled text, as a new process would."""
    for cached in (expressions._template_env, expressions._expression_env, expressions._compiled,
                   expressions._compiled_string):
        cached.cache_clear()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SMRUN_CACHE_DIR", str(tmp_path / "cache"))
    _fresh_process_state()
    yield tmp_path / "cache" / "jinja"
    _fresh_process_state()  # later tests must not keep environments bound to this folder


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names (or ``<string>``) of everything Jinja2 compiles from now on."""
    seen: list[str] = []
    original = expressions._Environment.compile

    def counting(self: Any, source: Any, name: str | None = None, *args: Any, **kw: Any) -> Any:
        seen.append(name or "<string>")
        return original(self, source, name, *args, **kw)

    monkeypatch.setattr(expressions._Environment, "compile", counting)
    return seen


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.bin")) if folder.is_dir() else []


def test_a_second_process_compiles_nothing_and_loads_the_same_itinerary(
        cache: Path, compiles: list[str]) -> None:
    first = load_itinerary("live")
    compiled_first = len(compiles)
    assert compiled_first > 50  # expressions, template strings and files of the live itinerary
    assert len(_entries(cache)) == compiled_first

    _fresh_process_state()
    # Without the kept verdict of the checks (itinerary_verdict), so that they run again and
    # compile everything, from this cache.
    shutil.rmtree(cache.parent / "verdicts")
    compiles.clear()
    second = load_itinerary("live")
    assert compiles == []
    assert second == first


def test_rendering_from_cached_code_gives_the_same_manifests(cache: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from statemachine.plan import load_plan
    from statemachine.providers import itinerary_for_plan
    from statemachine.render import render_plan
    from statemachine.sim.offline import seed_reads

    def render() -> list[Any]:
        plan = load_plan(LIVE_EXAMPLE)
        return render_plan(plan, itinerary_for_plan(plan), seed_reads(plan))

    cold = render()          # fills the cache
    _fresh_process_state()
    warm = render()          # from the cache
    monkeypatch.setenv("SMRUN_CACHE_DIR", "off")
    _fresh_process_state()
    uncached = render()
    assert len(cold) > 10
    assert warm == cold == uncached


@pytest.mark.parametrize("name", ["bad-expression-syntax", "template-syntax-error",
                                  "bad-ref-template", "template-includes-missing"])
def test_errors_are_reported_the_same_with_a_warm_cache(cache: Path, name: str) -> None:
    def error() -> str:
        with pytest.raises(SchemaError) as caught:
            load_itinerary(INVALID / f"{name}.yaml")
        return str(caught.value)

    first = error()
    _fresh_process_state()
    second = error()
    _fresh_process_state()
    third = error()
    assert first == second == third
    assert first.startswith(str(INVALID / f"{name}.yaml"))


def test_a_text_that_fails_to_compile_is_not_stored(cache: Path) -> None:
    with pytest.raises(TemplateError, match="does not compile"):
        expressions.compile_expression("object.status.(")
    with pytest.raises(TemplateError, match="does not compile"):
        expressions.compile_template("{{ vm.name ")
    assert _entries(cache) == []
    expressions.compile_expression("object.status.phase == 'Running'")
    assert len(_entries(cache)) == 1


def test_an_included_template_is_still_checked_when_its_parent_comes_from_the_cache(
        cache: Path, tmp_path: Path) -> None:
    # The parent compiles (an include is resolved when rendering), so it is cached with the
    # names it includes; the missing include must still be reported from that entry.
    path = INVALID / "template-includes-missing.yaml"
    with pytest.raises(SchemaError, match="includes missing"):
        load_itinerary(path)
    assert _entries(cache)
    _fresh_process_state()
    with pytest.raises(SchemaError, match="includes missing"):
        load_itinerary(path)


def test_a_corrupt_entry_is_a_miss(cache: Path, compiles: list[str]) -> None:
    expr = "condition_true(object, 'Ready')"
    assert expressions.evaluate(expr, {"object": {}}) is False
    [entry] = _entries(cache)
    entry.write_bytes(b"not marshal data")
    _fresh_process_state()
    compiles.clear()
    assert expressions.evaluate(expr, {"object": {"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}}) is True
    assert compiles == ["<string>"]  # compiled again, and the entry rewritten
    _fresh_process_state()
    compiles.clear()
    assert expressions.evaluate(expr, {"object": {}}) is False
    assert compiles == []


@pytest.mark.parametrize("value", ["off", "", "0"])
def test_the_cache_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       value: str) -> None:
    monkeypatch.setenv("SMRUN_CACHE_DIR", value)
    assert codecache.cache_dir() is None
    assert codecache.open_cache(expressions.make_environment()) is None


def test_the_default_folder_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMRUN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert codecache.cache_dir() == tmp_path / "smrun" / "jinja"


def test_no_home_folder_means_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMRUN_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert codecache.open_cache(expressions.make_environment()) is None


def test_a_folder_owned_by_someone_else_is_not_used(cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getuid", lambda: os.stat(cache.parent.parent).st_uid + 1)
    assert codecache.open_cache(expressions.make_environment()) is None


def test_a_folder_others_may_write_to_is_not_used(cache: Path) -> None:
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    assert codecache.open_cache(expressions.make_environment()) is None
    cache.chmod(0o700)
    assert codecache.open_cache(expressions.make_environment()) is not None


def test_the_key_covers_the_filters_and_the_undefined_policy() -> None:
    base = expressions.make_environment()
    more = expressions.make_environment()
    more.filters["extra"] = str
    lenient = expressions.make_environment(expressions=True)
    digests = {codecache.environment_digest(e) for e in (base, more, lenient)}
    assert len(digests) == 3
    assert codecache.environment_digest(expressions.make_environment()) == \
        codecache.environment_digest(base)
