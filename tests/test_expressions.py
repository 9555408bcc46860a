"""The sandboxed Jinja2 setup: sandbox escapes, undefined policies, helpers and filters."""
from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from statemachine import expressions
from statemachine.errors import TemplateError
from statemachine.expressions import evaluate, render_string, render_text, render_value


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    (tmp_path / "ok.yaml.j2").write_text("name: {{ vm.name | tojson }}\n")
    (tmp_path / "undefined.yaml.j2").write_text("a: 1\nb: {{ vm.nmae }}\n")
    (tmp_path / "syntax.yaml.j2").write_text("a: 1\nb: {{ vm.name\n")
    (tmp_path / "escape.yaml.j2").write_text("x: 1\ny: {{ ''.__class__.__mro__ }}\n")
    (tmp_path / "globals.yaml.j2").write_text("{{ cycler.__init__.__globals__ }}\n")
    (tmp_path / "readfile.yaml.j2").write_text("{% include '../../../../etc/passwd' %}\n")
    (tmp_path / "abs.yaml.j2").write_text("{% include '/etc/passwd' %}\n")
    (tmp_path / "mutate.yaml.j2").write_text("{% set l = [] %}{{ l.append(1) }}\n")
    (tmp_path / "include.yaml.j2").write_text("{% include 'ok.yaml.j2' %}")
    return tmp_path


def test_render_text_renders_from_the_template_dir(tdir: Path) -> None:
    assert render_text("ok.yaml.j2", {"vm": {"name": "web-1"}}, template_dir=tdir) == \
        'name: "web-1"\n'
    assert render_text("include.yaml.j2", {"vm": {"name": "a"}}, template_dir=tdir) == 'name: "a"\n'


def test_undefined_variable_names_the_template_file_and_line(tdir: Path) -> None:
    with pytest.raises(TemplateError) as caught:
        render_text("undefined.yaml.j2", {"vm": {"name": "x"}}, template_dir=tdir)
    message = str(caught.value)
    assert f"{tdir / 'undefined.yaml.j2'}:2:" in message
    assert "nmae" in message


def test_syntax_error_names_the_template_file_and_line(tdir: Path) -> None:
    with pytest.raises(TemplateError) as caught:
        render_text("syntax.yaml.j2", {"vm": {"name": "x"}}, template_dir=tdir)
    assert re.search(r"syntax\.yaml\.j2:\d+: syntax error", str(caught.value))


def test_missing_template_is_a_template_error(tdir: Path) -> None:
    with pytest.raises(TemplateError, match="template 'nope.yaml.j2' not found"):
        render_text("nope.yaml.j2", {}, template_dir=tdir)


