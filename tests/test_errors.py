"""The error tree (statemachine/errors.py): exit codes, retry classification, messages, the CLI mapping.

Exit codes (product.md §5): 1 a VM failed or was canceled, 2 invalid input or usage (nothing
applied), 3 preflight refused or a cluster unreachable (nothing applied), 4 the state directory
or journal cannot be used; 70 a bug in smrun (not an error class); 0 is success and is no error. ``transient`` decides retries from the type, never from a message. The ``kubernetes``
side (every HTTP status to its class, ``ClusterError`` not an ``ApiException``) is tested in
tests/k8s/test_k8s_errormap.py and not repeated here.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from statemachine import cli, errors
from statemachine.errors import (
    ClusterError,
    DefinitionError,
    PreflightError,
    Problem,
    SchemaError,
    SmrunError,
)

# class -> (exit code, transient). Every class in errors.py must be here (checked below).
EXPECTED: dict[type[SmrunError], tuple[int, bool]] = {
    errors.SmrunError: (1, False),
    errors.UsageError: (2, False),
    errors.DefinitionError: (2, False),
    errors.SchemaError: (2, False),
    errors.TemplateError: (2, False),
    errors.RenderBudgetExceeded: (2, False),
    errors.PreflightError: (3, False),
    errors.ClusterError: (1, False),
    errors.TransientClusterError: (1, True),
    errors.ClusterUnreachable: (3, True),
    errors.ClusterNotTrusted: (3, False),
    errors.PermanentClusterError: (1, False),
    errors.NotFound: (1, False),
    errors.KindNotServed: (1, False),
    errors.Conflict: (1, False),
    errors.OwnershipConflict: (1, False),
    errors.Forbidden: (3, False),
    errors.Invalid: (1, False),
    errors.Gone: (1, False),
    errors.ReadinessFailed: (1, False),
    errors.ReadinessTimeout: (1, False),
    errors.Canceled: (1, False),
    errors.LockHeld: (2, False),
    errors.StateDirError: (4, False),
    errors.UnknownProvider: (2, False),
    errors.DataNotFound: (1, False),
    errors.JournalCorrupt: (4, False),
    errors.IllegalTransition: (1, False),
}


def _error_classes() -> set[type[BaseException]]:
    return {obj for obj in vars(errors).values()
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__}


def _make(cls: type[SmrunError], message: str = "something went wrong") -> SmrunError:
    return cls(message)


def test_the_table_covers_every_error_class() -> None:
    assert _error_classes() == set(EXPECTED)


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_exit_code_and_transient_flag_per_class(cls: type[SmrunError]) -> None:
    code, transient = EXPECTED[cls]
    error = _make(cls)
    assert issubclass(cls, SmrunError)
    assert (error.exit_code, error.transient) == (code, transient)
    assert (cls.exit_code, cls.transient) == (code, transient)  # class attributes, not per instance


def test_every_exit_code_is_one_the_cli_documents() -> None:
    assert {cls.exit_code for cls in EXPECTED} == {1, 2, 3, 4}


def test_only_transient_cluster_errors_are_retried() -> None:
    transient = {cls for cls in EXPECTED if cls.transient}
    assert transient == {cls for cls in EXPECTED if issubclass(cls, errors.TransientClusterError)}
    assert not any(issubclass(cls, errors.PermanentClusterError) for cls in transient)


def _drawn_tree() -> dict[str, str | None]:
    """Class -> parent as drawn in the errors.py docstring (box-drawing indentation)."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(\s*(?:[│├└]\s*)*[├└]── |\s{4})([A-Z]\w+)\s", line)
        if not match:
            continue
        prefix, name = match.groups()
        if "──" not in prefix:
            if name != "SmrunError":
                continue
            depth = 0
        else:
            depth = len(prefix) // 4
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def test_the_tree_drawn_in_the_docstring_is_the_class_hierarchy() -> None:
    drawn = _drawn_tree()
    assert set(drawn) == {cls.__name__ for cls in EXPECTED}
    for cls in EXPECTED:
        base = cls.__bases__[0]
        assert drawn[cls.__name__] == (None if cls is SmrunError else base.__name__), cls.__name__


