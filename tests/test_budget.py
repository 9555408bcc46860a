"""The render budget (statemachine/budget.py): templates and expressions that try to exhaust CPU or
memory are stopped with a TemplateError saying "render budget exceeded", within seconds, and
normal templates are unaffected (issue 13, item 3). Through ``smrun render``/``validate`` the same
refusals name the template and the VM with exit 2: see tests/test_hostile_corpus.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from statemachine import budget
from statemachine.errors import TemplateError
from statemachine.expressions import evaluate, render_string, render_text

HOSTILE = {
    "nested-range": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "string-multiplication": "{{ 'x' * 1000000000 }}",
    "list-multiplication": "{{ [1, 2] * 1000000000 }}",
    "power": "{{ 2 ** 100000000 }}",
    "recursive-macro": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "exponential-macro": ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}"
                          "{% endmacro %}{{ f(60) }}"),
    "recursive-loop": "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "loop-cycle": ("{% for i in range(100000) %}{% for j in range(100000) %}"
                   "{{ loop.cycle('', '') }}{% endfor %}{% endfor %}"),
    "huge-join": "{{ range(100000)|join('x' * 100000) }}",
    "join-of-shared-items": "{% set s = 'x' * 1000000 %}{{ [s, s, s]|join }}",
    "indent": "{{ 'a'|indent(1000000000) }}",
    "center": "{{ 'a'|center(1000000000) }}",
    "ljust": "{{ 'a'.ljust(1000000000) }}",
    "percent-width": "{{ '%1000000000d' % 1 }}",
    "star-width": "{{ '%*d' % (1000000000, 1) }}",
    "format-width": "{{ '{:>1000000000}'.format(1) }}",
    "format-filter": "{{ '%1000000000s'|format('x') }}",
    "replace": "{{ ('x' * 1000000)|replace('x', 'yyyyyyyyyy') }}",
    "namespace-growth": ("{% set ns = namespace(s='') %}{% for i in range(100000) %}"
                         "{% set ns.s = ns.s ~ ('x' * 100000) %}{% endfor %}"),
    "slice": "{{ [1]|slice(1000000000)|list }}",
    "output-size": "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
    "shared-list": "{% set s = ['x' * 1000] * 1000 %}{{ [s] * 1000 }}",
    "concatenation": "{% set s = 'x' * 1000000 %}{{ s + s }}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_template_string_is_stopped_by_the_budget(name: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "SECONDS", 0.5)  # the same check, sooner: the suite stays fast
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        render_string(HOSTILE[name], {}, where="it.yaml:7: spec.states[0].x")
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith("it.yaml:7: spec.states[0].x: ")
    assert "render budget exceeded" in message and len(message.splitlines()) == 1
    assert elapsed < budget.SECONDS + 2.5


def test_lipsum_is_not_offered() -> None:
    with pytest.raises(TemplateError, match="'lipsum' is undefined"):
        render_string("{{ lipsum(1000000000) }}", {})


def test_a_hostile_expression_is_stopped_by_the_budget() -> None:
    with pytest.raises(TemplateError, match="render budget exceeded"):
        evaluate("('x' * 1000000) * 1000", {}, where="it.yaml:9: spec.predicates.P")
    with pytest.raises(TemplateError, match="render budget exceeded: a power"):
        evaluate("2 ** 100000000", {})


def test_a_hostile_template_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml.j2").write_text("kind: ConfigMap\n"
                                           "data:\n  x: \"{{ 'y' * 100000000 }}\"\n")
    with pytest.raises(TemplateError) as caught:
        render_text("bomb.yaml.j2", {}, template_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'bomb.yaml.j2'}:3: render budget exceeded")


def test_normal_templates_are_within_budget_and_unchanged() -> None:
    text = ("{% set ns = namespace(n=0) %}{% for i in range(1000) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }} {{ 'ab' * 3 }} {{ [1, 2] + [3] }} {{ '%05d' % 42 }} "
            "{{ '{:>4}'.format(7) }} {{ range(5)|join(',') }} {{ 'a\nb'|indent(2) }} "
            "{{ 2 ** 10 }} {{ 'x'.ljust(3) }}|")
    assert render_string(text, {}) == "499500 ababab [1, 2, 3] 00042    7 0,1,2,3,4 a\n  b 1024 x  |"
    assert evaluate("[1, 2] * 2", {}) == [1, 2, 1, 2]


def test_the_budget_survives_the_disk_code_cache(tmp_path: Path) -> None:
    """The loop wrapping is part of the generated code: a template compiled in one process and
    taken from the disk cache in the next is still stopped."""
    script = ("import sys\nfrom statemachine.expressions import render_string\n"
              "from statemachine.errors import TemplateError\n"
              "try:\n    render_string(sys.argv[1], {})\nexcept TemplateError as e:\n"
              "    print(e)\n")
    env = {**os.environ, "SMRUN_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", script, HOSTILE["nested-range"]],
                              capture_output=True, text=True, env=env, timeout=60)
        assert "render budget exceeded: more than 2 s" in proc.stdout, proc.stderr
        assert list((tmp_path / "cache" / "jinja").glob("*.bin"))
