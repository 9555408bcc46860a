"""Delta copier: apply one pull-mode VirtualMachineBackup round to a target volume.

Run inside a Job on the target cluster with a stock Python image (standard library only), from
a ConfigMap smrun ships (``python /copier/delta.py``). It pages through the export server's
``map`` endpoint of one disk, fetches the ranges that must change from ``data?offset=&length=``
and writes them into the target volume (a file such as ``/target/disk.img`` or a block device)
at the same offsets. See warm-migration.md sections 1.4 and 2.2.

Which extents are written:

- Incremental backup (map types ``clean``, ``dirty``, ``zero``, ``dirty,zero``): ``dirty`` ranges
  are copied, ``dirty,zero`` ranges are written as zeros, the rest is skipped.
- Full backup (``data``, ``hole``, ``zero``, ``hole,zero``): ``data`` ranges are copied; the other
  ranges are written as zeros, except where the target is a regular file that this run grew
  (bytes past its old end already read back as zeros).

Every request sends the token in the ``x-kubevirt-export-token`` header and trusts the CA file
when one is given. A range that fails with a network error, a 5xx (503 until the export tunnel is
up) or a short body is retried with exponential backoff; 4xx answers are final. When it ends, a
JSON summary (``dirtyBytes``, ``copiedBytes``, ``zeroedBytes``, ``extents``, ``requests``,
``retries``, ``seconds``, ``type``; ``error`` on failure) goes to stdout and to the termination
message file, where smrun reads it from the Pod's status.

Settings come from the command line or, for a Job manifest, from the environment:
``MAP_URL``, ``DATA_URL``, ``TARGET``, ``BACKUP_TYPE`` (Full or Incremental), ``TOKEN`` or
``TOKEN_FILE``, ``CA_FILE``, ``PARALLEL``, ``RETRIES``, ``BACKOFF``, ``MAX_REQUEST``,
``TERMINATION_LOG``. The token is never printed.

What it does not do: resize a block device, punch holes, verify checksums, or decide the round
type (the backup's ``status.type`` does). The source text holds no Jinja delimiters, because the
ConfigMap template includes it verbatim.
"""
from __future__ import annotations

import argparse
import json
import os
import ssl
import stat
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

TOKEN_HEADER = "x-kubevirt-export-token"
CHUNK = 1 << 20  # bytes read from a response (and zeros written) at a time
FULL_COPY = frozenset(("data",))
FULL_ZERO = frozenset(("hole", "zero", "hole,zero"))
INCREMENTAL_COPY = frozenset(("dirty",))
INCREMENTAL_ZERO = frozenset(("dirty,zero",))
# Map types by number, per backup type: bit 0 is hole (full) or dirty (incremental), bit 1 zero.
FULL_NAMES = ("data", "hole", "zero", "hole,zero")
INCREMENTAL_NAMES = ("clean", "dirty", "zero", "dirty,zero")


class CopyError(Exception):
    """A request failed for good (after retries, or with an answer retrying cannot change)."""


class Retryable(Exception):
    """A request failed in a way that may pass on a later attempt."""


@dataclass(frozen=True)
class Extent:
    offset: int
    length: int
    kind: str

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class Config:
    map_url: str
    data_url: str
    target: str
    backup_type: str
    token: str = field(repr=False)
    ca_file: Optional[str] = None
    parallel: int = 4
    retries: int = 5
    backoff: float = 1.0
    max_request: int = 8 << 20
    termination_log: str = "/dev/termination-log"
    timeout: float = 300.0


