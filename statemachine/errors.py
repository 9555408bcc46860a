"""The one exception tree of smrun.

Every error smrun raises on purpose derives from :class:`SmrunError`. The command line catches only
this root (plus ``KeyboardInterrupt``) and maps classes to exit codes via ``exit_code``; anything
else that escapes is a bug in smrun and exits ``EXIT_INTERNAL`` (70)::

    SmrunError                      exit 1 unless a subclass says otherwise
    ├── UsageError                  exit 2: bad command line
    ├── DefinitionError             exit 2: a plan, itinerary, template or seed file is invalid
    │   ├── SchemaError             .problems: every (file, line, path, message) found
    │   ├── TemplateError           missing template, undefined variable, sandbox violation, bad YAML out
    │   │   └── RenderBudgetExceeded  a template or expression went over its render budget
    │   └── UnknownProvider         a plan names a provider no installed package registers
    ├── DataNotFound                smrun's own data folders (itineraries, templates, schemas) are missing
    ├── IllegalTransition           the engine tried a move its itinerary does not allow (a bug)
    ├── PreflightError              exit 3: checks against the clusters refused the plan (.problems)
    ├── ClusterError                a cluster request failed; .status, .reason (never the request body)
    │   ├── TransientClusterError   429, 5xx, connection errors: retried with backoff
    │   │   └── ClusterUnreachable  exit 3 when it persists before anything was applied
    │   └── PermanentClusterError   4xx (or a failed TLS verification) that retrying cannot fix
    │       ├── ClusterNotTrusted   exit 3: the server's TLS certificate does not verify
    │       ├── NotFound            404
    │       │   └── KindNotServed   discovery has no such apiVersion/kind (a typo, CDI not installed)
    │       ├── Conflict            409 (AlreadyExists or stale resourceVersion)
    │       ├── OwnershipConflict   a same-named object exists that this run did not create
    │       ├── Forbidden           401/403
    │       ├── Invalid             422
    │       └── Gone                410 (watch resourceVersion too old: re-list)
    ├── ReadinessFailed             a state's ``failed`` condition held (for ``failedFor``)
    ├── ReadinessTimeout            a wait did not hold within its timeout; names the false clause
    ├── Canceled                    the VM's migration was canceled
    ├── LockHeld                    exit 2: another smrun run holds this plan's lock
    └── StateDirError               exit 4: the state directory or journal cannot be used
        │                           (full, read-only, not a directory, unreadable)
        └── JournalCorrupt          a journal line is not JSON (and is not a torn last line)

Every error class smrun raises lives here (a test scans the package). Exceptions elsewhere never
reach smrun's callers: the simulated clusters' own (they answer HTTP errors), the warm delta
copier's (it runs alone in a Job's container, standard library only), private control-flow
signals, and the render budget's signal, a Jinja2 ``SecurityError`` so the sandbox stops at once
(it becomes :class:`RenderBudgetExceeded`).

``transient`` is a class attribute, so the decision to retry is made from the type, never from a
message string. Messages are short and never contain manifest bodies (a Secret could leak).
"""
from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class SmrunError(Exception):
    """Root of every error smrun raises on purpose."""

    exit_code: int = 1
    transient: bool = False


class UsageError(SmrunError):
    """The command line was used wrongly."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One finding about an input file: where it is and what is wrong."""

    file: str
    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.line and self.column:
            where += f":{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DefinitionError(SmrunError):
    """A plan, itinerary, template or seed file is invalid. Nothing was applied."""

    exit_code = 2

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[Problem, ...] = tuple(problems)

    def __str__(self) -> str:
        if self.problems:
            return "\n".join(str(p) for p in self.problems)
        return super().__str__()


class SchemaError(DefinitionError):
    """A document does not satisfy its JSON Schema or the semantic checks after it."""


class TemplateError(DefinitionError):
    """A template is missing, uses an undefined variable, breaks the sandbox, or renders bad YAML."""


class RenderBudgetExceeded(TemplateError):
    """A template or expression went over its render budget (time, output or value size; see
    ``statemachine/budget.py``). A defect of the itinerary whatever the clusters hold, so
    preflight does not fold it into its list of findings: it is exit 2, one line."""


class UnknownProvider(DefinitionError):
    """A plan names a provider that no installed package registers."""


class DataNotFound(SmrunError):
    """smrun's packaged data (itineraries, templates, schemas) cannot be found: a broken install."""


class IllegalTransition(SmrunError):
    """The engine asked its state machine for a move the itinerary's graph does not have.

    Always a bug in smrun (the runner chose a state the flow rules cannot reach), never bad input:
    the machine refuses it so that it cannot go unnoticed.
    """


