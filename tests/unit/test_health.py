"""The health adapter: CometBFT /status parsing, the URL check against a real
HTTP server on loopback, and the command check with real programs."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from highlander.adapters.health import (
    Health,
    HealthError,
    check_command,
    check_url,
    parse_status,
)


def status(height: object = "12", catching_up: object = False, envelope: bool = True) -> bytes:
    sync: dict[str, object] = {"latest_block_height": height}
    if catching_up is not None:
        sync["catching_up"] = catching_up
    result = {"node_info": {"network": "test"}, "sync_info": sync}
    document = {"jsonrpc": "2.0", "id": -1, "result": result} if envelope else result
    return json.dumps(document).encode()


# --- parse_status --------------------------------------------------------------------


@pytest.mark.parametrize("envelope", [True, False], ids=["json-rpc", "bare"])
def test_parse_status_reads_height_and_catching_up(envelope: bool) -> None:
    assert parse_status(status("12", False, envelope)) == Health(12, False)
    assert parse_status(status("7", True, envelope)) == Health(7, True)


def test_parse_status_accepts_a_numeric_height() -> None:
    assert parse_status(status(99)) == Health(99, False)


def test_parse_status_takes_a_missing_catching_up_as_false() -> None:
    assert parse_status(status("5", catching_up=None)) == Health(5, False)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>502 Bad Gateway</html>", id="not-json"),
        pytest.param(b"[1, 2]", id="json-list"),
        pytest.param(b'"ok"', id="json-string"),
        pytest.param(b"null", id="json-null"),
        pytest.param(b'{"result": null}', id="null-result"),
        pytest.param(b'{"result": {}}', id="no-sync-info"),
        pytest.param(b'{"result": {"sync_info": []}}', id="sync-info-a-list"),
        pytest.param(b'{"result": {"sync_info": {"catching_up": false}}}', id="no-height"),
        pytest.param(status("twelve"), id="height-not-a-number"),
        pytest.param(status(None), id="height-null"),
        pytest.param(status("12", "false"), id="catching-up-a-string"),
        pytest.param(status("12", 0), id="catching-up-a-number"),
        pytest.param(b'{"jsonrpc": "2.0", "error": {"code": -32603}}', id="json-rpc-error"),
    ],
)
def test_parse_status_rejects_other_shapes(document: bytes) -> None:
    with pytest.raises(HealthError):
        parse_status(document)


# --- check_url against a real server ------------------------------------------------------


class StatusServer:
    """/status answers well, /catching-up too, /bad with non-JSON; the rest is 404."""

    def __init__(self) -> None:
        routes = {
            "/status": status("42", False),
            "/catching-up": status("3", True),
            "/bad": b"this is not json",
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = routes.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"


@pytest.fixture
def server() -> Iterator[StatusServer]:
    s = StatusServer()
    s.thread.start()
    try:
        yield s
    finally:
        s.server.shutdown()
        s.server.server_close()
        s.thread.join()


def test_check_url_reads_the_status(server: StatusServer) -> None:
    assert check_url(server.url("/status"), 5) == Health(42, False)


def test_check_url_reports_catching_up(server: StatusServer) -> None:
    assert check_url(server.url("/catching-up"), 5) == Health(3, True)


def test_check_url_names_an_http_error(server: StatusServer) -> None:
    with pytest.raises(HealthError, match="answered HTTP 404"):
        check_url(server.url("/nothing-here"), 5)


def test_check_url_rejects_an_answer_that_is_not_json(server: StatusServer) -> None:
    with pytest.raises(HealthError, match="not CometBFT-shaped"):
        check_url(server.url("/bad"), 5)


def test_check_url_reports_a_refused_connection() -> None:
    # A bound socket that does not listen refuses connections, and keeps the
    # port from being taken by anyone else meanwhile.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}/status"
        with pytest.raises(HealthError, match="did not answer") as caught:
            check_url(url, 5)
    assert url in str(caught.value)


def test_check_url_reports_a_server_that_does_not_answer_in_time() -> None:
    # Listening without ever accepting: the connection is made (backlog) but
    # no answer comes.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(HealthError, match="did not answer"):
            check_url(f"http://127.0.0.1:{port}/status", 0.2)


# --- check_command ----------------------------------------------------------------------------


def test_check_command_takes_a_last_line_number_as_the_height() -> None:
    assert check_command(["sh", "-c", "echo syncing; echo 1234"], 5, {"PATH": "/usr/bin:/bin"}) == Health(1234, False)


def test_check_command_without_a_number_has_no_height() -> None:
    assert check_command(["true"], 5, {"PATH": "/usr/bin:/bin"}) == Health(None, False)
    assert check_command(["echo", "fine"], 5, {"PATH": "/usr/bin:/bin"}) == Health(None, False)


def test_check_command_gets_the_given_environment() -> None:
    env = {"PATH": "/usr/bin:/bin", "HEIGHT": "77"}
    assert check_command(["sh", "-c", 'echo "$HEIGHT"'], 5, env) == Health(77, False)


def test_check_command_failure_names_the_status_and_last_error_line() -> None:
    with pytest.raises(HealthError, match="exited with 3: node is stuck"):
        check_command(["sh", "-c", "echo first >&2; echo node is stuck >&2; exit 3"], 5, {"PATH": "/usr/bin:/bin"})


def test_check_command_failure_without_output_names_the_status() -> None:
    with pytest.raises(HealthError, match=r"exited with 1$"):
        check_command(["false"], 5, {"PATH": "/usr/bin:/bin"})


def test_check_command_reports_a_missing_program() -> None:
    with pytest.raises(HealthError, match="not found"):
        check_command(["/nonexistent/health-check"], 5, {})


def test_check_command_reports_a_command_that_hangs() -> None:
    with pytest.raises(HealthError, match="did not finish"):
        check_command([sys.executable, "-c", "import time; time.sleep(30)"], 0.3, {})
