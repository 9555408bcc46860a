"""The durable record of one plan's run: an append-only JSON-lines journal, a lock, a cancel file.

:class:`Journal` is what the engine writes through; where the lines go is its backend
(:mod:`statemachine.engine.journalbackend`): the file below (:class:`FileBackend`, ``smrun run``)
or ConfigMaps in the cluster (:mod:`statemachine.clusterjournal`, the operator). The file layout
under the state directory (default ``.smrun/``)::

    <state_dir>/<plan>/journal.jsonl   one JSON object per line, fsync'ed before the action it announces
    <state_dir>/<plan>/lock            fcntl.flock'ed by the running ``smrun run`` (holder pid inside)
    <state_dir>/<plan>/cancel.json     cancel requests written by ``smrun cancel`` (read by the engine)

The plan's directory is created ``0700`` and every file in it ``0600``, whatever the umask (and
existing ones are narrowed when opened): the journal holds VM specs and the run's outputs.

Every entry has ``ts`` (RFC 3339 UTC) and ``type``; VM entries have ``vm`` (``namespace/name``, or
``""`` for the plan-level setup states). The entry types and their fields are documented in
docs/engine.md; :func:`replay` folds them into one :class:`VmRecord` per VM, which is all the
engine needs to resume. This module does not talk to clusters and does not decide what to do next.

A state directory or journal that cannot be used (not a directory, read-only, full, a journal path
that is a directory, an unreadable or corrupt journal) raises
:class:`~statemachine.errors.StateDirError` (exit 4) with one line naming the path and the cause.
:meth:`Journal.probe` finds the common cases before anything is applied. A write that fails
mid-run (``ENOSPC``) marks the journal failed for good: nothing more is written (the in-process
buffer is dropped, as a kill -9 would), every later append raises, and a create whose intent is
not on disk is never sent (``groupcommit``); the same command resumes once there is room.
Tests make the journal's writes fail with ENOSPC after N bytes by setting ``_test_budget`` (the
engine reads no environment).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statemachine.context import Values  # a type only: locking a journal loads no templates
from statemachine.engine.journalbackend import JournalBackend
from statemachine.errors import JournalCorrupt, LockHeld, StateDirError, state_dir_error
from statemachine.k8s import ObjectRef

#: One journal line: ``ts``, ``type``, ``vm`` and the entry's own JSON fields.
Entry = dict[str, Any]
SETUP_KEY = ""  # the "VM" name under which plan-level setup states are journaled


# One journal line at most (a VM's reads are the largest entries: a few KB).
MAX_LINE_BYTES = 16 * 1024 * 1024
PROBE_BYTES = 64 * 1024  # what Journal.probe writes (and removes) to see that there is room


# Tests only: bytes the journal may still write before its writes fail with ENOSPC (a disk that
# fills up); -1 means no limit. Tests set it in-process (monkeypatch).
_test_budget: list[int] = [-1]


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (or an OSError, e.g. ENOSPC)."""
    budget = _test_budget
    view = memoryview(data)
    while view:
        if budget[0] >= 0 and len(view) > budget[0]:  # the test hook: a disk that fills up
            if budget[0]:
                os.write(fd, view[:budget[0]])
            budget[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, view)
        if budget[0] >= 0:
            budget[0] -= n
        view = view[n:]


class _Writer:
    """The journal's in-process buffer over its file descriptor.

    Decision: our own buffer rather than ``io.BufferedWriter``, because after a failed write
    (``ENOSPC``) the unwritten rest must be dropped, not written later by a close or by the
    garbage collector (it would land after entries it must not follow, or print "Exception
    ignored" at exit). A lock lets the I/O pool flush beside the loop thread's appends."""

    def __init__(self, fd: int, size: int = 1 << 16) -> None:
        self.fd = fd
        self.size = size
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.closed = False
        # The first failed write, kept under the lock: a flush racing with the failing one must
        # not find the buffer empty and report success (a create would then go out without
        # its intent on disk).
        self.error: OSError | None = None

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.closed:
                raise ValueError("journal closed")
            if self.error is not None:
                raise self.error
            self.buf += data
            if len(self.buf) >= self.size:
                self._flush()

    def flush(self) -> None:
        with self.lock:
            if self.closed:
                raise ValueError("journal closed")
            self._flush()

    def _flush(self) -> None:
        if self.error is not None:
            raise self.error
        if self.buf:
            data = bytes(self.buf)
            self.buf.clear()  # written or, on failure, dropped: never written twice
            try:
                _write_all(self.fd, data)
            except OSError as exc:
                self.error = exc
                raise

    def fileno(self) -> int:
        return self.fd

    def close(self, *, drop: bool = False) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                if not drop:
                    self._flush()
            finally:
                os.close(self.fd)


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


