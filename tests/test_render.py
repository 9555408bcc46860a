"""Offline rendering: seed reads, predicates, forEach, output placeholders, checks, secret masking."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from statemachine.errors import DefinitionError, TemplateError
from statemachine.itinerary import Itinerary, load_itinerary
from statemachine.plan import Plan, load_plan
from statemachine.render import (MASK, RenderedManifest, disabled_states, format_manifests,
                                 render_plan, render_vm)
from statemachine.sim.offline import SeedReads, seed_reads

DATA = Path(__file__).parent / "data" / "plans"


@pytest.fixture()
def plan() -> Plan:
    return load_plan(DATA / "valid" / "sim-live.yaml")


@pytest.fixture()
def itinerary() -> Itinerary:
    return load_itinerary(DATA / "render" / "itinerary.yaml")


def rendered(plan: Plan, itinerary: Itinerary) -> list[RenderedManifest]:
    return render_plan(plan, itinerary, seed_reads(plan))


def test_enabled_states_render_in_order_and_predicates_skip_the_rest(plan: Plan, itinerary: Itinerary) -> None:
    out = rendered(plan, itinerary)
    assert [(m.state, m.action, m.index) for m in out] == [
        ("SharedConfig", "ensure", None), ("CopySecrets", "ensure", 0), ("CreateDataVolumes", "apply", 0),
        ("Send", "apply", None), ("Send", "patch", None), ("PostHook", "apply", None)]
    assert out[0].vm is None and all(m.vm == "shop/web-1" for m in out[1:])
    assert disabled_states(plan, itinerary, plan.vms[0], seed_reads(plan)) == {"PreHook"}


def test_clusters_come_from_the_state_or_the_action(plan: Plan, itinerary: Itinerary) -> None:
    clusters = {(m.state, m.action): m.cluster for m in rendered(plan, itinerary)}
    assert clusters[("CreateDataVolumes", "apply")] == "target"
    assert clusters[("Send", "apply")] == "source"


def test_reads_and_the_storage_map_reach_the_templates(plan: Plan, itinerary: Itinerary) -> None:
    dv = next(m.manifest for m in rendered(plan, itinerary) if m.state == "CreateDataVolumes")
    assert dv["metadata"] == {"name": "web-1-root", "namespace": "shop"}
    assert dv["spec"]["storage"]["storageClassName"] == "gp3"
    assert dv["spec"]["storage"]["resources"] == {"requests": {"storage": "10Gi"}}


def test_unknown_outputs_render_as_a_visible_placeholder(plan: Plan, itinerary: Itinerary) -> None:
    send = next(m.manifest for m in rendered(plan, itinerary) if m.state == "Send" and m.action == "apply")
    assert send["spec"]["sendTo"]["connectURL"] == "<output:connectURL>"


def test_patches_are_recorded_with_their_rendered_target(plan: Plan, itinerary: Itinerary) -> None:
    patch = next(m.manifest for m in rendered(plan, itinerary) if m.action == "patch")
    assert patch == {"object": {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "web-1",
                                "namespace": "shop"}, "type": "merge", "patch": {"spec": {"runStrategy": "Halted"}}}


def test_printed_output_is_whole_documents_with_secrets_masked(plan: Plan, itinerary: Itinerary) -> None:
    text = format_manifests(rendered(plan, itinerary))
    assert "hunter2" not in text
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert len(docs) == 5  # the patch is a comment, not a document
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["stringData"] == {"userdata": MASK}
    assert "# shop/web-1: Send (patch on source)" in text


def test_show_secrets_prints_secret_values(plan: Plan, itinerary: Itinerary) -> None:
    assert "hunter2" in format_manifests(rendered(plan, itinerary), show_secrets=True)


def test_masking_does_not_change_the_rendered_manifests(plan: Plan, itinerary: Itinerary) -> None:
    out = rendered(plan, itinerary)
    format_manifests(out)
    secret = next(m.manifest for m in out if m.manifest.get("kind") == "Secret")
    assert "hunter2" in secret["stringData"]["userdata"]


def test_a_required_read_missing_from_the_seed_names_the_read(plan: Plan, itinerary: Itinerary) -> None:
    empty = SeedReads({"source": [], "target": []}, "seed.yaml")
    with pytest.raises(DefinitionError, match=r"reads\.sourceVM: VirtualMachine shop/web-1 not found on the "
                                              r"source cluster in seed.yaml"):
        render_vm(plan, itinerary, plan.vms[0], empty)


def test_seed_objects_without_namespace_answer_reads_in_default() -> None:
    reads = SeedReads({"source": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]})
    assert reads.get("source", "v1", "ConfigMap", "default", "c") is not None
    assert reads.get("target", "v1", "ConfigMap", "default", "c") is None


def test_simulator_defaults_are_visible_to_reads(plan: Plan) -> None:
    reads = seed_reads(plan)
    found = [reads.get(c, "kubevirt.io/v1", "KubeVirt", "kubevirt", "kubevirt") for c in ("source", "target")]
    assert all(obj is not None for obj in found)


def _copy_itinerary(tmp_path: Path) -> Path:
    shutil.copytree(DATA / "render", tmp_path / "render")
    return tmp_path / "render"


@pytest.mark.parametrize("template, message", [
    # a document without metadata.name: a template error naming the template
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
     r"send\.yaml\.j2: rendered object has no metadata\.name"),
    # rendered invalid YAML
    ("kind: [unclosed\n", r"send\.yaml\.j2: rendered invalid YAML"),
    # an undefined variable, with the template's line
    ("name: {{ vm.nmae }}\n", r"send\.yaml\.j2:1: undefined"),
    # a template cannot escape the sandbox
    ("x: {{ ''.__class__.__mro__ }}\n", "sandbox violation"),
], ids=["no-metadata-name", "invalid-yaml", "undefined-variable", "sandbox-escape"])
def test_a_broken_template_is_a_template_error(tmp_path: Path, plan: Plan, template: str,
                                              message: str) -> None:
    folder = _copy_itinerary(tmp_path)
    (folder / "templates" / "send.yaml.j2").write_text(template)
    with pytest.raises(TemplateError, match=message):
        rendered(plan, load_itinerary(folder / "itinerary.yaml"))


def test_selecting_vms_renders_only_those(tmp_path: Path) -> None:
    seed = yaml.safe_load((DATA / "valid" / "seed.yaml").read_text())
    seed["source"].append(yaml.safe_load(_SECOND_VM))
    (tmp_path / "seed.yaml").write_text(yaml.safe_dump(seed), encoding="utf-8")
    text = (DATA / "valid" / "sim-live.yaml").read_text().replace(
        "    - {name: web-1, namespace: shop, hooks: [{step: PostHook, hook: quiesce}]}",
        "    - {name: web-1, namespace: shop}\n    - {name: web-2, namespace: shop}").replace(
        "playbook: ./quiesce.yml", f"playbook: {DATA / 'valid' / 'quiesce.yml'}")
    (tmp_path / "plan.yaml").write_text(text, encoding="utf-8")
    plan = load_plan(tmp_path / "plan.yaml")
    itinerary = load_itinerary(DATA / "render" / "itinerary.yaml")
    everything = render_plan(plan, itinerary, seed_reads(plan))
    assert {m.vm for m in everything} == {None, "shop/web-1", "shop/web-2"}
    only = render_plan(plan, itinerary, seed_reads(plan), vms=["shop/web-2"])
    assert {m.vm for m in only} == {None, "shop/web-2"}


_SECOND_VM = """
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: web-2, namespace: shop}
spec:
  runStrategy: Always
  template: {spec: {domain: {devices: {}}, volumes: []}}
"""
