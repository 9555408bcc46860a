"""A generated corpus of broken and hostile inputs (issue 13, item 7), and smrun under a memory limit
(item 2).

Each case is a file (or a state directory) made in a temporary folder: plans, the seeds,
itineraries, hook playbooks and templates they point to, and state directories. Each is run
through ``validate``, ``render`` and ``run`` where that command reads it, and each run asserts:
the documented exit code (2 invalid input; 4 the state directory), exactly one line on stderr,
naming the culprit file, no traceback and no "internal error", no request that writes to a
cluster (the ``run`` cases talk to simulated clusters whose request log is checked), and an
answer within 5 s.

Cheap cases run in-process through ``statemachine.cli.main`` (the same code path as the
command, minus the interpreter start); a representative subset runs as real subprocesses, under
``RLIMIT_AS`` = 512 MiB, so "no input makes smrun exceed 512 MiB before refusing it" is checked
with the bombs and the huge inputs.

Hostile templates run through ``validate`` and ``render`` (a simulated plan renders offline);
a handful also through ``run`` against the logged simulated clusters, where preflight renders
them and refuses with the same one line, exit 2 (a render budget is the itinerary's defect, not a
preflight finding).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from statemachine import budget
from statemachine.cli import main
from statemachine.sim.cluster import SimulatedClusters

from test_budget import HOSTILE

MiB = 1024 * 1024
WRITES = ("POST", "PUT", "PATCH", "DELETE")
ENGINE = Path(__file__).resolve().parent / "data" / "engine"


@dataclass
class Case:
    name: str
    commands: tuple[str, ...]         # of validate, render, run
    code: int
    build: Callable[[Path, Path], tuple[Path, str]]  # (folder, kubeconfig) -> (plan, culprit)
    state: Callable[[Path], None] | None = None      # prepares the state directory (run)
    subprocess: bool = False                          # also run as a subprocess under 512 MiB
    extra: dict[str, Any] = field(default_factory=dict)


# -- file contents ----------------------------------------------------------------------------

def laughs(levels: int = 9, width: int = 9, kind: str = "seq") -> str:
    if kind == "seq":
        lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    else:
        lines = ["l0: &l0 {a: lol, b: lol, c: lol}"]
        lines += [f"l{i}: &l{i} {{" + ", ".join(f"k{j}: *l{i - 1}" for j in range(width)) + "}"
                  for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int = 12) -> str:
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for i in range(1, levels):
        lines.append(f"m{i}: &m{i}\n  <<: [*m{i - 1}]\n  x{i}: [*m{i - 1}, *m{i - 1}, *m{i - 1}, *m{i - 1}]")
    return "\n".join(lines) + "\n"


def flow_deep(depth: int) -> str:
    return "a: " + "[" * depth + "]" * depth + "\n"


def block_deep(depth: int) -> str:
    return "".join("  " * i + "k:\n" for i in range(depth)) + "  " * depth + "v\n"


PLAN_HEAD = "apiVersion: smrun.io/v1alpha1\nkind: Plan\nmetadata: {name: corpus}\nspec:\n"


def sim_plan(seed: str = "./seed.yaml", itinerary: str | None = None, hooks: str = "") -> str:
    text = PLAN_HEAD + f"  type: cold\n  simulation: {{seed: {seed}}}\n"
    if itinerary:
        text += f"  itinerary: {itinerary}\n"
    text += hooks + "  vms:\n    - name: web-1\n      namespace: shop\n"
    if hooks:
        text += "      hooks: [{step: PreHook, hook: h}]\n"
    return text


SEED = "source:\n  - {apiVersion: v1, kind: Namespace, metadata: {name: shop}}\ntarget: []\n"

ITINERARY = """apiVersion: smrun.io/v1alpha1
kind: Itinerary
metadata: {name: corpus}
spec:
  migrationType: cold
  templates: templates
  predicates:
    P: "%s"
  states:
    - name: Make
      cluster: target
      actions:
        - apply: t.yaml.j2
    - name: Completed