def ref_from_json(data: Mapping[str, object]) -> ObjectRef:
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
    reads: Values | None = None      # reads as fetched at start (Secret data left out)
    state: str | None = None                 # the last state entered
    state_done: bool = False                 # whether ``state`` completed (or was skipped)
    last_entered: str | None = None          # the last state actually entered (not skipped)
    skipped: bool = False                    # ``state`` was skipped (its ``next`` does not apply)
    entered: list[str] = field(default_factory=list)     # states entered, in order, without repeats
    outputs: Values = field(default_factory=dict)
    created: list[CreatedObject] = field(default_factory=list)
    undoing: str | None = None               # "failed" or "canceled" once undo started
    undo_message: str = ""
    undone: list[str] = field(default_factory=list)      # states whose undo finished
    # Set when a cancel's undo found that the hand-off had happened meanwhile (``undo_stopped``):
    # undo is over for good and the migration is finished instead; the note its end reports.
    finishing: str | None = None
    terminal: str | None = None              # Completed | Failed | Canceled
    message: str = ""
    visits: dict[str, int] = field(default_factory=dict)


def apply_entry(rec: VmRecord, e: Entry) -> None:
    """Fold one journal entry into ``rec`` (replay, and the engine as it writes)."""
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
    elif kind == "undo_stopped":
        rec.undoing, rec.finishing = None, str(e.get("message", ""))
    elif kind == "vm_terminal":
        rec.terminal, rec.message = e["phase"], e.get("message", "")
    elif kind == "vm_reset":
        rec.__dict__.update(VmRecord(rec.vm).__dict__)


@dataclass
class Replay:
    run_id: str | None
    vms: dict[str, VmRecord]
    clusters: Any = None  # the first run_started's ``clusters`` (identities; None: not recorded)
    finished_at: str | None = None  # ``ts`` of the last run_finished