@pytest.mark.parametrize("name,needle", [
    ("escape.yaml.j2", "sandbox violation"),
    ("globals.yaml.j2", "sandbox violation"),
    ("mutate.yaml.j2", "sandbox violation"),
    ("readfile.yaml.j2", "not found"),
    ("abs.yaml.j2", "not found"),
])
def test_templates_cannot_escape_the_sandbox(tdir: Path, name: str, needle: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(name, {}, template_dir=tdir)
    assert needle in str(caught.value)
    assert name in str(caught.value)


@pytest.mark.parametrize("expr", [
    "''.__class__",
    "''.__class__.__mro__[1].__subclasses__()",
    "cycler.__init__.__globals__",
    "namespace.__init__.__globals__",  # lipsum (text of any size) is not offered at all
    "range.__globals__",
    "object.__class__",
    "[].append(1)",
    "{}.update(a=1)",
])
def test_expressions_cannot_escape_the_sandbox(expr: str) -> None:
    with pytest.raises(TemplateError, match="sandbox violation"):
        evaluate(expr, {"object": {"a": 1}}, where="x.yaml:3: spec.predicates.P")


def test_expression_errors_carry_where() -> None:
    with pytest.raises(TemplateError) as caught:
        evaluate("nosuchvar.field", {}, where="x.yaml:3: spec.states[0].forEach")
    assert str(caught.value).startswith("x.yaml:3: spec.states[0].forEach: ")
    assert "'nosuchvar' is undefined" in str(caught.value)


def test_expressions_are_lenient_for_missing_fields() -> None:
    ctx = {"object": {"metadata": {"name": "a"}}}
    assert evaluate("object.status.phase == 'Running'", ctx) is False
    assert evaluate("object.status.phase", ctx) is None
    assert evaluate("object.status.conditions | length", ctx) == 0
    assert evaluate("object.status.count > 0", ctx) is False
    assert evaluate("object.status.count + 1 > 0", ctx) is False
    assert evaluate("object.status.phase | default('Pending')", ctx) == "Pending"
    assert evaluate("object.status.a.b.c", {"object": None}) is None
    assert evaluate("[object.status.x, 1]", ctx) == [None, 1]


def test_templates_are_strict_for_missing_fields() -> None:
    with pytest.raises(TemplateError, match="undefined"):
        render_string("{{ object.status.phase }}", {"object": {}})


def test_expressions_are_compiled_once() -> None:
    expr = "object.spec.x == 12345"
    evaluate(expr, {"object": {}})
    before = expressions._compiled.cache_info().hits
    evaluate(expr, {"object": {"spec": {"x": 12345}}})
    assert expressions._compiled.cache_info().hits == before + 1


def test_compile_expression_reports_syntax_errors() -> None:
    expressions.compile_expression("a and b")
    with pytest.raises(TemplateError, match="does not compile"):
        expressions.compile_expression("a and")


def test_render_value_renders_every_string_recursively() -> None:
    value = {"data": {"ca": "{{ reads.ca }}", "n": 3, "list": ["{{ vm.name }}-x", True]},
             "{{ key }}": "plain"}
    ctx = {"reads": {"ca": "PEM"}, "vm": {"name": "web"}}
    assert render_value(value, ctx) == {"data": {"ca": "PEM", "n": 3, "list": ["web-x", True]},
                                        "{{ key }}": "plain"}


VM_WITH_CONDITIONS = {"status": {"conditions": [
    {"type": "Ready", "status": "True"}, {"type": "Paused", "status": "False"}]}}


def test_condition_helpers() -> None:
    ctx = {"object": VM_WITH_CONDITIONS}
    assert evaluate("condition(object, 'Ready').status", ctx) == "True"
    assert evaluate("condition(object, 'Missing')", ctx) is None
    assert evaluate("condition_true(object, 'Ready')", ctx) is True
    assert evaluate("condition_true(object, 'Paused')", ctx) is False
    assert evaluate("condition_true(object, 'Ready')", {"object": None}) is False


PLAN = {"map": {
    "storage": [{"source": "ceph-rbd", "destination": {"storageClass": "gp3",
                                                      "accessMode": "ReadWriteMany"}}],
    "network": [{"source": {"type": "pod"}, "destination": {"type": "pod"}},
                {"source": {"name": "default/vlan10"},
                 "destination": {"type": "multus", "name": "vms/vlan10"}}]}}


def test_storage_and_network_maps() -> None:
    ctx = {"plan": PLAN, "vm": {"namespace": "default"}}
    assert evaluate("storage_for('ceph-rbd').storageClass", ctx) == "gp3"
    assert evaluate("storage_for('other')", ctx) is None
    assert evaluate("network_for({'name': 'default', 'pod': {}})", ctx) == {"type": "pod"}
    assert evaluate("network_for({'name': 'n1', 'multus': {'networkName': 'vlan10'}}).name",
                    ctx) == "vms/vlan10"
    assert evaluate("network_for({'name': 'n2', 'multus': {'networkName': 'other'}})", ctx) is None


def test_dns_name() -> None:
    assert expressions.dns_name("Shop/Web_1") == "shop-web-1"
    assert expressions.dns_name("ok-name") == "ok-name"
    long = expressions.dns_name("a" * 100)
    assert len(long) <= 63 and re.fullmatch(r"a+-[0-9a-f]{8}", long)
    assert expressions.dns_name("a" * 100) == long  # stable
    assert expressions.dns_name("a" * 99) != long


def test_now_is_rfc3339_utc() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", evaluate("now()", {}))


def test_filters() -> None:
    assert render_string("{{ v | tojson }}", {"v": "<a & 'b'>"}) == "\"<a & 'b'>\""
    assert render_string("{{ v | toyaml }}", {"v": {"a": [1, 2]}}) == "a:\n- 1\n- 2"
    encoded = render_string("{{ 'secret' | b64encode }}", {})
    assert base64.b64decode(encoded) == b"secret"
    assert render_string("{{ v | b64decode }}", {"v": encoded}) == "secret"
    obj = {"apiVersion": "v1", "kind": "Secret", "status": {"x": 1},
           "metadata": {"name": "s", "uid": "u", "resourceVersion": "7", "labels": {"a": "b"},
                        "managedFields": [], "ownerReferences": [], "generation": 2,
                        "creationTimestamp": "t"}}
    stripped = evaluate("object | strip_server_fields", {"object": obj})
    assert stripped == {"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "s", "labels": {"a": "b"}}}
    assert obj["metadata"]["uid"] == "u"  # the original is untouched


def test_tojson_makes_yaml_injection_harmless() -> None:
    import yaml

    text = render_string("name: {{ v | tojson }}\n", {"v": "x\nkind: Evil"})
    assert yaml.safe_load(text) == {"name": "x\nkind: Evil"}


@pytest.mark.parametrize("flt", ["tojson", "toyaml", "b64encode"])
def test_an_undefined_variable_piped_into_a_filter_is_an_error_not_null(flt: str) -> None:
    from statemachine.errors import TemplateError
    from statemachine.expressions import render_string

    with pytest.raises(TemplateError, match="typo"):
        render_string("value: {{ typo | %s }}" % flt, {}, where="t.yaml.j2")


def test_time_after_adds_seconds_to_an_rfc3339_time() -> None:
    ctx = {"t": "2026-12-01T01:59:30Z", "s": 45}
    assert evaluate("time_after(t, s)", ctx) == "2026-12-01T02:00:15Z"
    assert evaluate("time_after('2026-12-01T03:00:00+01:00', 0)", {}) == "2026-12-01T02:00:00Z"
    assert evaluate("time_after(none, 5)", {}) is None
    # The warm wait's shape: the earlier of the next round and the cutover.
    assert evaluate("([time_after(t, s)] + (['2026-12-01T02:00:00Z'])) | min", ctx) == "2026-12-01T02:00:00Z"


@pytest.mark.parametrize("attribute", ["name", "missing", "items", "keys", "get", "values",
                                       "__class__", "__init__", "mro", "__name__", "copy"])
@pytest.mark.parametrize("obj", [{"name": "web-1", "items": 3, "values": [1]}, {},
                                 type("Sub", (dict,), {})(name="x"), ["a"], "text"])
def test_field_of_a_plain_dict_answers_as_the_sandbox_does(obj: object, attribute: str) -> None:
    """The environment's fast path for a plain dict's fields (issue 17, tenth session) answers
    what the sandbox's own ``getattr`` answers: the item when no attribute has the name, the
    (safe) attribute or the refusal when one does, the same undefined when neither."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = expressions._expression_env()

    def answer(getattr_: object) -> object:
        try:
            value = getattr_(obj, attribute)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - the refusal is part of the answer
            return ("raised", type(exc), str(exc))
        if isinstance(value, expressions.Undefined):
            return ("undefined", type(value), value._undefined_name, value._undefined_obj is obj)
        return ("value", value)

    fast = answer(env.getattr)
    slow = answer(lambda o, a: ImmutableSandboxedEnvironment.getattr(env, o, a))
    assert fast == slow
    if type(obj) is dict and attribute == "name" and obj:
        assert fast == ("value", "web-1")


def test_expressions_over_dicts_keep_their_answers() -> None:
    ctx = {"o": {"items": [1, 2], "spec": {"a": 1}}, "vm": {"name": "web-1"}}
    assert evaluate("o.spec.a", ctx) == 1
    assert evaluate("o.spec.b", ctx) is None
    assert evaluate("o.spec.b.c | default('x')", ctx) == "x"
    assert evaluate("o['items']", ctx) == [1, 2]
    assert evaluate("o.items is callable", ctx) is True  # the method, as Jinja gives it
    assert render_string("{{ vm.name }}", ctx) == "web-1"
    with pytest.raises(TemplateError):
        render_string("{{ vm.nmae }}", ctx)


_CTX = {"vm": {"name": "web-1", "n": 3, "none": None, "items": "shadowed", "nested": {"a": "b"}},
        "item": "disk-0", "num": 7, "values": type("Lazy", (dict,), {})(x="from-subclass"),
        "text": "a" * 10}


@pytest.mark.parametrize("source", [
    "{{ vm.name }}", "{{vm.name}}", "{{   vm.name   }}", "{{ item }}", "{{ vm.nested.a }}",
    "kubevirt", "", "plain text with spaces\n", "two\nlines", "carriage\r\nreturn",
    "{{ vm.n }}", "{{ vm.none }}", "{{ num }}", "{{ vm.items }}", "{{ vm.keys }}",
    "{{ values.x }}", "{{ none }}", "{{ true }}", "{{ vm.name }}-x", "{{ vm.name | upper }}",
    "{{ vm.missing }}", "{{ nothing }}", "{{ vm.nested.a.b }}", "{{ vm }}", "{# c #}x",
    "{{- vm.name -}}", "{{ vm['name'] }}", "{{ range }}",
])
def test_a_plain_template_string_renders_as_jinja_renders_it(source: str) -> None:
    """``render_string``'s plain forms (issue 17, tenth session): where it answers without
    Jinja, the answer is Jinja's; everything else (errors included) is Jinja's own."""
    plain = expressions._plain_string(source, _CTX)
    template = expressions._compiled_string(source)
    try:
        jinja: object = expressions._render_bounded(template, _CTX)
    except Exception as exc:  # noqa: BLE001 - an error is Jinja's answer: never a plain one
        assert plain is None, (source, exc)
        with pytest.raises(TemplateError):
            render_string(source, _CTX)
        return
    assert plain is None or plain == jinja
    assert render_string(source, _CTX) == jinja
    if source in ("{{ vm.name }}", "{{ item }}", "kubevirt", "{{vm.name}}"):
        assert plain is not None  # the forms object references use are answered plainly