"""

TEMPLATE_HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: shop}\ndata:\n  v: "


# -- builders ---------------------------------------------------------------------------------

def plan_text(text: str | bytes) -> Callable[[Path, Path], tuple[Path, str]]:
    """The plan file itself is the hostile input."""
    def build(folder: Path, _kubeconfig: Path) -> tuple[Path, str]:
        path = folder / "plan.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path, str(path)
    return build


def plan_is(make: Callable[[Path], Path]) -> Callable[[Path, Path], tuple[Path, str]]:
    def build(folder: Path, _kubeconfig: Path) -> tuple[Path, str]:
        path = make(folder)
        return path, str(path)
    return build


def referenced(name: str, content: str | bytes, plan: Callable[[str], str],
               named: str | None = None) -> Callable[[Path, Path], tuple[Path, str]]:
    """A valid simulated plan pointing at a hostile file ``name`` (the message names it by its
    path, or as ``named`` when given: a playbook is named as the plan spells it)."""
    def build(folder: Path, _kubeconfig: Path) -> tuple[Path, str]:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
        if name != "seed.yaml":
            (folder / "seed.yaml").write_text(SEED, encoding="utf-8")
        path = folder / "plan.yaml"
        path.write_text(plan(f"./{name}"), encoding="utf-8")
        return path, named or str(target)
    return build


def template(body: str, expression: str = "true") -> Callable[[Path, Path], tuple[Path, str]]:
    """A simulated plan whose itinerary's template (or predicate expression) is hostile."""
    def build(folder: Path, _kubeconfig: Path) -> tuple[Path, str]:
        (folder / "templates").mkdir()
        (folder / "templates" / "t.yaml.j2").write_text(body, encoding="utf-8")
        (folder / "it.yaml").write_text(ITINERARY % expression.replace('"', '\\"'), encoding="utf-8")
        (folder / "seed.yaml").write_text(SEED, encoding="utf-8")
        path = folder / "plan.yaml"
        path.write_text(sim_plan(itinerary="./it.yaml"), encoding="utf-8")
        # the message names the itinerary line, the template by its name, and the VM
        return path, str(folder / "it.yaml") if expression != "true" else "t.yaml.j2"
    return build


def template_run(body: str) -> Callable[[Path, Path], tuple[Path, str]]:
    """A plan against the logged simulated clusters whose itinerary's template is hostile."""
    def build(folder: Path, kubeconfig: Path) -> tuple[Path, str]:
        (folder / "templates").mkdir()
        (folder / "templates" / "t.yaml.j2").write_text(body, encoding="utf-8")
        (folder / "it.yaml").write_text(ITINERARY % "true", encoding="utf-8")
        path = folder / "plan.yaml"
        path.write_text(PLAN_HEAD + f"""  type: cold
  itinerary: ./it.yaml
  source: {{kubeconfig: {kubeconfig}, context: source}}
  target: {{kubeconfig: {kubeconfig}, context: target}}
  vms:
    - {{name: vm-1, namespace: shop}}
""", encoding="utf-8")
        return path, "t.yaml.j2"
    return build


def live_plan(folder: Path, kubeconfig: Path) -> Path:
    path = folder / "plan.yaml"
    path.write_text(PLAN_HEAD + f"""  type: cold
  itinerary: {ENGINE / 'itinerary.yaml'}
  source: {{kubeconfig: {kubeconfig}, context: source}}
  target: {{kubeconfig: {kubeconfig}, context: target}}
  vms:
    - {{name: vm-1, namespace: shop}}
""", encoding="utf-8")
    return path