def read_entries(path: Path) -> Iterator[Entry]:
    """Yield the journal's entries. A torn last line (the process died mid-write) is skipped.

    Read line by line (never the whole file at once), each line at most ``MAX_LINE_BYTES``; a
    line that is not a JSON object with a ``type`` is :class:`JournalCorrupt` (exit 4) naming
    ``file:line``; a journal that cannot be read is :class:`StateDirError`."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise state_dir_error(path, exc, "read the journal") from None
    with fh:
        number = 0
        while True:
            try:
                line = fh.readline(MAX_LINE_BYTES + 1)
            except OSError as exc:
                raise state_dir_error(path, exc, "read the journal") from None
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_BYTES:
                raise JournalCorrupt(f"{path}:{number}: a journal line longer than "
                                     f"{MAX_LINE_BYTES} bytes (not written by smrun)")
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                if not line.endswith(b"\n") or not fh.peek(1):  # last line: a torn write
                    return
                raise JournalCorrupt(f"{path}:{number}: not a JSON line") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
                raise JournalCorrupt(f"{path}:{number}: not a journal entry (no type)")
            yield entry


def replay(entries: Iterable[Entry]) -> Replay:
    """Fold journal entries into per-VM records."""
    out = Replay(None, {})
    for number, e in enumerate(entries, 1):
        if e.get("type") == "run_started" and out.run_id is None:
            out.run_id, out.clusters = e.get("run"), e.get("clusters")
        elif e.get("type") == "run_finished":
            out.finished_at = e.get("ts")
        if "vm" in e:
            try:
                rec = out.vms.setdefault(e["vm"], VmRecord(e["vm"]))
                apply_entry(rec, e)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise JournalCorrupt(f"journal entry {number} ({e.get('type')!r}) is malformed: "
                                     f"{type(exc).__name__}: {exc}") from None
    return out


class FileBackend:
    """The journal as a file: ``<directory>/journal.jsonl``, ``lock`` (flock) beside it.

    The bytes on disk are exactly what :class:`Journal` hands to :meth:`write`, one JSON line per
    entry, so journals written before the backends existed read and resume unchanged."""

    #: A flush reaches the kernel only; :meth:`sync` (fsync) is what survives a machine crash.
    durable_flush = False

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.dir = directory
        self.path = directory / "journal.jsonl"
        self.where = self.path
        self.fsync = fsync
        self._fh: _Writer | None = None
        self._lock_fh: IO[str] | None = None

    # -- lock -----------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the plan's lock or raise :class:`LockHeld` naming the holder."""
        try:
            private_dir(self.dir)
            fd = private_open(self.dir / "lock", os.O_RDWR | os.O_APPEND)
        except OSError as exc:  # e.g. --state-dir names a file, or a read-only file system
            raise state_dir_error(self.dir, exc, "use it as the state directory") from None
        fh = os.fdopen(fd, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise LockHeld(f"plan is already running (lock {self.dir / 'lock'} held by pid {holder}); "
                           "wait for it to finish or use 'smrun cancel'") from None
        self._lock_fh = fh
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        except OSError as exc:
            self.unlock()
            raise state_dir_error(self.dir / "lock", exc, "write the lock file") from None

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fh, self._lock_fh = self._lock_fh, None
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
                fh.close()
            except OSError:
                pass  # closing the descriptor releases the lock whatever happened

    def probe(self) -> None:
        """The journal can be opened for appending and the file system takes ``PROBE_BYTES``
        more (written, fsynced and removed again)."""
        try:
            private_dir(self.dir)
        except OSError as exc:
            raise state_dir_error(self.dir, exc, "use it as the state directory") from None
        self._open()
        probe = self.dir / ".probe"
        try:
            fd = private_open(probe, os.O_WRONLY | os.O_TRUNC)
            try:
                _write_all(fd, b"\0" * PROBE_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink()
        except OSError as exc:
            with_name = exc if exc.filename else OSError(exc.errno, exc.strerror, str(self.dir))
            raise state_dir_error(self.dir, with_name, "write in the state directory") from None

    # -- entries --------------------------------------------------------------------------------
    def entries(self) -> Iterator[Entry]:
        return read_entries(self.path)

    def reset(self) -> None:
        try:
            if self.path.exists() or self.path.is_symlink():
                self.path.unlink()
        except OSError as exc:
            raise state_dir_error(self.path, exc, "start a fresh journal") from None

    def _open(self) -> _Writer:
        if self._fh is None:
            try:
                private_dir(self.dir)
                fd = private_open(self.path, os.O_RDWR | os.O_APPEND)
            except OSError as exc:
                raise state_dir_error(self.path, exc, "open the journal") from None
            try:
                _drop_torn_tail(fd)
            except OSError as exc:
                os.close(fd)
                raise state_dir_error(self.path, exc, "open the journal") from None
            self._fh = _Writer(fd)
        return self._fh

    def _error(self, exc: OSError) -> StateDirError:
        return state_dir_error(self.path, exc, "write the journal")

    def write(self, data: bytes, *, flush: bool = False) -> None:
        """Into the process's buffer (``flush``: and on to the kernel at once)."""
        fh = self._open()
        try:
            fh.write(data)
            if flush:
                fh.flush()
        except OSError as exc:
            raise self._error(exc) from None

    def flush(self, *, wait: bool = True) -> bool:
        """To the kernel (a write(2), whatever ``wait``); False when the journal was closed
        meanwhile (close() synced)."""
        fh = self._fh
        if fh is None:
            return False
        try:
            fh.flush()  # _Writer locks: safe beside the loop thread's appends
        except ValueError:  # closed between the check and the call
            return False
        except OSError as exc:
            raise self._error(exc) from None
        return True

    def sync(self) -> None:
        """Flush and fsync (a no-op once closed: close() synced)."""
        if not self.flush() or not self.fsync:
            return
        fh = self._fh
        try:
            if fh is not None and not fh.closed:
                os.fsync(fh.fileno())
        except OSError as exc:
            if fh is not None and fh.closed:
                return  # closed between the flush and the fsync: close() synced
            raise self._error(exc) from None

    def fence(self, error: StateDirError) -> None:
        """Nothing to do: the Journal writes nothing more, and the flock is the only lock."""

    def close(self, *, drop: bool) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close(drop=drop)


class Journal:
    """Appends entries durably. One per running plan; the engine thread is its only writer.

    Where the entries go is its ``backend`` (:class:`~statemachine.engine.journalbackend.
    JournalBackend`): by default a :class:`FileBackend` in ``directory``; the operator keeps
    them in the cluster (:mod:`statemachine.clusterjournal`). ``directory`` is where the
    run's local files are (``smrun cancel``'s request, ``smrun cutover``'s override, caches)."""

    def __init__(self, directory: Path, *, fsync: bool = True,
                 backend: JournalBackend | None = None) -> None:
        self.dir = directory
        self.backend: JournalBackend = backend if backend is not None else \
            FileBackend(directory, fsync=fsync)
        self.path = self.backend.where
        self.fsync = fsync
        self.failed: StateDirError | None = None  # set by the first failed write: no more writes
        self.on_failure: Callable[[StateDirError], None] | None = None  # told once, any thread
        self._fail_lock = threading.Lock()
        self._dirty = False
        self._intents = False  # an intent appended since the last sync (see sync_later)
        # `created` entries of objects this run made: how many were appended (loop thread) and
        # how many a finished flush is known to cover (any thread; see before_request).
        self._created = 0
        self._created_flushed = 0
        self._created_lock = threading.Lock()
        # Entries appended (loop thread) and not yet encoded; see _encode.
        self._pending: deque[Entry] = deque()
        self._encode_lock = threading.Lock()
        # One object each, so callers of sync_later can tell repeats apart.
        self._fsync_bound: Callable[[], None] = self._fsync_fd
        self._flush_bound: Callable[[], None] = self._flush_now

    @classmethod
    def for_plan(cls, state_dir: Path, plan_name: str, *, fsync: bool = True) -> Journal:
        return cls(Path(state_dir) / plan_name, fsync=fsync)

    # -- lock -----------------------------------------------------------------------------------
    def lock(self) -> None:
        """Become the journal's only writer, or raise :class:`LockHeld` naming the holder."""
        self.backend.lock()

    def probe(self) -> None:
        """Before the first write request: find a journal that cannot be written (full,
        read-only, misnamed) before anything is applied."""
        self.backend.probe()

    def unlock(self) -> None:
        self.backend.unlock()

    # -- entries --------------------------------------------------------------------------------
    def read(self) -> Replay:
        self.flush()
        try:
            return replay(self.backend.entries())
        except JournalCorrupt as exc:
            if str(self.path) in str(exc):
                raise
            raise JournalCorrupt(f"{self.path}: {exc}") from None

    def reset(self) -> None:
        """Start a fresh journal (simulation plans: each run has its own clusters)."""
        self.backend.reset()
        cancel = self.dir / "cancel.json"
        try:
            if cancel.exists():
                cancel.unlink()
        except OSError as exc:
            raise state_dir_error(cancel, exc, "start a fresh journal") from None

    def _fail(self, error: StateDirError) -> StateDirError:
        """Mark the journal failed for good (first failure wins) and tell ``on_failure``."""
        with self._fail_lock:
            first = self.failed is None
            if first:
                self.failed = error
        assert self.failed is not None
        if first and self.on_failure is not None:
            self.on_failure(self.failed)
        return self.failed

    def fence(self, error: StateDirError) -> None:
        """From any thread: write nothing more, as if a write had failed with ``error`` (the
        operator, when it can no longer prove it holds the Plan's Lease). The engine stops where
        it is; a create not yet sent is never sent."""
        self.backend.fence(error)
        self._fail(error)

    def append(self, type_: str, **fields: object) -> Entry:
        """Write an entry into the process's buffer; :meth:`flush` hands it to the kernel (then a
        kill -9 cannot lose it) and :meth:`sync` makes it durable against a machine crash. No
        I/O here: this runs on the engine's loop thread, where every syscall gives the GIL away.

        The engine flushes after its loop's batches (at most every 10 ms, from a thread of its
        own) and before every create, so an entry still in the buffer at a kill -9 records only
        decisions whose effects outside the process are safe to repeat (reads, patches, deletes):
        losing it is the same as being killed a moment earlier. The exception is ``created`` of
        an object this run made, the fact that a create succeeded: no request leaves the process
        before it is flushed (:meth:`before_request`; a create's own fsync covers it too), so a
        resumed run never mistakes an object it made for one it only intended (and never makes
        it twice). An ``ensure`` that found its object (``ours`` false) is only a note: it is
        looked up again. One flush per entry was 60 µs, a tenth of the engine's own CPU at
        100 VMs; a flush on the loop thread 0.3 ms (issue 17). The entry is turned into JSON by
        the flush too (up to ~0.1 ms for a VM's reads), not here: the engine never changes an
        entry, or anything in it, after appending it.
        """
        if self.failed is not None:
            raise self.failed
        entry: Entry = {"ts": utc_now(), "type": type_, **fields}
        self._pending.append(entry)  # encoded by the next flush, on whichever thread makes it
        self._dirty = True
        if type_ == "intent":
            self._intents = True
        elif type_ == "created" and fields.get("ours", True):
            self._created += 1
        return entry

    def _flush_now(self) -> None:
        self._flush_from_thread()

    def _encode(self) -> None:
        """Hand the entries appended so far to the backend as JSON lines, in order (any thread;
        raises the backend's StateDirError). The loop only appends to the deque; the lock keeps
        two flushing threads from writing their batches out of order."""
        pending = self._pending
        if not pending:
            return
        write = self.backend.write
        with self._encode_lock:
            try:
                while True:  # one write per line: a backend may store each line as a unit
                    write(json.dumps(pending.popleft(), separators=(",", ":"), default=str)
                          .encode() + b"\n")
            except IndexError:
                pass

    def flush(self, *, wait: bool = True) -> None:
        """Hand every appended entry to the kernel (survives a kill -9, not a power loss).

        ``wait=False`` (the engine's flush after a batch): a backend may send it from a thread
        of its own and report a failure at the next call; no caller then relies on it."""
        if self.failed is not None:
            raise self.failed
        created = self._created  # every one of these is in the buffer the flush writes out
        try:
            self._encode()
            self.backend.flush(wait=wait)
        except StateDirError as exc:
            raise self._fail(exc) from None
        if wait or not self.backend.durable_flush:
            # A file's flush is a write(2) whatever ``wait`` says; the cluster's wait=False
            # flush is sent later, by the backend's thread, so it covers nothing yet.
            self._covered(created)

    def _covered(self, created: int) -> None:
        with self._created_lock:
            self._created_flushed = max(self._created_flushed, created)

    def before_request(self, work: Callable[[], None]) -> Callable[[], None]:
        """``work`` (a request, to run on the I/O pool), made to flush the journal first when a
        ``created`` entry appended before it may not have reached the kernel yet: no request
        leaves the process before the fact that an earlier create succeeded is on record, so
        whatever follows from that request, a resumed run never mistakes the object for one it
        only intended. No I/O here (the loop thread); the flush runs on the pool thread, just
        before the request, and costs nothing when a batch's flush got there first."""
        if self._created_flushed >= self._created:
            return work
        flush = self.flush

        def flushed_first() -> None:
            flush()
            work()
        return flushed_first

    def sync(self) -> None:
        """fsync what was appended (group commit: one fsync covers every entry before it)."""
        if self.failed is not None:
            raise self.failed
        try:
            self._encode()
            if self._dirty and self.fsync:
                self.backend.sync()
            else:
                self.backend.flush()
        except StateDirError as exc:
            raise self._fail(exc) from None
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
        fact, so they do not cost an fsync. A backend whose flush is already durable (the
        cluster's: the API server acknowledged it) only ever flushes."""
        if not self._intents or not self.fsync or self.backend.durable_flush:
            return self._flush_bound
        # _dirty stays set: if close() comes before this fsync has run, close() syncs itself.
        self._intents = False
        return self._fsync_bound

    def _flush_from_thread(self) -> bool:
        """On the I/O pool: flush. Raises the journal's failure (then the create waiting on it
        is not sent); False when the journal was closed meanwhile (close() synced)."""
        if self.failed is not None:
            raise self.failed
        created = self._created
        try:
            self._encode()
            flushed = self.backend.flush()
        except StateDirError as exc:
            raise self._fail(exc) from None
        self._covered(created)
        return flushed

    def _fsync_fd(self) -> None:
        if self.failed is not None:
            raise self.failed
        created = self._created
        try:
            self._encode()
            self.backend.sync()
        except StateDirError as exc:
            raise self._fail(exc) from None
        self._covered(created)

    def close(self) -> None:
        try:
            if self.failed is None:
                self.sync()
        except StateDirError:
            pass  # recorded in self.failed; the caller reports it
        finally:
            self.backend.close(drop=self.failed is not None)
        self.unlock()


def new_run_id() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


# -- cancel requests ----------------------------------------------------------------------------
def request_cancel(directory: Path, vms: list[str] | None) -> None:
    """Record a cancel request (``vms`` None = every VM). Atomic replace so the reader never sees half."""
    path = directory / "cancel.json"
    current = read_cancel(directory)
    if vms is None or current is None:
        data: dict[str, object] = {"all": True, "vms": []}
    else:
        data = {"all": False, "vms": sorted(current | set(vms))}
    tmp = directory / "cancel.json.tmp"
    try:
        private_dir(directory)
        with os.fdopen(private_open(tmp, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data))
        os.replace(tmp, path)
    except OSError as exc:
        raise state_dir_error(path, exc, "write the cancel request") from None


def read_cancel(directory: Path) -> set[str] | None:
    """The VMs asked to cancel; ``None`` means every VM (or no file: check ``exists`` first)."""
    path = directory / "cancel.json"
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(1024 * 1024))
    except (OSError, ValueError, RecursionError):
        # Missing, unreadable or not ours: no request (`smrun cancel` always writes a whole file).
        return set()
    if not isinstance(data, dict):
        return set()
    if data.get("all"):
        return None
    vms = data.get("vms")
    return {str(v) for v in vms} if isinstance(vms, list) else set()