@dataclass
class Stats:
    dirty_bytes: int = 0
    copied_bytes: int = 0
    zeroed_bytes: int = 0
    extents: int = 0
    requests: int = 0
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class Client:
    """GET requests to the export server with the token, the CA and retries."""

    def __init__(self, config: Config, stats: Stats,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.stats = stats
        self.sleep = sleep
        self.context: Optional[ssl.SSLContext] = None
        self.stop = threading.Event()  # set once a request failed for good: start no more
        if config.ca_file:
            self.context = ssl.create_default_context(cafile=config.ca_file)

    def url(self, base: str, **query: int) -> str:
        parts = urllib.parse.urlsplit(base)
        pairs = urllib.parse.parse_qsl(parts.query) + [(k, str(v)) for k, v in query.items()]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(pairs)))

    def with_retries(self, what: str, attempt_once: Callable[[], Any]) -> Any:
        delay = self.config.backoff
        for attempt in range(self.config.retries + 1):
            try:
                return attempt_once()
            except Retryable as exc:
                if attempt == self.config.retries:
                    self.stop.set()
                    raise CopyError(f"{what}: {exc} (gave up after {attempt + 1} attempts)") from None
                self.stats.add(retries=1)
                log(f"{what}: {exc}; retrying in {delay:g}s")
                self.sleep(delay)
                delay = min(delay * 2, 60.0)
        raise AssertionError("unreachable")

    def open(self, url: str) -> Any:
        request = urllib.request.Request(url, headers={TOKEN_HEADER: self.config.token})
        self.stats.add(requests=1)
        try:
            return urllib.request.urlopen(request, timeout=self.config.timeout, context=self.context)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code >= 500 or exc.code == 429:
                raise Retryable(f"HTTP {exc.code} {exc.reason}") from None
            self.stop.set()
            raise CopyError(f"HTTP {exc.code} {exc.reason} for {redact(url)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                # A wrong or missing CA does not get better by waiting.
                self.stop.set()
                raise CopyError(f"TLS: {reason.verify_message or reason} for {redact(url)}") from None
            raise Retryable(f"{type(exc).__name__}: {reason}") from None

    def get_json(self, url: str) -> Any:
        def once() -> Any:
            response = self.open(url)
            try:
                return json.loads(response.read().decode("utf-8"))
            except (OSError, ValueError) as exc:
                raise Retryable(f"bad map answer: {exc}") from None
            finally:
                response.close()
        return self.with_retries(f"map {redact(url)}", once)


def redact(url: str) -> str:
    """The URL without a token query parameter (the token is never logged)."""
    parts = urllib.parse.urlsplit(url)
    pairs = [(k, "***" if k == TOKEN_HEADER else v) for k, v in urllib.parse.parse_qsl(parts.query)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(pairs)))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def kind_of(raw: dict[str, Any], backup_type: str) -> str:
    """The extent's kind name: its description, else its numeric type read for this backup type."""
    description = raw.get("description")
    if isinstance(description, str) and description:
        return description.replace(" ", "")
    names = INCREMENTAL_NAMES if backup_type == "incremental" else FULL_NAMES
    number = raw.get("type")
    if isinstance(number, int) and 0 <= number < len(names):
        return names[number]
    raise CopyError(f"map extent without a known type: {raw!r}")


def read_map(client: Client, config: Config) -> Iterator[Extent]:
    """Every extent of the map, following ``next_offset`` pages."""
    offset: Optional[int] = 0
    while offset is not None:
        page = client.get_json(client.url(config.map_url, offset=offset))
        extents = page.get("extents") if isinstance(page, dict) else None
        if not isinstance(extents, list):
            raise CopyError("map answer has no extents list")
        for raw in extents:
            yield Extent(int(raw["offset"]), int(raw["length"]), kind_of(raw, config.backup_type))
        following = page.get("next_offset")
        if following is not None and (not isinstance(following, int) or following <= offset):
            raise CopyError(f"map next_offset {following!r} does not advance past {offset}")
        offset = following