def state_case(prepare: Callable[[Path], str]) -> tuple[Callable[[Path, Path], tuple[Path, str]],
                                                        Callable[[Path], None]]:
    """A valid plan against the logged simulated clusters; ``prepare`` breaks the state dir and
    returns the path the message must name."""
    box: dict[str, str] = {}

    def build(folder: Path, kubeconfig: Path) -> tuple[Path, str]:
        return live_plan(folder, kubeconfig), box["culprit"]

    def state(directory: Path) -> None:
        box["culprit"] = prepare(directory)
    return build, state


ALL = ("validate", "render", "run")


def cases() -> list[Case]:
    out: list[Case] = []

    def add(name: str, build: Callable[[Path, Path], tuple[Path, str]], commands: tuple[str, ...] = ALL,
            code: int = 2, **kw: Any) -> None:
        out.append(Case(name, commands, code, build, **kw))

    # the plan file: alias bombs, nesting, characters, size, YAML errors, shapes
    for levels, width in ((9, 9), (12, 6), (20, 3), (6, 30)):
        add(f"plan-laughs-{levels}x{width}", plan_text(PLAN_HEAD + "  " + laughs(levels, width).replace("\n", "\n  ")),
            subprocess=(levels, width) == (9, 9))
    add("plan-laughs-mappings", plan_text(laughs(8, 8, "map")))
    add("plan-laughs-at-top", plan_text(laughs()))
    for levels in (8, 12, 16):
        add(f"plan-merge-bomb-{levels}", plan_text(merge_bomb(levels)), subprocess=levels == 16)
    add("plan-recursive-alias", plan_text("a: &a [*a]\n"))
    add("plan-recursive-merge", plan_text("a: &a {<<: *a}\n"))
    for depth in (101, 500, 999, 1001, 5000, 100_000):
        add(f"plan-flow-depth-{depth}", plan_text(flow_deep(depth)), subprocess=depth == 100_000)
    for depth in (101, 300, 1200):
        add(f"plan-block-depth-{depth}", plan_text(block_deep(depth)))
    add("plan-mapping-depth", plan_text("a: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n"))
    for i, char in enumerate(["\0", "\x01", "\x08", "\x1b", "\x7f", "\x9b", "\ufffe", "\uffff"]):
        add(f"plan-forbidden-char-{i}", plan_text(sim_plan().replace("web-1", f"web{char}1")))
    add("plan-nul-at-start", plan_text("\0" + sim_plan()))
    add("plan-nul-in-comment", plan_text("# \0\n" + sim_plan()))
    add("plan-invalid-utf8", plan_text(sim_plan().encode() + b"# \xff\xfe\n"))
    add("plan-truncated-utf8", plan_text(sim_plan().encode() + b"# \xc3"))
    add("plan-utf16", plan_text(sim_plan().encode("utf-16")))
    add("plan-binary", plan_text(bytes(range(256)) * 64))
    add("plan-5-MiB-of-comments", plan_text(sim_plan() + ("#" * 1023 + "\n") * 5 * 1024),
        subprocess=True)
    add("plan-4-MiB-plus-one", plan_text("#" * (4 * MiB) + "\n"))

    def sparse(folder: Path) -> Path:
        path = folder / "plan.yaml"
        with open(path, "wb") as fh:
            fh.truncate(60 * MiB)  # 60 MB of NULs, without the disk space
        return path
    add("plan-60-MB-sparse", plan_is(sparse), subprocess=True)
    # 3 MiB on one line, under the cap: parsed, and its one problem (no seed file) reported
    add("plan-long-line", plan_text(sim_plan().replace("name: corpus", "name: corpus, description: "
                                                       + "y" * (3 * MiB))))
    for name, text in {"empty": "", "comments-only": "# nothing\n", "document-marker": "---\n",
                       "scalar": "hello\n", "list": "- a\n- b\n", "number": "42\n",
                       "two-documents": sim_plan() + "---\n" + sim_plan(),
                       "unclosed-bracket": PLAN_HEAD + "  vms: [\n",
                       "bad-indent": "a: 1\nb:\n  - x\n - y\n",
                       "tab-indent": PLAN_HEAD + "\tvms: []\n",
                       "duplicate-key": sim_plan() + "metadata: {name: again}\n",
                       "python-tag": "a: !!python/object/apply:os.system ['true']\n",
                       "unknown-anchor": "a: *nowhere\n",
                       "bad-escape": 'a: "\\q"\n',
                       "unterminated-string": 'a: "abc\n',
                       "spec-is-string": PLAN_HEAD + "  just text\n"}.items():
        add(f"plan-{name}", plan_text(text))

    def directory(folder: Path) -> Path:
        (folder / "plan.yaml").mkdir()
        return folder / "plan.yaml"

    def missing(folder: Path) -> Path:
        return folder / "nope.yaml"

    def loop(folder: Path) -> Path:
        (folder / "plan.yaml").symlink_to(folder / "plan.yaml")
        return folder / "plan.yaml"
    add("plan-is-a-directory", plan_is(directory))
    add("plan-missing", plan_is(missing))
    add("plan-symlink-loop", plan_is(loop))

    # a wrong kind of file given as a plan
    add("itinerary-as-plan", plan_text(ITINERARY % "true"), commands=("render", "run"))
    add("seed-as-plan", plan_text(SEED))
    add("configmap-as-plan", plan_text(TEMPLATE_HEAD + "x\n"))
    add("kubeconfig-as-plan", plan_text("apiVersion: v1\nkind: Config\nclusters: []\n"))
    add("plan-list-kind", plan_text("apiVersion: v1\nkind: List\nitems: []\n"))

    # the seed a simulated plan names
    seeds: dict[str, str | bytes] = {"laughs": laughs(), "merge-bomb": merge_bomb(14), "deep": flow_deep(5000),
                          "block-deep": block_deep(150), "nul": SEED.replace("shop", "sh\0op"),
                          "escape-char": SEED + "# \x1b[31m\n", "invalid-utf8": SEED.encode() + b"\xff",
                          "not-a-mapping": "- a\n", "unknown-cluster": "middle: []\n",
                          "bad-object": "source: [42]\n", "unknown-kind": "source: [{apiVersion: v9, kind: X, metadata: {name: a}}]\n",
                          "plan-as-seed": sim_plan(), "two-documents": SEED + "---\n" + SEED,
                          "syntax-error": "source: [\n",
                          "33-MiB": "#" * (33 * MiB) + "\n"}
    for name, content in seeds.items():
        add(f"seed-{name}", referenced("seed.yaml", content, lambda p: sim_plan(seed=p)),
            subprocess=name in ("laughs", "33-MiB"))

    # the itinerary a plan names
    for name, content in {"laughs": laughs(), "deep": flow_deep(2000), "nul": ITINERARY.replace("corpus", "cor\0pus"),
                          "plan-as-itinerary": sim_plan(), "seed-as-itinerary": SEED,
                          "5-MiB": "#" * (5 * MiB) + "\n", "merge-bomb": merge_bomb(14)}.items():
        add(f"itinerary-{name}", referenced("it.yaml", content, lambda p: sim_plan(itinerary=p)))

    # the hook playbook a plan names
    hook = "  hooks: [{{name: h, image: img, playbook: {}}}]\n"
    playbooks: dict[str, str | bytes] = {
        "nul": "- hosts: all\0\n", "laughs": laughs(), "deep": flow_deep(3000),
        "invalid-utf8": b"- hosts: \xff\n", "2-MiB": "#" * (2 * MiB) + "\n", "syntax-error": "- [\n"}
    for name, content in playbooks.items():
        add(f"playbook-{name}", referenced("hooks/p.yml", content,
                                           lambda p: sim_plan(hooks=hook.format(p)), "./hooks/p.yml"))

    # templates and expressions of an itinerary (validate and render: see the module docstring)
    for name, body in HOSTILE.items():
        add(f"template-{name}", template(TEMPLATE_HEAD + body + "\n"), commands=("validate", "render"))
    for name in ("nested-range", "string-multiplication", "recursive-macro", "huge-join",
                 "output-size"):
        add(f"template-{name}-in-run", template_run(TEMPLATE_HEAD + HOSTILE[name] + "\n"),
            commands=("run",))
    add("template-renders-laughs", template(laughs()), commands=("validate", "render"))
    add("template-renders-deep", template(flow_deep(3000)), commands=("validate", "render"))
    add("template-renders-nul", template(TEMPLATE_HEAD + "{{ '\\x00' }}\n"), commands=("validate", "render"))
    add("template-renders-merge-bomb", template(merge_bomb(14)), commands=("validate", "render"))
    for name, expression in {"multiplication": "('x' * 1000000) * 1000", "power": "2 ** 100000000",
                             "join": "range(100000)|join('x' * 100000)",
                             "format": "'%1000000000d' % 1"}.items():
        add(f"expression-{name}", template(TEMPLATE_HEAD + "x\n", expression), commands=("validate", "render"))

    # state directories (run): the plan is fine, the local environment is not
    def state_file(d: Path) -> str:
        d.write_text("a file")
        return str(d)

    def journal_dir(d: Path) -> str:
        (d / "corpus" / "journal.jsonl").mkdir(parents=True)
        return str(d / "corpus" / "journal.jsonl")

    def plan_dir_file(d: Path) -> str:
        d.mkdir()
        (d / "corpus").write_text("a file")
        return str(d / "corpus")

    def journal_text(text: bytes) -> Callable[[Path], str]:
        def prepare(d: Path) -> str:
            (d / "corpus").mkdir(parents=True)
            (d / "corpus" / "journal.jsonl").write_bytes(text)
            return str(d / "corpus" / "journal.jsonl")
        return prepare

    def journal_loop(d: Path) -> str:
        (d / "corpus").mkdir(parents=True)
        (d / "corpus" / "journal.jsonl").symlink_to(d / "corpus" / "journal.jsonl")
        return str(d / "corpus" / "journal.jsonl")

    good = b'{"ts":"x","type":"run_started","run":"r1","vms":["shop/vm-1"]}\n'
    for name, prepare in {"is-a-file": state_file, "journal-is-a-directory": journal_dir,
                          "plan-dir-is-a-file": plan_dir_file, "journal-symlink-loop": journal_loop,
                          "journal-corrupt-line": journal_text(good + b"not json\n" + good),
                          "journal-not-an-object": journal_text(good + b"[1, 2]\n" + good),
                          "journal-no-type": journal_text(good + b'{"vm": "shop/vm-1"}\n' + good),
                          "journal-malformed-entry": journal_text(good + b'{"type":"state_entered","vm":"shop/vm-1"}\n'),
                          "journal-deep-json": journal_text(good + b"[" * 100_000 + b"]" * 100_000 + b"\n" + good),
                          "journal-17-MiB-line": journal_text(good + b'{"a":"' + b"x" * (17 * MiB) + b'"}\n'),
                          "journal-binary": journal_text(good + bytes(range(256)) + b"\n" + good)}.items():
        build, state = state_case(prepare)
        add(f"state-{name}", build, commands=("run",), code=4, state=state,
            subprocess=name in ("journal-deep-json", "journal-17-MiB-line"))
    return out


