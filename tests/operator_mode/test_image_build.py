"""The Containerfile's build, done step by step without a container engine (issue 12, item 8).

There is no engine where this suite runs (a docker client without a daemon; base images cannot be
pulled), so this test performs what ``podman build -f Containerfile .`` would, instruction by
instruction, into a folder standing for the image's root file system, and then runs the image's
command there as its ``USER`` would:

- the Containerfile is parsed; an instruction this test does not know fails it (so the test
  keeps up with the file);
- ``FROM``'s Python version must satisfy ``requires-python``;
- ``COPY . /src`` copies the build context as the engine sends it: ``.containerignore`` applied
  (docker's syntax: ``**``, ``!`` exceptions, a matched folder takes its contents along);
- ``RUN`` is split at ``&&`` and each command done in the image root: ``pip install`` builds the
  copied context (so a file the build needs and the ignore file drops fails here) and installs it
  into a fresh prefix standing for ``/usr/local``, ``rm``, ``mkdir``, ``chown``. Offline by
  default: ``--no-deps --no-index --no-build-isolation`` are added and the dependencies (with
  the ``operator`` extra, markers evaluated for ``FROM``'s Python) are checked against the
  versions the test interpreter has, which the prefix then uses through a ``.pth`` file (as
  tests/test_packaging.py does). With ``SMRUN_IMAGE_BUILD_ONLINE=1`` the ``RUN`` line's pip command
  runs as written, resolving the dependencies from the package index into a prefix with nothing
  else;
- ``ENTRYPOINT`` + ``operator --help``, ``operator manifests``, and the image's own ``CMD`` run
  from that prefix with the ``ENV`` set, in ``WORKDIR``, as ``USER`` when this process can switch
  to it (root, and an interpreter that user can reach), else as the current user; the image root
  is then compared with a snapshot taken before: nothing is written there outside ``WORKDIR``
  (the Deployment's root file system is read-only);
- the Deployment's container args from the printed install run the operator from the prefix
  against a simulated cluster as the operator's ServiceAccount with the derived ClusterRole: it
  turns ready and marks a bad Plan ``Invalid``.

What it cannot show: the base image itself (its Python is the test interpreter's, whatever its
version; the package is pure Python, which is checked) and an engine's layer mechanics.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from statemachine.sim.cluster import SimulatedClusters

ROOT = Path(__file__).resolve().parents[2]
ONLINE = os.environ.get("SMRUN_IMAGE_BUILD_ONLINE") == "1"

pytestmark = pytest.mark.slow


# -- the Containerfile ----------------------------------------------------------------------------

@dataclass
class Image:
    base: str = ""
    copies: list[tuple[str, str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def parse_containerfile(path: Path) -> Image:
    """The instructions of ``path``; continuation lines joined, comments dropped. Instructions are
    taken in file order, as an engine does (the test's build follows ``copies`` then ``runs``,
    which is the Containerfile's order: checked here)."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    image = Image()
    order: list[str] = []
    for text in logical:
        word, _, rest = text.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        order.append(word)
        if word == "FROM":
            image.base = rest
        elif word == "COPY":
            parts = shlex.split(rest)
            assert len(parts) == 2 and not parts[0].startswith("--"), f"COPY {rest}: not supported here"
            image.copies.append((parts[0], parts[1]))
        elif word == "RUN":
            image.runs.append(rest)
        elif word == "ENV":
            parts = shlex.split(rest)
            if parts and "=" not in parts[0]:  # the legacy `ENV KEY value` form
                image.env[parts[0]] = rest.split(None, 1)[1]
            else:
                image.env.update(p.split("=", 1) for p in parts)  # type: ignore[arg-type]
        elif word == "USER":
            image.user = rest
        elif word == "WORKDIR":
            image.workdir = rest
        elif word in ("ENTRYPOINT", "CMD"):
            value = json.loads(rest)
            assert isinstance(value, list), f"{word}: use the exec (JSON) form"
            setattr(image, word.lower(), value)
        else:
            raise AssertionError(f"Containerfile: instruction {word} is not known to this test: "
                                 "teach it (tests/operator_mode/test_image_build.py)")
    assert order[0] == "FROM" and order.count("FROM") == 1, order
    assert order.index("COPY") < order.index("RUN"), order
    return image


# -- the build context (.containerignore) ---------------------------------------------------------

def _pattern(text: str) -> re.Pattern[str]:
    """A .containerignore pattern as a regular expression over a context-relative path."""
    text = os.path.normpath(text.strip()).lstrip("/")
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out + r"\Z")


