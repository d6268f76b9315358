"""`fastsam serve` on a real uvicorn server on a free loopback port: hostile clients (slow heads and bodies,
oversized prompt bodies, foreign Host and Origin headers, clients that vanish mid-upload) against the limits,
timeouts and checks of fastsam.serve.guard / protocol / upload. Traffic goes to 127.0.0.1 only, bounded in count
and time."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from fastsam.serve import ServeSettings, create_app  # noqa: E402
from fastsam.serve.protocol import uvicorn_options  # noqa: E402
from tests.test_serve import RectangleBackend, scene_png  # noqa: E402

PNG = {"Content-Type": "image/png"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(app) -> Iterator[str]:
    """Run ``app`` with uvicorn, configured as `fastsam serve` runs it (its settings' connection limits), in a
    background thread on a free loopback port; yields its base URL. Logs go to the root logger (caplog)."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", log_config=None,
                            **uvicorn_options(app.state.settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float | None]:
    """(bytes received, seconds until the server closed the connection or None) within ``limit`` seconds."""
    start, received = time.monotonic(), b""
    sock.settimeout(0.1)
    while time.monotonic() - start < limit:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return received, time.monotonic() - start
        if not chunk:
            return received, time.monotonic() - start
        received += chunk
    return received, None


def json_error(response: bytes) -> dict:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]


# --------------------------------------------------------------------------------------------- slowloris
def test_slow_request_heads_are_cut_off_while_others_are_served() -> None:
    app = create_app(RectangleBackend(), ServeSettings(header_timeout=1.0))
    with serving(app) as url:
        port = port_of(url)
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        idle = socket.create_connection(("127.0.0.1", port))  # says nothing at all
        start = time.monotonic()
        for sock in slow:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # One more header line every 0.2 s: data keeps flowing (which resets uvicorn's own keep-alive timer),
        # the head never ends.
        answers: dict[int, bytes] = {}
        closed_after: dict[int, float] = {}
        while len(closed_after) < len(slow) and time.monotonic() - start < 5:
            for k, sock in enumerate(slow):
                if k in closed_after:
                    continue
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                    sock.settimeout(0.01)
                    chunk = sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    chunk = b""
                answers[k] = answers.get(k, b"") + chunk
                if not chunk:
                    closed_after[k] = time.monotonic() - start
            health = httpx.get(f"{url}/v1/health", timeout=1.0)  # meanwhile, other clients are served
            assert health.status_code == 200
            time.sleep(0.2)
        idle_answer, idle_closed = read_until_closed(idle, 3.0)
        for sock in (*slow, idle):
            sock.close()
    assert len(closed_after) == len(slow), "slow heads still open after 5 s"
    assert 0.9 < min(closed_after.values()) and max(closed_after.values()) < 3.0
    assert sum(a.startswith(b"HTTP/1.1 408") for a in answers.values()) >= len(slow) // 2
    assert idle_closed is not None and idle_answer == b""


def test_a_second_request_head_on_a_kept_alive_connection_is_timed_too() -> None:
    app = create_app(RectangleBackend(), ServeSettings(header_timeout=1.0))
    with serving(app) as url, socket.create_connection(("127.0.0.1", port_of(url))) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.3)
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        answer, closed = read_until_closed(sock, 4.0)
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1 ") == 2
    assert closed is not None and 0.5 < closed < 3.0 and b"HTTP/1.1 408" in answer


def test_a_body_slower_than_the_body_timeout_gets_408() -> None:
    app = create_app(RectangleBackend(), ServeSettings(body_timeout=1.0))
    with serving(app) as url, socket.create_connection(("127.0.0.1", port_of(url))) as sock:
        sock.sendall(b"POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 5000\r\n\r\n" + scene_png()[:100])
        start = time.monotonic()
        refused_after = None
        while time.monotonic() - start < 3.0:  # 10 bytes every 0.2 s: never idle, far too slow
            try:
                sock.sendall(b"\0" * 10)
            except OSError:  # closed by the server
                refused_after = time.monotonic() - start
                break
            time.sleep(0.2)
        answer, closed = read_until_closed(sock, 3.0)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert json_error(answer)["code"] == "request_timeout" and closed is not None
    assert refused_after is None or 0.8 < refused_after < 2.5