CASES = cases()
RUNS = [(c, cmd) for c in CASES for cmd in c.commands]


def test_the_corpus_has_at_least_120_inputs_and_covers_every_kind() -> None:
    assert len(CASES) >= 120
    prefixes = {c.name.split("-")[0] for c in CASES}
    assert {"plan", "seed", "itinerary", "playbook", "template", "expression", "state"} <= prefixes
    assert {cmd for c in CASES for cmd in c.commands} == set(ALL)


@pytest.fixture(scope="module")
def logged_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedClusters]:
    folder = tmp_path_factory.mktemp("corpus-sim")
    with SimulatedClusters(seed=ENGINE / "seed.yaml", tick=0.05, request_log=folder / "requests.jsonl",
                           kubeconfig_out=folder / "kubeconfig") as sim:
        yield sim


def write_requests(sim: SimulatedClusters) -> list[str]:
    assert sim.request_log_path is not None
    if not sim.request_log_path.exists():
        return []
    records = [json.loads(line) for line in sim.request_log_path.read_text().splitlines()]
    return [f"{r['method']} {r['path']}" for r in records if r["method"] in WRITES]


def prepare(case: Case, cmd: str, tmp_path: Path, sim: SimulatedClusters) -> tuple[list[str], str]:
    folder = tmp_path / "case"
    folder.mkdir()
    state = tmp_path / "state"
    if case.state is not None:
        case.state(state)
    plan, culprit = case.build(folder, sim.kubeconfig_path)
    argv = [cmd, str(plan)]
    if cmd == "validate":
        argv.append("--offline")
    if cmd == "run":
        argv += ["--state-dir", str(state)]
    return argv, culprit