def ignore_rules(context: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """``(exception, pattern)`` in file order; the last one that matches decides."""
    rules = []
    for line in (context / ".containerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern(line.lstrip("!"))))
    return rules


def ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the context-relative path ``rel`` is left out: a pattern matching the path or one
    of its parent folders excludes it, unless a later exception matches."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    out = False
    for exception, pattern in rules:
        if any(pattern.match(p) for p in prefixes):
            out = not exception
    return out


def copy_context(context: Path, dest: Path) -> list[str]:
    """Copy what the engine would send for ``COPY . dest``; the relative paths copied."""
    rules = ignore_rules(context)
    exceptions = any(e for e, _ in rules)
    copied: list[str] = []
    for folder, dirs, files in os.walk(context):
        here = Path(folder).relative_to(context)
        if not exceptions:  # nothing can bring an ignored folder's contents back: skip it whole
            dirs[:] = [d for d in dirs if not ignored((here / d).as_posix(), rules)]
        for name in files:
            rel = (here / name).as_posix()
            if ignored(rel, rules):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / rel, target, follow_symlinks=False)
            copied.append(rel)
    return copied


def test_containerignore_follows_the_engines_rules(tmp_path: Path) -> None:
    (tmp_path / ".containerignore").write_text("# comment\n.git\n**/__pycache__\n*.egg-info\n"
                                               "docs\n!docs/keep.md\n/dist\n")
    rules = ignore_rules(tmp_path)
    assert ignored(".git/config", rules) and ignored("__pycache__/x.pyc", rules)
    assert ignored("statemachine/sim/__pycache__/a.pyc", rules)
    assert ignored("smrun.egg-info/PKG-INFO", rules) and not ignored("a/smrun.egg-info", rules)
    assert ignored("docs/operator.md", rules) and not ignored("docs/keep.md", rules)
    assert ignored("dist/x.whl", rules) and not ignored("src/dist/x", rules)
    assert not ignored("statemachine/cli.py", rules) and not ignored(".gitignore", rules)


# -- the image root -------------------------------------------------------------------------------

def in_root(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def remap(root: Path, arg: str) -> str:
    """An argument naming an absolute path in the image, as a path under ``root`` (an extras
    suffix such as ``[operator]`` kept)."""
    if not arg.startswith("/"):
        return arg
    path, bracket, extras = arg.partition("[")
    return str(in_root(root, path)) + bracket + extras


def _wheel_of(spec: str, out: Path) -> str:
    """``/folder[extras]`` -> ``OUT/the.whl[extras]``, built offline from the folder."""
    folder, bracket, extras = spec.partition("[")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index",
                            "--no-build-isolation", "-w", str(out), folder],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheel, = out.glob("smrun-*.whl")
    return str(wheel) + bracket + extras


def run_step(root: Path, prefix: Path, argv: list[str]) -> None:
    """One command of a ``RUN`` line, done in the image root."""
    name, args = argv[0], argv[1:]
    if name == "pip" and args[:1] == ["install"]:
        install = [remap(root, a) for a in args[1:]]
        if ONLINE:
            cmd = [str(prefix / "bin" / "python"), "-m", "pip", "install", *install]
        else:
            # pip runs in the prefix, which has no build backend: the context folder is built
            # into a wheel by this interpreter (its hatchling), then that wheel installed.
            install = [_wheel_of(a, root.with_name(root.name + "-wheels"))
                       if Path(a.partition("[")[0]).is_dir() else a for a in install]
            cmd = [sys.executable, "-m", "pip", "--python", str(prefix / "bin" / "python"),
                   "install", "--no-deps", "--no-index", *install]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    elif name == "rm" and args[:1] == ["-rf"]:
        for path in args[1:]:
            shutil.rmtree(remap(root, path))
    elif name == "mkdir" and args[:1] == ["-p"]:
        for path in args[1:]:
            Path(remap(root, path)).mkdir(parents=True, exist_ok=True)
    elif name == "chown":
        user, group = (int(x) for x in args[0].split(":"))
        for path in args[1:]:
            if os.geteuid() == 0:
                os.chown(remap(root, path), user, group)
    else:
        raise AssertionError(f"RUN: command {argv} is not known to this test: teach it")


def run_line(root: Path, prefix: Path, line: str) -> None:
    step: list[str] = []
    for token in [*shlex.split(line), "&&"]:
        if token == "&&":
            run_step(root, prefix, step)
            step = []
        else:
            step.append(token)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in root.rglob("*")}


