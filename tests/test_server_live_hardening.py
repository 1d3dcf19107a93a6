"""Hardening checks that need a real ``faceatlas serve`` (uvicorn, sockets, RSS): M4, L3, L8 and CL+TE (issue #12)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("httpx")

from faceatlas.server.launcher import ServerProcess  # noqa: E402

MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[ServerProcess]:
    """A real server with a tight failure limiter and a short header deadline."""
    home = tmp_path_factory.mktemp("live")
    with ServerProcess(home, ["--rate-limit", "0.5", "--rate-burst", "3", "--header-timeout", "1",
                              "--log-level", "warning"]) as srv:
        assert srv.admin_key
        yield srv


def _raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes and read until the server closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
    return out


def _access(server: ServerProcess) -> list[dict[str, object]]:
    """The server's JSON access-log lines so far."""
    out = []
    for line in server.stderr_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"event":"access"' in line:
            out.append(json.loads(line))
    return out


def test_m4_unauthenticated_uploads_add_no_memory(server: ServerProcess) -> None:
    import httpx

    assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {server.admin_key}"}).status_code == 200
    time.sleep(0.5)
    before = server.rss_bytes()
    head = (b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 14680064\r\n\r\n")
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(10)]
    answers = []
    try:
        for s in socks:
            s.sendall(head)
        for _ in range(20):  # then, slowly, a little body on every connection
            for s in socks:
                try:
                    s.sendall(b"\xff" * 4096)
                except OSError:
                    pass
            time.sleep(0.02)
        peak = server.rss_bytes()
        for s in socks:
            try:
                answers.append(s.recv(4096))
            except OSError:
                answers.append(b"")
    finally:
        for s in socks:
            s.close()
    grown = (peak - before) / MB
    assert grown < 10, f"10 unauthenticated 14 MiB uploads added {grown:.1f} MB"
    assert all(a.startswith(b"HTTP/1.1 401") for a in answers), answers[:2]


def test_l3_forwarded_for_is_ignored_without_trusted_proxies(server: ServerProcess) -> None:
    import httpx

    statuses = []
    with httpx.Client(base_url=server.url) as c:
        for i in range(6):
            r = c.get("/v1/whoami", headers={"Authorization": f"Bearer fak_{i:012x}_" + "q" * 43,
                                              "X-Forwarded-For": f"203.0.113.{i}", "x-request-id": f"xff-{i}"})
            statuses.append(r.status_code)
    assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429  # one address, however it claims otherwise
    time.sleep(0.3)
    entries = [e for e in _access(server) if str(e.get("request_id", "")).startswith("xff-")]
    assert entries and all(e["client"] == "127.0.0.1" for e in entries)


def test_l3_forwarded_for_is_used_from_a_configured_proxy(tmp_path: Path, lfw_dir: Path) -> None:
    import httpx

    with ServerProcess(tmp_path / "home", ["--forwarded-allow-ips", "127.0.0.1", "--log-level", "warning"]) as srv:
        r = httpx.get(f"{srv.url}/v1/whoami", headers={"X-Forwarded-For": "198.51.100.7", "x-request-id": "proxied"})
        assert r.status_code == 401
        time.sleep(0.3)
        entry = next(e for e in _access(srv) if e.get("request_id") == "proxied")
    assert entry["client"] == "198.51.100.7"


def test_l8_slow_headers_are_cut_off(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=0.2) as s:
        started = time.monotonic()
        closed_after = None
        for ch in b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                s.send(bytes([ch]))
                if s.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None and closed_after < 3.0, closed_after


def test_content_length_and_transfer_encoding_together_are_400(server: ServerProcess) -> None:
    raw = (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.admin_key}\r\n"
           "Content-Type: image/jpeg\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n0\r\n\r\n").encode()
    answer = _raw(server.port, raw)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert server.alive()