def check(code: int, err: str, out: str, case: Case, culprit: str, elapsed: float) -> None:
    assert code == case.code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert culprit in lines[0], (culprit, lines[0])
    assert "Traceback" not in err and "internal error" not in err
    assert "Traceback" not in out
    assert elapsed < 5.0, f"{case.name}: {elapsed:.1f}s"


@pytest.mark.parametrize("case,cmd", RUNS, ids=[f"{c.name}:{cmd}" for c, cmd in RUNS])
def test_a_hostile_input_is_refused_in_one_line(case: Case, cmd: str, tmp_path: Path,
                                                logged_sim: SimulatedClusters,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMRUN_CACHE_DIR", "off")
    monkeypatch.setattr(budget, "SECONDS", 0.5)  # the same check, sooner (tests/test_budget.py)
    argv, culprit = prepare(case, cmd, tmp_path, logged_sim)
    before = write_requests(logged_sim)
    started = time.monotonic()
    code = main(argv)
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    check(code, captured.err, captured.out, case, culprit, elapsed)
    assert write_requests(logged_sim) == before  # nothing was written to a cluster


# One command per case (the last: ``run`` where it applies, which loads as much as the others).
SUBPROCESS = [(c, c.commands[-1]) for c in CASES if c.subprocess]
MEMORY_LIMIT = 512 * MiB


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.mark.parametrize("case,cmd", SUBPROCESS, ids=[f"{c.name}:{cmd}" for c, cmd in SUBPROCESS])
def test_the_command_refuses_within_512_MiB(case: Case, cmd: str, tmp_path: Path,
                                            logged_sim: SimulatedClusters) -> None:
    """The real command, under an address-space limit of 512 MiB (RLIMIT_AS: more than its RSS can
    ever be): a bomb or a huge input that made it allocate more would end in MemoryError or a
    crash, not in the one-line refusal."""
    argv, culprit = prepare(case, cmd, tmp_path, logged_sim)
    before = write_requests(logged_sim)
    env = {**os.environ, "SMRUN_CACHE_DIR": "off"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "statemachine", *argv], capture_output=True,
                          text=True, timeout=60, env=env, preexec_fn=_limit_memory)
    elapsed = time.monotonic() - started
    check(proc.returncode, proc.stderr, proc.stdout, case, culprit, elapsed)
    assert write_requests(logged_sim) == before


def test_a_good_plan_runs_under_the_same_memory_limit(tmp_path: Path) -> None:
    """The limit above is not what refuses the inputs: a good plan validates under it."""
    plan = Path(__file__).resolve().parent.parent / "examples" / "live" / "plan.yaml"
    proc = subprocess.run([sys.executable, "-m", "statemachine", "validate", "--offline", str(plan)],
                          capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory,
                          env={**os.environ, "SMRUN_CACHE_DIR": "off"})
    assert proc.returncode == 0, proc.stderr
