"""The delta copier against a local HTTP server that answers ``map`` and ``data`` as KubeVirt's
export server does for a pull-mode backup (warm-migration.md §1.4): JSON extent pages with
``next_offset``, raw bytes for ``offset``/``length`` query parameters, the token header checked,
405 for anything but GET. Images are small byte strings built per test.
"""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from statemachine.copier import delta
from statemachine.sim.tls import make_cert

TOKEN = "s3cret-token-value"
KIB = 1024


@dataclass
class Export:
    """What the fake export server serves for one disk, and what it saw."""

    image: bytes
    extents: list[dict[str, Any]]
    page_size: int = 2
    fail_once_at: set[int] = field(default_factory=set)   # data offsets answered 500 once
    fail_always: bool = False                              # every data request 503
    data_requests: list[tuple[int, int]] = field(default_factory=list)
    map_requests: int = 0


def make_handler(export: Export) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
            return

        def answer(self, code: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.answer(405, b"")

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if self.headers.get("x-kubevirt-export-token") != TOKEN:
                self.answer(401, b"unauthorized")
                return
            if url.path == "/exports/disk0/map":
                export.map_requests += 1
                start = int(query.get("offset", "0"))
                later = [e for e in export.extents if e["offset"] >= start]
                page = later[:export.page_size]
                following = later[export.page_size]["offset"] if len(later) > export.page_size else None
                self.answer(200, json.dumps({"extents": page, "next_offset": following}).encode(),
                            "application/json")
            elif url.path == "/exports/disk0/data":
                offset, length = int(query["offset"]), int(query["length"])
                export.data_requests.append((offset, length))
                if export.fail_always:
                    self.answer(503, b"tunnel not connected")
                elif offset in export.fail_once_at:
                    export.fail_once_at.discard(offset)
                    self.answer(500, b"read failed")
                else:
                    self.answer(200, export.image[offset:offset + length], "application/octet-stream")
            else:
                self.answer(404, b"not found")
    return Handler


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(export: Export, tls: ssl.SSLContext | None = None) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(export))
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        scheme = "https" if tls is not None else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}/exports/disk0"
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def pattern(size: int, seed: int) -> bytes:
    return bytes((i * 7 + seed * 13 + (i >> 10)) % 251 + 1 for i in range(size))


def extent(offset: int, length: int, kind: str, number: int) -> dict[str, Any]:
    return {"offset": offset, "length": length, "type": number, "description": kind}


def config(base: str, target: Path, tmp_path: Path, backup_type: str, **extra: Any) -> delta.Config:
    values: dict[str, Any] = {"map_url": base + "/map", "data_url": base + "/data",
                              "target": str(target), "backup_type": backup_type, "token": TOKEN,
                              "backoff": 0.0, "max_request": 16 * KIB,
                              "termination_log": str(tmp_path / "termination-log")}
    values.update(extra)
    return delta.Config(**values)


def full_image() -> tuple[bytes, list[dict[str, Any]]]:
    """64 KiB: data, hole, data, zero, data; holes and zeros read back as zero bytes."""
    image = bytearray(pattern(64 * KIB, 1))
    image[16 * KIB:24 * KIB] = bytes(8 * KIB)
    image[40 * KIB:48 * KIB] = bytes(8 * KIB)
    extents = [extent(0, 16 * KIB, "data", 0), extent(16 * KIB, 8 * KIB, "hole", 1),
               extent(24 * KIB, 16 * KIB, "data", 0), extent(40 * KIB, 8 * KIB, "zero", 2),
               extent(48 * KIB, 16 * KIB, "data", 0)]
    return bytes(image), extents


def test_full_round_into_a_new_file_is_byte_identical(serve: Any, tmp_path: Path) -> None:
    image, extents = full_image()
    export = Export(image, extents)
    target = tmp_path / "disk.img"
    result = delta.run(config(serve(export), target, tmp_path, "full"))
    assert target.read_bytes() == image
    assert result["copiedBytes"] == result["dirtyBytes"] == 48 * KIB
    assert result["zeroedBytes"] == 0  # the grown file's tail reads as zeros already
    assert result["extents"] == 5
    assert export.map_requests == 3  # 5 extents, pages of 2


def test_full_round_over_stale_block_content_zeroes_holes(serve: Any, tmp_path: Path) -> None:
    image, extents = full_image()
    target = tmp_path / "disk.img"
    target.write_bytes(b"\xff" * len(image))  # like a reused device: holes must be written
    result = delta.run(config(serve(Export(image, extents)), target, tmp_path, "full"))
    assert target.read_bytes() == image
    assert result["zeroedBytes"] == 16 * KIB


def test_incremental_round_copies_only_dirty_extents(serve: Any, tmp_path: Path) -> None:
    old = pattern(64 * KIB, 1)
    new = bytearray(old)
    new[8 * KIB:12 * KIB] = pattern(4 * KIB, 2)
    new[12 * KIB:20 * KIB] = pattern(8 * KIB, 3)     # adjacent dirty extent: merged request
    new[32 * KIB:36 * KIB] = bytes(4 * KIB)          # dirty,zero: written as zeros
    new[50 * KIB:64 * KIB] = pattern(14 * KIB, 4)
    extents = [extent(0, 8 * KIB, "clean", 0), extent(8 * KIB, 4 * KIB, "dirty", 1),
               extent(12 * KIB, 8 * KIB, "dirty", 1), extent(20 * KIB, 12 * KIB, "clean", 0),
               extent(32 * KIB, 4 * KIB, "dirty,zero", 3), extent(36 * KIB, 14 * KIB, "clean", 0),
               extent(50 * KIB, 14 * KIB, "dirty", 1)]
    export = Export(bytes(new), extents)
    target = tmp_path / "disk.img"
    target.write_bytes(old)
    result = delta.run(config(serve(export), target, tmp_path, "incremental"))
    assert target.read_bytes() == bytes(new)
    assert result["copiedBytes"] == 26 * KIB
    assert result["dirtyBytes"] == 30 * KIB
    assert result["zeroedBytes"] == 4 * KIB
    assert sorted(export.data_requests) == [(8 * KIB, 12 * KIB), (50 * KIB, 14 * KIB)]