# ------------------------------------------------------------------------------------- oversized prompt
def test_oversized_prompt_body_is_refused_while_it_streams_and_health_answers() -> None:
    app = create_app(RectangleBackend(), ServeSettings())
    with serving(app) as url:
        image_id = httpx.post(f"{url}/v1/images", content=scene_png(), headers=PNG).json()["image_id"]
        sock = socket.create_connection(("127.0.0.1", port_of(url)))
        # 10^6 points as chunked JSON (no Content-Length to refuse up front), ~18 MiB, sent as fast as possible.
        sock.sendall(f"POST /v1/images/{image_id}/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        sent = {"bytes": 0}

        def send_body() -> None:
            piece = b"[12.5, 34.25], " * 70_000
            try:
                for chunk in (b'{"points": [', *[piece] * 17, b"[1, 1]]}"):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent["bytes"] += len(chunk)
                sock.sendall(b"0\r\n\r\n")
            except OSError:  # the server closed the connection after refusing the body
                pass

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        latencies = []
        with httpx.Client(timeout=5) as client:
            for _ in range(10):
                start = time.monotonic()
                assert client.get(f"{url}/v1/health").status_code == 200
                latencies.append(time.monotonic() - start)
                time.sleep(0.05)
        answer, _ = read_until_closed(sock, 10.0)
        sender.join(10)
        sock.close()
        # The connection is closed rather than drained; the server still answers prompts of normal size.
        ok = httpx.post(f"{url}/v1/images/{image_id}/prompt", json={"points": [[15, 10]]}, timeout=5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    error = json_error(answer)
    assert error["code"] == "payload_too_large" and "prompt body" in error["message"]
    assert sent["bytes"] < 17 * 1_050_000  # refused before the whole body had been sent
    assert max(latencies) < 1.0, latencies
    assert ok.status_code == 200 and ok.json()["count"] == 1


# ------------------------------------------------------------------------------------ Host and Origin
def test_foreign_host_is_refused_and_local_names_are_served() -> None:
    app = create_app(RectangleBackend(), ServeSettings(model_name="/home/someone/models/secret-model.pt"))
    with serving(app) as url, httpx.Client(timeout=5) as client:
        rebound = client.get(f"{url}/v1/model", headers={"Host": "rebind.attacker.example"})
        page = client.get(f"{url}/", headers={"Host": f"rebind.attacker.example:{port_of(url)}"})
        local = [client.get(f"{url}/v1/model", headers={"Host": host}) for host in
                 (f"127.0.0.1:{port_of(url)}", f"localhost:{port_of(url)}", "LOCALHOST", "[::1]:80")]
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "unknown_host"
    assert "secret-model" not in rebound.text and page.status_code == 400
    assert [r.status_code for r in local] == [200] * 4
    assert local[0].json()["name"] == "secret-model.pt"  # the file's name, not its path


def test_state_changing_requests_from_a_foreign_origin_are_refused() -> None:
    app = create_app(RectangleBackend(), ServeSettings(allowed_origins=("http://labeller.example:9000",)))
    with serving(app) as url, httpx.Client(timeout=5) as client:
        files = {"file": ("scene.png", scene_png(), "image/png")}
        foreign = client.post(f"{url}/v1/images", files=files, headers={"Origin": "http://evil.example"})
        null = client.post(f"{url}/v1/images", files=files, headers={"Origin": "null"})
        assert app.state.worker.completed == 0  # refused before any pass ran
        own = client.post(f"{url}/v1/images", files=files, headers={"Origin": url})
        listed = client.post(f"{url}/v1/images", content=scene_png(seed=1), headers={
            **PNG, "Origin": "http://labeller.example:9000"})
        image_id = own.json()["image_id"]
        prompt = client.post(f"{url}/v1/images/{image_id}/prompt", json={"points": [[15, 10]]},
                             headers={"Origin": "https://evil.example"})
        delete = client.delete(f"{url}/v1/images/{image_id}", headers={"Origin": "http://evil.example"})
        read = client.get(f"{url}/v1/images/{image_id}", headers={"Origin": "http://evil.example"})
        scripted = client.delete(f"{url}/v1/images/{image_id}")  # no Origin: not a browser page
    for response in (foreign, null, prompt, delete):
        assert response.status_code == 403 and response.json()["error"]["code"] == "cross_origin", response.text
    assert own.status_code == 200 and listed.status_code == 200
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers  # still unreadable there
    assert scripted.status_code == 204


def test_token_is_required_on_the_api_but_not_for_health_or_the_page() -> None:
    token = "s3cret-token-123"
    app = create_app(RectangleBackend(), ServeSettings(token=token))
    with serving(app) as url, httpx.Client(timeout=5) as client:
        missing = client.post(f"{url}/v1/images", content=scene_png(), headers=PNG)
        wrong = client.get(f"{url}/v1/model", headers={"Authorization": "Bearer nope-nope-nope"})
        right = client.post(f"{url}/v1/images", content=scene_png(), headers={
            **PNG, "Authorization": f"Bearer {token}"})
        open_paths = [client.get(f"{url}{path}").status_code for path in ("/v1/health", "/", "/static/app.js")]
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "unauthorized" and wrong.status_code == 401
    assert right.status_code == 200 and open_paths == [200, 200, 200]
    assert app.state.worker.completed == 1


# ---------------------------------------------------------------------------------------- disconnects
def test_a_client_gone_mid_upload_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(RectangleBackend(), ServeSettings())
    caplog.set_level(logging.INFO)
    with serving(app) as url:
        with socket.create_connection(("127.0.0.1", port_of(url))) as sock:
            sock.sendall(b"POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 100000\r\n\r\n" + b"\x89PNG" * 250)
            time.sleep(0.5)
        deadline = time.monotonic() + 5
        while not any("disconnected" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{url}/v1/health", timeout=5).status_code == 200
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.WARNING and "during the upload" in gone[0].getMessage()
    assert gone[0].exc_info is None and "\n" not in gone[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