class PreflightError(SmrunError):
    """Checks against the clusters refused the plan. Nothing was applied."""

    exit_code = 3

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems)

    def __str__(self) -> str:
        head = super().__str__()
        return "\n".join([head, *(f"  - {p}" for p in self.problems)]) if self.problems else head


class ClusterError(SmrunError):
    """A request to a cluster failed."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class TransientClusterError(ClusterError):
    """Worth retrying: throttling (429), server errors (5xx), dropped connections."""

    transient = True


class ClusterUnreachable(TransientClusterError):
    """The cluster could not be reached at all (no connection, no answer).

    ``cluster`` (smrun's name for it: source, target, a context), ``server`` (its URL) and
    ``cause`` (a few words: connection refused, host name not resolved, ...) are what the
    message says, kept apart for callers; any of them may be blank."""

    exit_code = 3

    def __init__(self, message: str, *, cluster: str = "", server: str = "",
                 cause: str = "") -> None:
        super().__init__(message)
        self.cluster = cluster
        self.server = server
        self.cause = cause


class PermanentClusterError(ClusterError):
    """A 4xx answer, or a failure to connect, that retrying cannot fix."""


class ClusterNotTrusted(PermanentClusterError):
    """The API server's TLS certificate failed verification: signed by a CA the kubeconfig does
    not name, not valid for the server's name, expired. A matter of configuration, so it is not
    retried (unlike a connection that fails, which may come back): exit 3, nothing applied.
    ``cluster``, ``server`` and ``cause`` as for :class:`ClusterUnreachable`."""

    exit_code = 3

    def __init__(self, message: str, *, cluster: str = "", server: str = "",
                 cause: str = "") -> None:
        super().__init__(message)
        self.cluster = cluster
        self.server = server
        self.cause = cause


class NotFound(PermanentClusterError):
    """404."""


class KindNotServed(NotFound):
    """The cluster's discovery does not list this apiVersion/kind: preflight reports it once,
    by itself (not as a read that failed or a permission that is missing)."""

    def __init__(self, message: str, *, cluster: str = "", api_version: str = "",
                 kind: str = "") -> None:
        super().__init__(message, status=404, reason="NotFound")
        self.cluster = cluster
        self.api_version = api_version
        self.kind = kind


class Conflict(PermanentClusterError):
    """409: the object already exists, or the write was based on a stale resourceVersion."""


class OwnershipConflict(PermanentClusterError):
    """An object with the name smrun wants exists and was not created by this plan: never overwritten."""


class Forbidden(PermanentClusterError):
    """401 or 403."""

    exit_code = 3


class Invalid(PermanentClusterError):
    """422: the server rejected the object."""


class Gone(PermanentClusterError):
    """410: a watch resourceVersion is too old; the caller must re-list."""


class ReadinessFailed(SmrunError):
    """A state's ``failed`` condition held."""


class ReadinessTimeout(SmrunError):
    """A wait did not hold within its timeout. The message names the false clause and what was seen."""


class Canceled(SmrunError):
    """The migration of a VM was canceled by the user."""


class LockHeld(SmrunError):
    """Another smrun process is running this plan."""

    exit_code = 2


EXIT_STATE_DIR = 4
EXIT_INTERNAL = 70  # EX_SOFTWARE of sysexits.h: a bug in smrun, never a verdict about the VMs


class StateDirError(SmrunError):
    """The local state directory or journal cannot be used: full, read-only, not a directory,
    unreadable or corrupt. The message names the path and the cause. Nothing more is applied
    once this is raised; the same command resumes when the cause is fixed."""

    exit_code = EXIT_STATE_DIR
    stops_run = True  # the engine's scheduler stops every VM where it is (see scheduler.fail)


def state_dir_error(path: Path, exc: OSError, doing: str) -> StateDirError:
    """One line naming ``path`` and the cause, for ``exc`` raised while ``doing``."""
    causes = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied", errno.ENOTDIR: "not a directory",
              errno.EISDIR: "is a directory", errno.EEXIST: "exists and is not a directory"}
    cause = causes.get(exc.errno or 0) or exc.strerror or str(exc)
    where = Path(exc.filename) if isinstance(exc.filename, str) else path
    return StateDirError(f"{where}: cannot {doing}: {cause} (state directory; exit 4: nothing "
                         "more was applied, run the same command again once this is fixed)")


class JournalCorrupt(StateDirError):
    """A journal line (other than a torn last line) is not a JSON entry."""