def test_cluster_errors_carry_status_reason_and_retry_after_keyword_only() -> None:
    error = errors.TransientClusterError("source: too many requests", status=429, reason="TooManyRequests",
                                         retry_after=2.5)
    assert (error.status, error.reason, error.retry_after) == (429, "TooManyRequests", 2.5)
    assert str(error) == "source: too many requests"
    plain = ClusterError("boom")
    assert (plain.status, plain.reason, plain.retry_after) == (None, "", None)
    with pytest.raises(TypeError):
        ClusterError("boom", 500)  # type: ignore[call-arg]


@pytest.mark.parametrize(("problem", "text"), [
    (Problem("plan.yaml", "spec.vms[0].name", "required", line=7), "plan.yaml:7: spec.vms[0].name: required"),
    (Problem("plan.yaml", "spec.vms[0].name", "required"), "plan.yaml: spec.vms[0].name: required"),
    (Problem("seed.yaml", "", "not a YAML mapping", line=1), "seed.yaml:1: not a YAML mapping"),
    (Problem("seed.yaml", "", "empty file"), "seed.yaml: empty file"),
    (Problem("plan.yaml", "spec", "x", line=0), "plan.yaml: spec: x"),  # no line 0 in a file
], ids=["file-line-path", "file-path", "file-line", "file", "line-zero"])
def test_a_problem_is_one_line_naming_file_line_and_field(problem: Problem, text: str) -> None:
    assert str(problem) == text
    assert "\n" not in str(problem)


def test_a_problem_is_frozen_and_comparable() -> None:
    problem = Problem("plan.yaml", "spec.type", "bad", line=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.line = 4  # type: ignore[misc]
    assert problem == Problem("plan.yaml", "spec.type", "bad", 3)
    assert len({problem, Problem("plan.yaml", "spec.type", "bad", 3)}) == 1


def test_a_definition_error_prints_every_problem_one_per_line() -> None:
    found = [Problem("plan.yaml", "spec.vms", "[] should be non-empty", 6),
             Problem("plan.yaml", "spec.simulaton", "unknown field 'simulaton'", 5)]
    error = SchemaError("first problem", found)
    assert str(error).splitlines() == ["plan.yaml:6: spec.vms: [] should be non-empty",
                                       "plan.yaml:5: spec.simulaton: unknown field 'simulaton'"]
    assert error.problems == tuple(found)
    assert isinstance(error.problems, tuple)  # a caller's list cannot change it afterwards


def test_a_definition_error_without_problems_is_its_message() -> None:
    error = DefinitionError("plan.yaml: spec.simulation: required to read objects offline")
    assert str(error) == "plan.yaml: spec.simulation: required to read objects offline"
    assert error.problems == ()


def test_a_preflight_error_lists_its_problems_under_the_headline() -> None:
    error = PreflightError("preflight refused the plan; nothing was applied",
                           ["target: storage class fast-rwx not found", "source: VM shop/web-9 not found"])
    assert str(error).splitlines() == ["preflight refused the plan; nothing was applied",
                                       "  - target: storage class fast-rwx not found",
                                       "  - source: VM shop/web-9 not found"]
    assert str(PreflightError("refused")) == "refused"


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_the_cli_exits_with_the_class_code_and_prints_no_traceback(
        cls: type[SmrunError], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def failing(_args: Any) -> int:
        raise _make(cls, "plan.yaml: spec.type: bad")

    monkeypatch.setattr(cli, "_cmd_itineraries", failing)
    assert cli.main(["itineraries"]) == EXPECTED[cls][0]
    captured = capsys.readouterr()
    assert "plan.yaml: spec.type: bad" in captured.err
    assert "Traceback" not in captured.err


def test_every_error_class_of_the_package_lives_in_errors_py() -> None:
    """Classes deriving from an exception are defined in errors.py, except (as its docstring says)
    in the simulator, whose errors are HTTP answers, in the standalone copier, private control-flow
    signals (a leading underscore), and the render budget's signal inside Jinja2's sandbox."""
    import ast

    package = Path(errors.__file__).parent
    allowed = {("budget.py", "BudgetExceeded")}  # a jinja2 SecurityError, so the sandbox stops
    found = set()
    for path in package.rglob("*.py"):
        rel = str(path.relative_to(package))
        if rel == "errors.py" or rel.startswith(("sim/", "copier/")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, (ast.Name, ast.Attribute)) and
                    (getattr(b, "id", None) or getattr(b, "attr", "")).endswith(("Error", "Exception"))
                    for b in node.bases):
                if not node.name.startswith("_"):
                    found.add((rel, node.name))
    assert found <= allowed, sorted(found - allowed)
