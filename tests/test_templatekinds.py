"""``templatekinds.template_kinds``: the kinds a template can create, from its text.

Every branch counts; kinds nested in an object (ownerReferences, dataVolumeTemplates) and in
comments do not; included templates count; what cannot be told from the text is refused naming
the file and line.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from statemachine.errors import DefinitionError
from statemachine.itinerary import load_itinerary
from statemachine.templatekinds import template_kinds


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def test_every_branch_and_document_pairs_its_kind_with_its_api_version(tmp_path: Path) -> None:
    _write(tmp_path, "t.yaml.j2", """\
{#- kind: Commented
apiVersion: nope/v1 -#}
{% if vm.name %}
apiVersion: v1
kind: Secret
metadata:
  ownerReferences: [{apiVersion: kubevirt.io/v1, kind: VirtualMachine}]
{% else %}
apiVersion: batch/v1
kind: "Job"   # a comment
{% endif %}
---
kind: 'ConfigMap'
apiVersion: v1
metadata:
  name: x
spec:
  template:
    kind: Pod
---
apiVersion: apps/v1
{% for i in [1] %}
kind: {% if i %}Deployment{% endif %}
{% endfor %}
""")
    with pytest.raises(DefinitionError, match=r"t\.yaml\.j2:23: kind .* is an expression"):
        template_kinds("t.yaml.j2", tmp_path)
    text = (tmp_path / "t.yaml.j2").read_text().replace(
        "kind: {% if i %}Deployment{% endif %}", "kind: Deployment")
    _write(tmp_path, "u.yaml.j2", text)
    assert template_kinds("u.yaml.j2", tmp_path) == [
        ("apps/v1", "Deployment"), ("batch/v1", "Job"), ("v1", "ConfigMap"), ("v1", "Secret")]


def test_included_and_imported_templates_count(tmp_path: Path) -> None:
    _write(tmp_path, "_lib.j2", "{% macro name() %}x{% endmacro %}\n")
    _write(tmp_path, "part.yaml.j2", "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n")
    _write(tmp_path, "main.yaml.j2", """\
{% import '_lib.j2' as lib %}
apiVersion: v1
kind: ConfigMap
metadata: {name: {{ lib.name() }}}
---
{% include 'part.yaml.j2' %}
""")
    assert template_kinds("main.yaml.j2", tmp_path) == [("v1", "ConfigMap"), ("v1", "ServiceAccount")]


@pytest.mark.parametrize(("text", "message"), [
    ("apiVersion: {{ v }}\nkind: Secret\n", r"t\.yaml\.j2:1: apiVersion .* is an expression"),
    ("metadata: {name: a}\nkind: Secret\n", r"t\.yaml\.j2:2: kind Secret has no apiVersion"),
    ('{"apiVersion": "v1", "kind": "Secret"}\n', r"t\.yaml\.j2: no 'kind:' line"),
])
def test_what_the_text_does_not_tell_is_refused(tmp_path: Path, text: str, message: str) -> None:
    _write(tmp_path, "t.yaml.j2", text)
    with pytest.raises(DefinitionError, match=message):
        template_kinds("t.yaml.j2", tmp_path)


def test_every_builtin_template_is_derivable() -> None:
    """Each apply/ensure template of the built-in itineraries names its kinds literally."""
    for name in ("cold", "warm", "live"):
        itinerary = load_itinerary(name)
        for state in (*itinerary.setup.states, *itinerary.states):
            for action in (*state.actions, *state.undo):
                if action.kind in ("apply", "ensure") and action.template:
                    assert template_kinds(action.template, itinerary.template_dir), action.template


def test_the_instancetypes_template_copies_each_kind_it_names() -> None:
    """common/instancetypes.yaml.j2 writes its two kinds literally (one document each); it
    renders a copy of whichever namespaced instancetype and preference the VM uses."""
    from statemachine.render import render_documents

    def obj(kind: str, name: str) -> dict[str, object]:
        return {"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": kind,
                "metadata": {"name": name, "namespace": "shop", "labels": {"a": "b"},
                             "annotations": {"x": "y", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                "spec": {"cpu": {"guest": 2}}}

    it, pref = obj("VirtualMachineInstancetype", "m"), obj("VirtualMachinePreference", "p")

    def render(**reads: object) -> list[tuple[str, str, dict[str, object]]]:
        docs = render_documents("common/instancetypes.yaml.j2",
                                {"reads": reads, "vm": {"targetNamespace": "west"}})
        return [(d["kind"], d["metadata"]["name"], d["metadata"]) for d in docs]

    both = render(namespacedInstancetype=it, namespacedPreference=pref)
    assert [(k, n) for k, n, _ in both] == [("VirtualMachineInstancetype", "m"),
                                            ("VirtualMachinePreference", "p")]
    assert both[0][2] == {"name": "m", "namespace": "west", "labels": {"a": "b"},
                          "annotations": {"x": "y", "smrun.io/source": "shop/m"}}
    assert [(k, n) for k, n, _ in render(namespacedInstancetype=None, namespacedPreference=pref)] \
        == [("VirtualMachinePreference", "p")]
    assert render(namespacedInstancetype=None, namespacedPreference=None) == render() == []
    assert template_kinds("common/instancetypes.yaml.j2", None) == [
        ("instancetype.kubevirt.io/v1beta1", "VirtualMachineInstancetype"),
        ("instancetype.kubevirt.io/v1beta1", "VirtualMachinePreference")]


def test_a_roles_rules_are_what_creating_it_needs(tmp_path: Path) -> None:
    """Whoever creates a Role must hold what it grants: its rules are read from the text, with
    names left out (they may be expressions); rules that are not literal are refused."""
    from statemachine.templatekinds import template_grants

    _write(tmp_path, "role.yaml.j2", """\
{% set name = vm.name ~ '-x' %}
apiVersion: v1
kind: ServiceAccount
metadata: {name: {{ name | tojson }}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ name | tojson }}
rules:
  - apiGroups: [subresources.kubevirt.io]
    resources: [virtualmachineinstances/pause, virtualmachineinstances/unpause]
    resourceNames: [{{ vm.name | tojson }}]
    verbs: [update]
{% if vm.namespace %}
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list]
{% endif %}
""")
    assert sorted(template_grants("role.yaml.j2", tmp_path)) == [
        ("", "configmaps", ("get", "list")),
        ("subresources.kubevirt.io", "virtualmachineinstances/pause", ("update",)),
        ("subresources.kubevirt.io", "virtualmachineinstances/unpause", ("update",))]
    _write(tmp_path, "bad.yaml.j2", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
                                    "metadata: {name: x}\nrules:\n  - apiGroups: ['']\n"
                                    "    resources: [{{ params.what }}]\n    verbs: [get]\n")
    with pytest.raises(DefinitionError, match=r"bad\.yaml\.j2:2: a rule of this ClusterRole"):
        template_grants("bad.yaml.j2", tmp_path)
    _write(tmp_path, "opaque.yaml.j2", "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n"
                                       "metadata: {name: x}\nrules: {{ rules | tojson }}\n")
    with pytest.raises(DefinitionError, match=r"opaque\.yaml\.j2:2: the rules of this Role"):
        template_grants("opaque.yaml.j2", tmp_path)
