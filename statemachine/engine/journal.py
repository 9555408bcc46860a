"""The durable record of one plan's run: an append-only JSON-lines journal, a lock, a cancel file.

Layout under the state directory (default ``.smrun/``)::

    <state_dir>/<plan>/journal.jsonl   one JSON object per line, fsync'ed before the action it announces
    <state_dir>/<plan>/lock            fcntl.flock'ed by the running ``smrun run`` (holder pid inside)
    <state_dir>/<plan>/cancel.json     cancel requests written by ``smrun cancel`` (read by the engine)

The plan's directory is created ``0700`` and every file in it ``0600``, whatever the umask (and
existing ones are narrowed when opened): the journal holds VM specs and the run's outputs.

Every entry has ``ts`` (RFC 3339 UTC) and ``type``; VM entries have ``vm`` (``namespace/name``, or
``""`` for the plan-level setup states). The entry types and their fields are documented in
docs/engine.md; :func:`replay` folds them into one :class:`VmRecord` per VM, which is all the
engine needs to resume. This module does not talk to clusters and does not decide what to do next.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from statemachine.errors import LockHeld, SmrunError, UsageError
from statemachine.k8s import ObjectRef

TERMINAL = ("Completed", "Failed", "Canceled")
SETUP_KEY = ""  # the "VM" name under which plan-level setup states are journaled


class JournalCorrupt(SmrunError):
    """A journal line is not JSON (other than a torn last line, which is ignored)."""


def private_dir(path: Path) -> None:
    """Create ``path`` (and a missing parent, the state directory) owner-only: mode 0700.

    ``mkdir``'s mode is filtered by the umask, so the mode is set explicitly afterwards; an
    existing plan directory is narrowed too. An existing parent is left as the user made it.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def private_open(path: Path, flags: int) -> int:
    """``os.open`` creating ``path`` as 0600 (umask-independent; an existing file is narrowed)."""
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _drop_torn_tail(fd: int) -> None:
    """Cut an unterminated last line (a write torn by a crash) before appending after it.

    Decision: cut rather than terminate it, because a terminated fragment would become a corrupt
    line in the middle of the journal, which :func:`read_entries` rightly refuses.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    data = os.pread(fd, size, 0)
    os.ftruncate(fd, data.rfind(b"\n") + 1)


_second: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """``2026-11-26T02:37:45.123Z``. Every journal entry and event is stamped, so the part up to
    the second is formatted once per second (datetime formatting was 1.5% of the engine's CPU)."""
    global _second
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


def ref_to_json(ref: ObjectRef) -> dict[str, str]:
    return {"apiVersion": ref.api_version, "kind": ref.kind, "namespace": ref.namespace, "name": ref.name}


def ref_from_json(data: Mapping[str, Any]) -> ObjectRef:
    return ObjectRef(str(data["apiVersion"]), str(data["kind"]), str(data.get("namespace", "")),
                     str(data["name"]))


@dataclass(frozen=True)
class CreatedObject:
    """An object a state created (or is about to create): deleted by ``delete: created`` and undo."""

    cluster: str
    ref: ObjectRef
    state: str
    confirmed: bool  # False: only the intent was journaled (the create may or may not have happened)


@dataclass
class VmRecord:
    """What the journal says about one VM (mutable while replaying, then handed to the engine)."""

    vm: str
    predicates: dict[str, bool] | None = None
    reads: dict[str, Any] | None = None      # reads as fetched at start (Secret data left out)
    state: str | None = None                 # the last state entered
    state_done: bool = False                 # whether ``state`` completed (or was skipped)
    last_entered: str | None = None          # the last state actually entered (not skipped)
    skipped: bool = False                    # ``state`` was skipped (its ``next`` does not apply)
    entered: list[str] = field(default_factory=list)     # states entered, in order, without repeats
    outputs: dict[str, Any] = field(default_factory=dict)
    created: list[CreatedObject] = field(default_factory=list)
    undoing: str | None = None               # "failed" or "canceled" once undo started
    undo_message: str = ""
    undone: list[str] = field(default_factory=list)      # states whose undo finished
    terminal: str | None = None              # Completed | Failed | Canceled
    message: str = ""
    visits: dict[str, int] = field(default_factory=dict)


def _apply_entry(rec: VmRecord, e: Mapping[str, Any]) -> None:
    kind = e["type"]
    if kind == "vm_started":
        fresh = VmRecord(rec.vm)
        fresh.predicates = dict(e.get("predicates") or {})
        fresh.reads = dict(e.get("reads") or {})
        rec.__dict__.update(fresh.__dict__)
    elif kind == "state_entered":
        rec.state, rec.state_done = e["state"], False
        rec.last_entered = e["state"]
        rec.visits[e["state"]] = rec.visits.get(e["state"], 0) + 1
        if e["state"] not in rec.entered:
            rec.entered.append(e["state"])
    elif kind in ("state_completed", "state_skipped"):
        rec.state, rec.state_done = e["state"], True
        rec.skipped = kind == "state_skipped"
    elif kind == "intent":
        rec.created.append(CreatedObject(e["cluster"], ref_from_json(e["ref"]), e["state"], False))
    elif kind == "created":
        ref = ref_from_json(e["ref"])
        rec.created = [c for c in rec.created if not (c.cluster == e["cluster"] and c.ref == ref)]
        if e.get("ours", True):
            rec.created.append(CreatedObject(e["cluster"], ref, e["state"], True))
    elif kind == "deleted":
        ref = ref_from_json(e["ref"])
        rec.created = [c for c in rec.created if not (c.cluster == e["cluster"] and c.ref == ref)]
    elif kind == "outputs":
        rec.outputs.update(e.get("values") or {})
    elif kind == "undo_started":
        rec.undoing, rec.undo_message = e["reason"], e.get("message", "")
    elif kind == "undo_state_done":
        rec.undone.append(e["state"])
    elif kind == "vm_terminal":
        rec.terminal, rec.message = e["phase"], e.get("message", "")
    elif kind == "vm_reset":
        rec.__dict__.update(VmRecord(rec.vm).__dict__)


@dataclass
class Replay:
    run_id: str | None
    vms: dict[str, VmRecord]


def read_entries(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the journal's entries. A torn last line (the process died mid-write) is skipped."""
    if not path.exists():
        return
    lines = path.read_bytes().split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # last (possibly unterminated) line: a torn write
                return
            raise JournalCorrupt(f"{path}:{i + 1}: not a JSON line") from None


def replay(entries: Iterable[Mapping[str, Any]]) -> Replay:
    """Fold journal entries into per-VM records."""
    out = Replay(None, {})
    for e in entries:
        if e.get("type") == "run_started" and out.run_id is None:
            out.run_id = e.get("run")
        if "vm" in e:
            rec = out.vms.setdefault(e["vm"], VmRecord(e["vm"]))
            _apply_entry(rec, e)
    return out


class Journal:
    """Appends entries durably. One per running plan; the engine thread is its only writer."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.dir = directory
        self.path = directory / "journal.jsonl"
        self.fsync = fsync
        self._fh: IO[bytes] | None = None
        self._lock_fh: IO[str] | None = None
        self._dirty = False
        self._intents = False  # an intent appended since the last sync (see sync_later)
        # One object each, so callers of sync_later can tell repeats apart.
        self._fsync_bound: Callable[[], None] = self._fsync_fd
        self._flush_bound: Callable[[], None] = self._flush_now

    @classmethod
    def for_plan(cls, state_dir: Path, plan_name: str, **kw: Any) -> Journal:
        return cls(Path(state_dir) / plan_name, **kw)

    # -- lock -----------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the plan's lock or raise :class:`LockHeld` naming the holder."""
        try:
            private_dir(self.dir)
            fd = private_open(self.dir / "lock", os.O_RDWR | os.O_APPEND)
        except OSError as exc:  # e.g. --state-dir names a file: bad input (exit 2), not a crash
            raise UsageError(f"{self.dir.parent}: cannot use it as the state directory: "
                             f"{exc.strerror or exc}") from None
        fh = os.fdopen(fd, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise LockHeld(f"plan is already running (lock {self.dir / 'lock'} held by pid {holder}); "
                           "wait for it to finish or use 'smrun cancel'") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    # -- entries --------------------------------------------------------------------------------
    def read(self) -> Replay:
        self.flush()
        return replay(read_entries(self.path))

    def reset(self) -> None:
        """Start a fresh journal (simulation plans: each run has its own clusters)."""
        if self.path.exists():
            self.path.unlink()
        cancel = self.dir / "cancel.json"
        if cancel.exists():
            cancel.unlink()

    def append(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Write an entry into the process's buffer; :meth:`flush` hands it to the kernel (then a
        kill -9 cannot lose it) and :meth:`sync` makes it durable against a machine crash.

        The engine flushes after its loop's batches (at most every 10 ms) and before every
        create, so an entry still in the buffer at a kill -9 records only decisions whose effects
        outside the process are safe to repeat (reads, patches, deletes): losing it is the same
        as being killed a moment earlier. The exception is ``created`` of an object this run
        made, the fact that a create succeeded: it is flushed at once, so a resumed run never
        mistakes an object it made for one it only intended (and never makes it twice). An
        ``ensure`` that found its object (``ours`` false) is only a note: it is looked up again.
        One flush per entry was 60 µs, a tenth of the engine's own CPU at 100 VMs.
        """
        entry: dict[str, Any] = {"ts": utc_now(), "type": type_, **fields}
        if self._fh is None:
            private_dir(self.dir)
            fd = private_open(self.path, os.O_RDWR | os.O_APPEND)
            _drop_torn_tail(fd)
            self._fh = os.fdopen(fd, "ab", buffering=1 << 16)
        self._fh.write(json.dumps(entry, separators=(",", ":"), default=str).encode() + b"\n")
        self._dirty = True
        if type_ == "intent":
            self._intents = True
        elif type_ == "created" and fields.get("ours", True):
            self._fh.flush()
        return entry

    def _flush_now(self) -> None:
        self._flush_from_thread()

    def flush(self) -> None:
        """Hand every appended entry to the kernel (survives a kill -9, not a power loss)."""
        if self._fh is not None:
            self._fh.flush()

    def sync(self) -> None:
        """fsync what was appended (group commit: one fsync covers every entry before it)."""
        if self._fh is not None:
            self._fh.flush()
            if self._dirty and self.fsync:
                os.fsync(self._fh.fileno())
        self._dirty = self._intents = False

    def sync_later(self) -> Callable[[], None]:
        """Before a create is sent: the function that makes the journal so far safe, to run on
        another thread (no I/O here: every syscall on the loop thread gives up the GIL, and
        getting it back from the I/O and watch threads cost ~0.2 ms each at 100 VMs).

        When an ``intent`` was appended since the last sync it flushes and fsyncs (the intent
        survives a machine crash); otherwise it only flushes (the entries survive a kill -9).
        Each is one function object per journal, so a caller can run repeats once. Only a
        create needs its announcement on disk first (after a machine crash it is how undo finds
        the object); patches, deletes and Events are safe to repeat or are recorded after the
        fact, so they do not cost an fsync."""
        if not self._intents or not self.fsync:
            return self._flush_bound
        # _dirty stays set: if close() comes before this fsync has run, close() syncs itself.
        self._intents = False
        return self._fsync_bound

    def _flush_from_thread(self) -> bool:
        fh = self._fh
        if fh is None:
            return False  # closed meanwhile: close() flushed and synced (see sync_later)
        try:
            fh.flush()  # BufferedWriter locks: safe beside the loop thread's appends
        except ValueError:  # closed between the check and the call
            return False
        return True

    def _fsync_fd(self) -> None:
        if not self._flush_from_thread():
            return
        fh = self._fh
        try:
            if fh is not None:
                os.fsync(fh.fileno())
        except (OSError, ValueError):  # closed between the flush and the fsync
            pass

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None
        self.unlock()


def new_run_id() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


# -- cancel requests ----------------------------------------------------------------------------
def request_cancel(directory: Path, vms: list[str] | None) -> None:
    """Record a cancel request (``vms`` None = every VM). Atomic replace so the reader never sees half."""
    private_dir(directory)
    path = directory / "cancel.json"
    current = read_cancel(directory)
    if vms is None or current is None:
        data: dict[str, Any] = {"all": True, "vms": []}
    else:
        data = {"all": False, "vms": sorted(current | set(vms))}
    tmp = directory / "cancel.json.tmp"
    with os.fdopen(private_open(tmp, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data))
    os.replace(tmp, path)


def read_cancel(directory: Path) -> set[str] | None:
    """The VMs asked to cancel; ``None`` means every VM (or no file: check ``exists`` first)."""
    path = directory / "cancel.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return set()
    if data.get("all"):
        return None
    return set(data.get("vms") or [])