def plan_writes(extents: Sequence[Extent], backup_type: str, zero_from: Optional[int],
                max_request: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """Split the map into copy ranges (merged, at most ``max_request``) and zero ranges.

    ``zero_from``: bytes at or past this offset already read as zeros (a grown regular file).
    Returns ``(copies, zeros, dirty_bytes)``.
    """
    copy_kinds, zero_kinds = ((INCREMENTAL_COPY, INCREMENTAL_ZERO) if backup_type == "incremental"
                              else (FULL_COPY, FULL_ZERO))
    copies: list[tuple[int, int]] = []
    zeros: list[tuple[int, int]] = []
    dirty = 0
    for extent in extents:
        if extent.kind in copy_kinds:
            dirty += extent.length
            if copies and copies[-1][0] + copies[-1][1] == extent.offset:
                start, length = copies.pop()
                copies.append((start, length + extent.length))
            else:
                copies.append((extent.offset, extent.length))
        elif extent.kind in zero_kinds:
            if backup_type == "incremental":
                dirty += extent.length
            end = extent.end if zero_from is None else min(extent.end, zero_from)
            if end > extent.offset:
                zeros.append((extent.offset, end - extent.offset))
    split: list[tuple[int, int]] = []
    for start, length in copies:
        for piece in range(start, start + length, max_request):
            split.append((piece, min(max_request, start + length - piece)))
    return split, zeros, dirty


def copy_range(client: Client, fd: int, offset: int, length: int) -> None:
    if client.stop.is_set():
        return  # another range failed: the round has failed, its error is reported
    def once() -> None:
        response = client.open(client.url(client.config.data_url, offset=offset, length=length))
        done = 0
        try:
            while done < length:
                chunk = response.read(min(CHUNK, length - done))
                if not chunk:
                    break
                written = 0
                while written < len(chunk):
                    written += os.pwrite(fd, chunk[written:], offset + done + written)
                done += len(chunk)
        except OSError as exc:
            raise Retryable(f"reading data: {exc}") from None
        finally:
            response.close()
        if done != length:
            raise Retryable(f"short body: {done} of {length} bytes")
    client.with_retries(f"data offset={offset} length={length}", once)
    client.stats.add(copied_bytes=length)


def write_zeros(fd: int, offset: int, length: int) -> None:
    zeros = bytes(min(CHUNK, length))
    done = 0
    while done < length:
        done += os.pwrite(fd, zeros[:min(CHUNK, length - done)], offset + done)


def run(config: Config, sleep: Callable[[float], None] = time.sleep,
        stats: Optional[Stats] = None) -> dict[str, Any]:
    """Apply the round; return the summary. Raises CopyError when a range cannot be copied.

    ``stats`` (optional) is filled as the copy goes, so a caller can report a partial count.
    """
    started = time.monotonic()
    stats = Stats() if stats is None else stats
    client = Client(config, stats, sleep)
    extents = list(read_map(client, config))
    stats.extents = len(extents)
    flags = os.O_RDWR | (os.O_CREAT if not os.path.exists(config.target) else 0)
    fd = os.open(config.target, flags, 0o660)
    try:
        zero_from: Optional[int] = None
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            size = max((e.end for e in extents), default=0)
            if info.st_size < size:
                # Growing a regular file: the new tail reads as zeros already (a sparse hole).
                os.ftruncate(fd, size)
                zero_from = info.st_size
        copies, zeros, dirty = plan_writes(extents, config.backup_type, zero_from, config.max_request)
        stats.dirty_bytes = dirty
        for offset, length in zeros:
            write_zeros(fd, offset, length)
            stats.add(zeroed_bytes=length)
        with ThreadPoolExecutor(max_workers=max(1, config.parallel)) as pool:
            futures = [pool.submit(copy_range, client, fd, o, n) for o, n in copies]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                # One range failed for good: the round has failed, do not start the others.
                for future in futures:
                    future.cancel()
                raise
        os.fsync(fd)
    finally:
        os.close(fd)
    return summary(stats, config, time.monotonic() - started)


def summary(stats: Stats, config: Config, seconds: float, error: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"dirtyBytes": stats.dirty_bytes, "copiedBytes": stats.copied_bytes,
                           "zeroedBytes": stats.zeroed_bytes, "extents": stats.extents,
                           "requests": stats.requests, "retries": stats.retries,
                           "seconds": round(seconds, 3), "type": config.backup_type}
    if error:
        out["error"] = error[:1000]  # the termination message is limited to 4096 bytes
    return out


def report(result: dict[str, Any], path: str) -> None:
    text = json.dumps(result, sort_keys=True)
    print(text, flush=True)
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        log(f"cannot write the termination message to {path}: {exc}")


def parse_args(argv: Sequence[str], env: dict[str, str]) -> Config:
    parser = argparse.ArgumentParser(prog="delta.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--map-url", default=env.get("MAP_URL"))
    parser.add_argument("--data-url", default=env.get("DATA_URL"))
    parser.add_argument("--target", default=env.get("TARGET"))
    parser.add_argument("--type", dest="backup_type", default=env.get("BACKUP_TYPE", "Incremental"),
                        help="the backup's status.type: Full or Incremental")
    parser.add_argument("--token-file", default=env.get("TOKEN_FILE"))
    parser.add_argument("--ca-file", default=env.get("CA_FILE") or None)
    parser.add_argument("--parallel", type=int, default=int(env.get("PARALLEL", "4")))
    parser.add_argument("--retries", type=int, default=int(env.get("RETRIES", "5")))
    parser.add_argument("--backoff", type=float, default=float(env.get("BACKOFF", "1")))
    parser.add_argument("--max-request", type=int, default=int(env.get("MAX_REQUEST", str(8 << 20))))
    parser.add_argument("--termination-log",
                        default=env.get("TERMINATION_LOG", "/dev/termination-log"))
    args = parser.parse_args(list(argv))
    missing = [name for name in ("map_url", "data_url", "target") if not getattr(args, name)]
    if missing:
        parser.error("missing " + ", ".join("--" + m.replace("_", "-") for m in missing))
    token = env.get("TOKEN", "")
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    if not token:
        parser.error("no token: set TOKEN or --token-file")
    backup_type = str(args.backup_type).lower()
    if backup_type not in ("full", "incremental"):
        parser.error(f"--type must be Full or Incremental, not {args.backup_type!r}")
    if args.max_request <= 0:
        parser.error("--max-request must be positive")
    return Config(map_url=args.map_url, data_url=args.data_url, target=args.target,
                  backup_type=backup_type, token=token, ca_file=args.ca_file,
                  parallel=args.parallel, retries=args.retries, backoff=args.backoff,
                  max_request=args.max_request, termination_log=args.termination_log)


def main(argv: Optional[Sequence[str]] = None, env: Optional[dict[str, str]] = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv,
                        dict(os.environ) if env is None else env)
    started = time.monotonic()
    stats = Stats()
    try:
        result = run(config, stats=stats)
    except (CopyError, OSError) as exc:
        report(summary(stats, config, time.monotonic() - started, error=str(exc)),
               config.termination_log)
        log(f"delta copy failed: {exc}")
        return 1
    report(result, config.termination_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
