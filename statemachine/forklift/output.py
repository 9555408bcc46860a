"""Writing an imported plan and its side files.

The plan goes to the path given with ``-o``; hook playbooks and kubeconfigs go next to it (the
plan refers to them as ``./<file>``, relative to itself). Decisions:

- Every file is written to a temporary file in the same folder and renamed over the target, so a
  failure never leaves half a plan or half a kubeconfig.
- Kubeconfigs are created with mode 0600 from the start (never world-readable, not even for a
  moment) and keep it when they replace an older file.
- Nothing written here is printed; the caller prints only file names.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from statemachine.errors import DefinitionError, Problem
from statemachine.forklift.convert import Conversion

__all__ = ["write"]


def write(conversion: Conversion, output: Path, header: str) -> list[Path]:
    """Write the plan to ``output`` (with ``header`` as a comment) and its side files next to
    it; return every path written, the plan first."""
    folder = output.parent
    written = [output]
    body = yaml.safe_dump(conversion.plan, sort_keys=False, default_flow_style=False, width=100)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    files: list[tuple[Path, str, int]] = [(output, comment + body, 0o644)]
    files += [(folder / name, text, 0o644) for name, text in conversion.playbooks.items()]
    files += [(folder / name, config.text, 0o600) for name, config in conversion.kubeconfigs.items()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail(folder, exc) from None
    for path, text, mode in files[1:]:
        _write(path, text, mode)
        written.append(path)
    _write(output, files[0][1], files[0][2])  # last: the plan appears only once it is complete
    return written


def _write(path: Path, text: str, mode: int) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _fail(path, exc) from None
    try:
        # mkstemp creates the file with mode 0600; widen it (as the umask allows) only for files
        # that are not secret.
        os.fchmod(fd, mode & ~_umask() if mode != 0o600 else 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise _fail(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fail(path: Path, exc: OSError) -> DefinitionError:
    problem = Problem(str(path), "", f"cannot write: {exc.strerror or exc}")
    return DefinitionError(str(problem), [problem])


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current