def test_numeric_types_without_description_follow_the_backup_type(serve: Any, tmp_path: Path) -> None:
    old = pattern(8 * KIB, 1)
    new = old[:4 * KIB] + pattern(4 * KIB, 9)
    extents = [{"offset": 0, "length": 4 * KIB, "type": 0},
               {"offset": 4 * KIB, "length": 4 * KIB, "type": 1}]
    target = tmp_path / "disk.img"
    target.write_bytes(old)
    delta.run(config(serve(Export(new, extents)), target, tmp_path, "incremental"))
    assert target.read_bytes() == new


def test_transient_500_on_one_range_is_retried(serve: Any, tmp_path: Path) -> None:
    image, extents = full_image()
    export = Export(image, extents, fail_once_at={24 * KIB})
    target = tmp_path / "disk.img"
    result = delta.run(config(serve(export), target, tmp_path, "full"))
    assert target.read_bytes() == image
    assert result["retries"] == 1
    assert export.data_requests.count((24 * KIB, 16 * KIB)) == 2


def test_persistent_503_fails_after_the_retry_limit(serve: Any, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    image, extents = full_image()
    export = Export(image, extents, fail_always=True)
    base = serve(export)
    log = tmp_path / "termination-log"
    code = delta.main(["--map-url", base + "/map", "--data-url", base + "/data",
                       "--target", str(tmp_path / "disk.img"), "--type", "Full",
                       "--retries", "2", "--backoff", "0", "--parallel", "1",
                       "--termination-log", str(log)], {"TOKEN": TOKEN})
    assert code == 1
    written = json.loads(log.read_text())
    assert "HTTP 503" in written["error"] and "3 attempts" in written["error"]
    assert written["retries"] == 2
    assert len(export.data_requests) == 3
    assert TOKEN not in capsys.readouterr().err


def test_bad_token_is_not_retried_and_not_echoed(serve: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    image, extents = full_image()
    base = serve(Export(image, extents))
    log = tmp_path / "termination-log"
    code = delta.main(["--type", "Incremental", "--termination-log", str(log)],
                      {"MAP_URL": base + "/map", "DATA_URL": base + "/data",
                       "TARGET": str(tmp_path / "disk.img"), "TOKEN": "wrong-token"})
    assert code == 1
    error = json.loads(log.read_text())["error"]
    assert "HTTP 401" in error
    captured = capsys.readouterr()
    assert "wrong-token" not in captured.out + captured.err + log.read_text()


def test_runs_as_a_script_and_writes_the_summary(serve: Any, tmp_path: Path) -> None:
    """As in the Job: ``python delta.py`` with the environment only, token from a file."""
    image, extents = full_image()
    base = serve(Export(image, extents))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    log = tmp_path / "termination-log"
    env = {"PATH": os.environ.get("PATH", ""), "MAP_URL": base + "/map", "DATA_URL": base + "/data",
           "TARGET": str(tmp_path / "disk.img"), "BACKUP_TYPE": "Full",
           "TOKEN_FILE": str(token_file), "TERMINATION_LOG": str(log)}
    done = subprocess.run([sys.executable, "-I", delta.__file__], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "disk.img").read_bytes() == image
    summary = json.loads(done.stdout)
    assert summary == json.loads(log.read_text())
    assert summary["copiedBytes"] == 48 * KIB and summary["type"] == "full"


def test_missing_settings_are_one_clear_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        delta.main([], {"TOKEN": TOKEN})
    assert stopped.value.code == 2
    assert "missing --map-url, --data-url, --target" in capsys.readouterr().err


def test_source_has_no_jinja_delimiters() -> None:
    """The ConfigMap template includes the program verbatim; Jinja must find nothing to expand."""
    text = Path(delta.__file__).read_text()
    assert not any(mark in text for mark in ("{{", "{%", "{#"))


def test_https_with_the_export_ca(serve: Any, tmp_path: Path) -> None:
    """The export's CA (endpointCert) is trusted; without it the certificate is refused."""
    cert = make_cert(tmp_path)
    if cert is None:
        pytest.skip("openssl is not available to make a test certificate")
    image, extents = full_image()
    base = serve(Export(image, extents), tls=cert.server_context())
    assert base.startswith("https://")
    target = tmp_path / "disk.img"
    result = delta.run(config(base, target, tmp_path, "full", ca_file=str(cert.cert_path)))
    assert target.read_bytes() == image and result["copiedBytes"] == 48 * KIB
    with pytest.raises(delta.CopyError, match="^TLS: .*certificate") as refused:
        delta.run(config(base, tmp_path / "other.img", tmp_path, "full"))
    assert "gave up" not in str(refused.value)  # final at once, not retried