@dataclass
class Built:
    image: Image
    root: Path
    prefix: Path
    copied: list[str]
    user: tuple[int, int] | None

    def env(self, **extra: str) -> dict[str, str]:
        # HOME=/ (the image's root) is what an engine sets for a USER with no passwd entry.
        return {"PATH": f"{self.prefix / 'bin'}:/usr/bin:/bin", "HOME": str(self.root),
                "LANG": "C.UTF-8",
                **self.image.env, **extra}

    def popen_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"cwd": in_root(self.root, self.image.workdir)}
        if self.user is not None:
            args.update(user=self.user[0], group=self.user[1], extra_groups=[])
        return args

    def run(self, *argv: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.prefix / "bin" / self.image.entrypoint[0]), *self.image.entrypoint[1:],
                   *(remap(self.root, a) if a.startswith("/var/") else a for a in argv)]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=self.env(**extra_env), **self.popen_args())


def _as_user(image: Image) -> tuple[tuple[int, int] | None, str]:
    """``(USER's ids, interpreter)`` when this process may switch to the image's USER and that
    user can run an interpreter of the test's Python version (the test's own base interpreter,
    else a system one of the same version: the dependencies it shares are built for that
    version); else ``(None, the test's interpreter)``: the current user runs the commands."""
    if os.geteuid() != 0 or not image.user:
        return None, sys.executable
    user, _, group = image.user.partition(":")
    ids = (int(user), int(group or user))
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [getattr(sys, "_base_executable", sys.executable),
                  shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")]
    for interpreter in filter(None, candidates):
        try:
            probe = subprocess.run([interpreter, "-c", "pass"], capture_output=True,
                                   user=ids[0], group=ids[1], extra_groups=[], cwd="/", timeout=60)
        except PermissionError:  # e.g. under a home folder only root may enter
            continue
        if probe.returncode == 0:
            return ids, interpreter
    return None, sys.executable


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    image = parse_containerfile(ROOT / "Containerfile")
    root = Path(tempfile.mkdtemp(prefix="smrun-image-"))
    root.chmod(0o755)  # an image's root is readable by its USER
    try:
        prefix = in_root(root, "/usr/local")
        user, interpreter = _as_user(image)
        made = subprocess.run([interpreter, "-m", "venv", *([] if ONLINE else ["--without-pip"]),
                               str(prefix)], capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, made.stderr
        copied: list[str] = []
        for source, dest in image.copies:
            assert source == ".", f"COPY {source}: only the whole context is supported here"
            copied += copy_context(ROOT, in_root(root, dest))
        for line in image.runs:
            run_line(root, prefix, line)
        if not ONLINE:
            purelib = subprocess.run([str(prefix / "bin" / "python"), "-c",
                                      "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip()
            # Installed first, then the dependencies: pip never saw the test's own smrun.
            (Path(purelib) / "smrun-image-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        yield Built(image, root, prefix, copied, user)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(root.with_name(root.name + "-wheels"), ignore_errors=True)


def test_from_satisfies_requires_python() -> None:
    image = parse_containerfile(ROOT / "Containerfile")
    match = re.search(r"(?:^|/)python:(\d+\.\d+)", image.base)
    assert match, f"FROM {image.base}: not a python image"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert SpecifierSet(project["requires-python"]).contains(match.group(1)), \
        (image.base, project["requires-python"])


def test_the_context_is_the_package_and_its_data_only(built: Built) -> None:
    tops = {rel.split("/")[0] for rel in built.copied}
    assert {"pyproject.toml", "README.md", "statemachine", "itineraries", "templates", "schemas",
            "examples", "Containerfile"} <= tops
    assert not tops & {".git", ".venv", "tests", "bench", "docs", ".smrun", "dist", "build"}, tops
    assert not any("__pycache__" in rel or rel.endswith(".pyc") for rel in built.copied)
    assert not in_root(built.root, "/src").exists()  # RUN removed it


def test_the_install_is_pure_python_with_its_dependencies_met(built: Built) -> None:
    """The wheel built from the context is py3-none-any (so the base image's Python version does
    not matter to it), and every requirement of smrun[operator], markers evaluated for FROM's
    Python, is met in the prefix."""
    match = re.search(r"python:(\d+)\.(\d+)", built.image.base)
    assert match
    major, minor = match.groups()
    code = ("import importlib.metadata as m, json, statemachine; d = m.distribution('smrun'); "
            "print(json.dumps({'file': statemachine.__file__, 'wheel': d.read_text('WHEEL'), "
            "'requires': d.requires}))")
    proc = subprocess.run([str(built.prefix / "bin" / "python"), "-c", code], capture_output=True,
                          text=True, timeout=60, env=built.env(), **built.popen_args())
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert Path(info["file"]).is_relative_to(built.prefix)
    assert "Tag: py3-none-any" in info["wheel"] and "Root-Is-Purelib: true" in info["wheel"]
    marker_env = {"python_version": f"{major}.{minor}", "python_full_version": f"{major}.{minor}.0"}
    wanted = [Requirement(r) for r in info["requires"]]
    needed = [r for r in wanted
              if r.marker is None or any(r.marker.evaluate({**marker_env, "extra": e})
                                         for e in ("", "operator"))]
    assert {r.name for r in needed} >= {"kubernetes", "transitions", "jinja2", "kopf",
                                        "prometheus-client"}
    check = ("import importlib.metadata as m, json, sys;"
             "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    proc = subprocess.run([str(built.prefix / "bin" / "python"), "-c", check,
                           *(r.name for r in needed)], capture_output=True, text=True, timeout=60,
                          env=built.env(), **built.popen_args())
    assert proc.returncode == 0, proc.stderr
    versions = json.loads(proc.stdout)
    unmet = [f"{r} (have {versions[r.name]})" for r in needed
             if not r.specifier.contains(versions[r.name], prereleases=True)]
    assert unmet == []


def test_the_image_command_runs_as_its_user_and_writes_nothing(built: Built) -> None:
    """ENTRYPOINT + `operator --help` / `operator manifests`, and the image's own CMD with no
    cluster to reach, run from the prefix with the ENV set; nothing in the image root changes."""
    assert built.image.env.get("SMRUN_CACHE_DIR") == "off"
    if built.user is None:
        warnings.warn(f"the image's commands ran as uid {os.geteuid()}, not USER "
                      f"{built.image.user}: this process cannot switch to it")
    assert built.image.entrypoint == ["smrun"]
    before = snapshot(built.root)
    helped = built.run("operator", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--all-namespaces" in helped.stdout and "--health-port" in helped.stdout
    printed = built.run("operator", "manifests", "--image", "registry.example/smrun:1")
    assert printed.returncode == 0, printed.stderr
    docs = [d for d in yaml.safe_load_all(printed.stdout) if d]
    from statemachine.operator.manifests import manifests
    assert docs == manifests(image="registry.example/smrun:1")  # the checkout's own install
    # The image's default command: no in-cluster service account and no kubeconfig here, so it
    # must stop with one line, not a traceback.
    default = built.run(*built.image.cmd, timeout=60)
    assert default.returncode in (2, 3), default.stderr
    assert "Traceback" not in default.stderr and len(default.stderr.strip().splitlines()) == 1
    after = snapshot(built.root)
    workdir = str(in_root(built.root, built.image.workdir).relative_to(built.root))
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
                     and k != workdir and not k.startswith(workdir + "/"))
    assert changed == []


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_deployments_command_runs_the_operator_from_the_image(
        built: Built, make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    """The Deployment's container args, from the install the image prints: the operator starts
    from the prefix as the ServiceAccount with the derived ClusterRole, turns ready, and marks a
    Plan that fails validation Invalid (status written, Event posted)."""
    pytest.importorskip("kopf")
    from tests.conftest import run_kubectl

    sim = make_sim(kubeconfig_out=tmp_path / "kubeconfig")
    cache = tmp_path / "kubectl-cache"

    def kubectl(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_kubectl(sim, cache, *args, **kw)

    printed = built.run("operator", "manifests")
    assert printed.returncode == 0, printed.stderr
    docs = [d for d in yaml.safe_load_all(printed.stdout) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    install = [d for d in docs if d["kind"] not in ("Deployment", "PodDisruptionBudget")]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(install))
    kubectl("wait", "--for=condition=Established", "crd/plans.smrun.io", "--timeout=10s")
    namespace = deployment["metadata"]["namespace"]
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    token = kubectl("create", "token", sa, "-n", namespace).stdout.strip()
    # The pod's identity, as a kubeconfig the image's user can read (test_in_cluster.py covers
    # the in-cluster files themselves).
    secrets = in_root(built.root, "/var/run/smrun")
    secrets.mkdir(parents=True, exist_ok=True)
    assert sim.ca_path is not None
    shutil.copy(sim.ca_path, secrets / "ca.crt")
    (secrets / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "c", "cluster": {"server": sim.url("source"),
                                               "certificate-authority": str(secrets / "ca.crt")}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "c", "user": "sa",
                                                 "namespace": namespace}}]}))
    for path in (secrets, secrets / "ca.crt", secrets / "kubeconfig"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    # The pod the Deployment makes: a non-root numeric USER (runAsNonRoot can only check a
    # number), a read-only root, and the state directory (WORKDIR) its one writable mount.
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    uid = built.image.user.partition(":")[0]
    assert uid.isdigit() and int(uid) != 0, built.image.user
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    args = list(container["args"])
    assert mounts == {built.image.workdir} == {args[args.index("--state-dir") + 1]}
    before = snapshot(built.root)
    health = _free_port()
    args[args.index("--health-port") + 1] = str(health)
    args[args.index("--metrics-port") + 1] = str(_free_port())
    command = [str(built.prefix / "bin" / built.image.entrypoint[0]),
               *(remap(built.root, a) if a.startswith("/var/") else a for a in args)]
    log = open(tmp_path / "operator.log", "w", encoding="utf-8")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env=built.env(KUBECONFIG=str(secrets / "kubeconfig"),
                                          SMRUN_OPERATOR_ID="smrun-operator-abc12"),
                            **built.popen_args())
    try:
        deadline, ready = time.monotonic() + 60, 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as r:
                    ready = r.status
            except OSError:
                ready = 0
            if ready == 200:
                break
            time.sleep(0.3)
        assert ready == 200, (tmp_path / "operator.log").read_text()[-3000:]
        kubectl("create", "namespace", "migrations")
        plan = {"apiVersion": "smrun.io/v1alpha1", "kind": "Plan",
                "metadata": {"name": "bad", "namespace": "migrations"},
                "spec": {"type": "live", "vms": [{"name": "web-1", "namespace": "shop",
                                                  "hooks": [{"step": "PreHook", "hook": "nope"}]}]}}
        kubectl("apply", "-f", "-", input=yaml.safe_dump(plan))
        status: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and status.get("phase") != "Invalid":
            obj = json.loads(kubectl("get", "plan", "bad", "-n", "migrations", "-o", "json").stdout)
            status = obj.get("status") or {}
            time.sleep(0.3)
        assert status.get("phase") == "Invalid", (status, (tmp_path / "operator.log").read_text()[-3000:])
        assert status.get("operator") == "smrun-operator-abc12"
        assert "unknown hook 'nope'" in status.get("message", "")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    # Nothing written outside the state directory: the root file system can be read-only.
    after = snapshot(built.root)
    workdir = str(in_root(built.root, built.image.workdir).relative_to(built.root))
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
                     and k != workdir and not k.startswith(workdir + "/"))
    assert changed == []

