"""Helpers for the itinerary-language tests: write a small custom itinerary and a simulated plan
that runs it into a temporary folder."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "plans" / "valid"

RESTART = """\
apiVersion: smrun.io/v1alpha1
kind: Itinerary
metadata: {name: restart, description: record a VM's run strategy then restart it}
spec:
  migrationType: restart
  templates: templates
  reads:
    - {name: sourceVM, cluster: source, object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine, name: "{{ vm.name }}", namespace: "{{ vm.namespace }}"}}
  states:
    - name: Record
      cluster: source
      actions:
        - apply: report.yaml.j2
    - name: Completed
"""

REPORT = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-report", namespace: "{{ vm.namespace }}"}
data: {flow: "{{ plan.type }}"}
"""


def write_flow(folder: Path, itinerary: str = RESTART, *, plan_type: str | None = None,
               extra_spec: str = "", templates: dict[str, str] | None = None) -> Path:
    """Write ``flow.yaml`` (the itinerary), its templates and ``plan.yaml`` (simulated, one VM);
    returns the plan's path."""
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    for name, text in (templates or {"report.yaml.j2": REPORT}).items():
        (folder / "templates" / name).write_text(text, encoding="utf-8")
    (folder / "flow.yaml").write_text(itinerary, encoding="utf-8")
    shutil.copy(DATA / "seed.yaml", folder / "seed.yaml")
    type_line = f"  type: {plan_type}\n" if plan_type else ""
    plan = folder / "plan.yaml"
    plan.write_text(
        "apiVersion: smrun.io/v1alpha1\nkind: Plan\nmetadata: {name: flow}\nspec:\n" + type_line
        + "  itinerary: ./flow.yaml\n  simulation: {seed: ./seed.yaml}\n"
        + textwrap.indent(textwrap.dedent(extra_spec), "  ")
        + "  vms:\n    - {name: web-1, namespace: shop}\n", encoding="utf-8")
    return plan
