"""``smrun render`` of a plan without ``spec.simulation`` (reads from the live clusters, read
only) and ``smrun itineraries --copy NAME DIR`` (issue 15 items 6 and 7, in part)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "live" / "plan.yaml"


def _against(plan: Path, kubeconfig: Path, out: Path, *, itinerary: str | None = None) -> Path:
    """The example plan aimed at a kubeconfig's clusters instead of its seed."""
    data = yaml.safe_load(plan.read_text())
    del data["spec"]["simulation"]
    data["spec"]["source"] = {"kubeconfig": str(kubeconfig), "context": "source"}
    data["spec"]["target"] = {"kubeconfig": str(kubeconfig), "context": "target"}
    for hook in data["spec"].get("hooks", []):
        hook["playbook"] = str((plan.parent / hook["playbook"]).resolve())
    if itinerary is not None:
        data["spec"]["itinerary"] = itinerary
    out.write_text(yaml.safe_dump(data), encoding="utf-8")
    return out


def test_render_reads_the_live_clusters_and_writes_nothing(
        tmp_path: Path, make_sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(EXAMPLE)]) == 0
    offline = capsys.readouterr().out
    log = tmp_path / "requests.jsonl"
    sim = make_sim(seed=EXAMPLE.parent / "seed.yaml", request_log=log)
    plan = _against(EXAMPLE, sim.kubeconfig_path, tmp_path / "plan.yaml")
    assert main(["render", str(plan)]) == 0
    live = capsys.readouterr().out
    # Same manifests from the clusters as from the seed they were started from.
    assert live == offline and live.count("\nkind: VirtualMachine\n") == 3
    assert sim.store("target").try_get("VirtualMachine", "shop", "web-1") is None  # nothing applied
    methods = {json.loads(line)["method"] for line in log.read_text().splitlines() if line.strip()}
    assert methods and methods <= {"GET"}, methods  # read only


def test_render_of_unreachable_clusters_is_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "source",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": n, "context": {"cluster": "c", "user": "u"}} for n in ("source", "target")]}))
    plan = _against(EXAMPLE, kubeconfig, tmp_path / "plan.yaml")
    code = main(["render", str(plan)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1, err


def test_itineraries_lists_files_and_how_to_copy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["itineraries"]) == 0
    out = capsys.readouterr().out
    for name in ("cold", "warm", "live"):
        assert str(ROOT / "itineraries" / f"{name}.yaml") in out
    assert "smrun itineraries --copy NAME DIR" in out and f"templates: {ROOT / 'templates'}" in out


def test_a_copied_itinerary_validates_and_renders_like_the_built_in(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(EXAMPLE)]) == 0
    builtin = capsys.readouterr().out
    folder = tmp_path / "mine"
    assert main(["itineraries", "--copy", "live", str(folder)]) == 0
    capsys.readouterr()
    copy = folder / "live.yaml"
    assert "templates: templates" in copy.read_text()
    assert (folder / "templates" / "live" / "virtualmachine.yaml.j2").is_file()
    assert not (folder / "templates" / "cold").exists()  # only what the itinerary uses
    assert main(["validate", str(copy)]) == 0
    data = yaml.safe_load(EXAMPLE.read_text())
    data["spec"]["itinerary"] = str(copy)
    data["spec"]["simulation"]["seed"] = str(EXAMPLE.parent / "seed.yaml")
    for hook in data["spec"].get("hooks", []):
        hook["playbook"] = str((EXAMPLE.parent / hook["playbook"]).resolve())
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["render", str(plan)]) == 0
    assert capsys.readouterr().out == builtin
    # An edit to the copied template shows in the render.
    vm_template = folder / "templates" / "live" / "virtualmachine.yaml.j2"
    vm_template.write_text(vm_template.read_text().replace("kind: VirtualMachine\n",
                                                           "kind: VirtualMachine\n# edited copy\n", 1))
    assert main(["render", str(plan)]) == 0


def test_copy_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["itineraries", "--copy", "cold", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["itineraries", "--copy", "cold", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cold.yaml: already exists" in err[0]
    assert main(["itineraries", "--copy", "hot", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("unknown itinerary 'hot' (installed: cold, live, warm; a file needs "
                              "a .yaml suffix)") in err[0]
    assert not (tmp_path / "x").exists()


def test_itineraries_show_prints_the_file_with_its_parameters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.language.test_parameters_values import PARAMS
    from tests.language.conftest import write_flow

    write_flow(tmp_path, PARAMS)
    assert main(["itineraries", "show", str(tmp_path / "flow.yaml")]) == 0
    out = capsys.readouterr().out
    assert '#   deadline {"type": "integer", "minimum": 1}, default 600: seconds the restart may take' in out
    assert '#   label {"type": "string", "pattern": "^[a-z]+$"}, required' in out
    assert "# values (values.NAME): volumes, volumeNames, count" in out
    assert out.endswith(PARAMS)
    assert main(["itineraries", "show", "live"]) == 0
    assert str(ROOT / "itineraries" / "live.yaml") in capsys.readouterr().out


def test_itineraries_export_is_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["itineraries", "export", "warm", str(tmp_path)]) == 0
    assert (tmp_path / "warm.yaml").is_file() and (tmp_path / "templates").is_dir()
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "warm.yaml")]) == 0
    assert main(["itineraries", "show"]) == 2
