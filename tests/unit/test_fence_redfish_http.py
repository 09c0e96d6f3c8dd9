"""The HTTPS adapter and the Redfish driver on it, against a scripted HTTPS server in this process.

sushy-emulator (tests/process/test_fence_redfish.py) is the real device;
it cannot show what these tests need: HTTP/1.1 keep-alive (werkzeug closes
every connection), answers that break the protocol (HTML, server errors with
Redfish messages, 403, foreign redirects, unknown power states, restricted
reset types) and a peer that drops an idle connection or never answers.
The server here answers from a table, on 127.0.0.1, with TLS from a CA made
per test, and records every request with the client port it came from.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from highlander.adapters import https
from highlander.fencing.agents.redfish import RedfishDriver
from highlander.fencing.driver import OFF, ON, DeviceFailure, LoginDenied, Unreachable
from highlander.lab.redfishsim import make_certificates

SYSTEM = "/redfish/v1/Systems/1"
TARGET = f"{SYSTEM}/Actions/ComputerSystem.Reset"


def redfish_tree(power: str = "On", allowed: list[str] | None = None) -> dict[tuple[str, str], Any]:
    action: dict[str, Any] = {"target": TARGET}
    if allowed is not None:
        action["ResetType@Redfish.AllowableValues"] = allowed
    return {
        ("GET", "/redfish/v1"): {"Systems": {"@odata.id": "/redfish/v1/Systems"}},
        ("GET", "/redfish/v1/Systems"): {"Members": [{"@odata.id": SYSTEM}]},
        ("GET", SYSTEM): {
            "Id": "1",
            "PowerState": power,
            "Actions": {"#ComputerSystem.Reset": action},
        },
        ("POST", TARGET): (204, {}, b""),
    }


class ScriptedBMC(ThreadingHTTPServer):
    """Answers ``routes[(method, path)]``: a JSON-able object (200) or (status, headers, body)."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.routes: dict[tuple[str, str], Any] = {}
        self.seen: list[tuple[str, str, int, dict[str, str], bytes]] = []
        self.drop_after_each = False  # close idle connections without saying so

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gives up on the handshake is part of some tests


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: ScriptedBMC

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, self.client_address[1], dict(self.headers), body))
        route = self.server.routes.get((self.command, self.path))
        if route is None:
            status, headers, data = 404, {"Content-Type": "application/json"}, b"{}"
        elif isinstance(route, tuple):
            status, headers, data = route
        else:
            status, headers = 200, {"Content-Type": "application/json"}
            data = json.dumps(route).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.server.drop_after_each:
            self.close_connection = True

    do_GET = do_POST = _answer


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """``server`` answering from a thread of this process; shut down and closed on the way out."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_certificates(tmp_path / "tls")


@pytest.fixture
def bmc(certificates: tuple[Path, Path, Path]) -> Iterator[ScriptedBMC]:
    _, cert, key = certificates
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ScriptedBMC(context)
    server.routes.update(redfish_tree())
    with serving(server):
        yield server


def driver(bmc: ScriptedBMC, ca: Path, **changes: Any) -> RedfishDriver:
    settings: dict[str, Any] = {
        "username": "admin",
        "password": "s3cret",
        "ssl_ca_file": str(ca),
        "timeout": 5,
    }
    settings.update(changes)
    return RedfishDriver("127.0.0.1", bmc.port, **settings)


def test_one_connection_basic_auth_and_force_off(
    bmc: ScriptedBMC, certificates: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    with driver(bmc, certificates[0]) as drv:
        assert drv.power_status(None) == ON
        drv.set_power(None, OFF)
        drv.set_power(None, ON)
        drv.reset(None)
    assert len({port for _, _, port, _, _ in bmc.seen}) == 1, "one persistent connection"
    posts = [(json.loads(body), headers) for method, _, _, headers, body in bmc.seen if method == "POST"]
    assert [body["ResetType"] for body, _ in posts] == ["ForceOff", "On", "ForceRestart"]
    token = base64.b64encode(b"admin:s3cret").decode()
    for _, _, _, headers, _ in bmc.seen:
        assert headers["Authorization"] == f"Basic {token}"
        assert headers["OData-Version"] == "4.0"
    assert all(h["Content-Type"] == "application/json" for _, h in posts)
    # The status read the system; the reset actions came from that same answer.
    assert [p for m, p, *_ in bmc.seen if m == "GET"].count(SYSTEM) == 1
    assert "s3cret" not in caplog.text and token not in caplog.text


def test_idle_connection_dropped_by_the_bmc_is_reopened(
    bmc: ScriptedBMC, certificates: tuple[Path, Path, Path]
) -> None:
    bmc.drop_after_each = True  # closes without "Connection: close"
    with driver(bmc, certificates[0]) as drv:
        assert drv.power_status(None) == ON
        drv.set_power(None, OFF)
    assert [m for m, *_ in bmc.seen].count("POST") == 1  # never sent twice
    assert len({port for _, _, port, _, _ in bmc.seen}) == len(bmc.seen)


def test_reset_type_fallback_and_refusal(bmc: ScriptedBMC, certificates: tuple[Path, Path, Path]) -> None:
    bmc.routes.update(redfish_tree(allowed=["On", "PowerCycle"]))
    with driver(bmc, certificates[0]) as drv:
        drv.reset(None)
        assert json.loads(bmc.seen[-1][4]) == {"ResetType": "PowerCycle"}
        with pytest.raises(DeviceFailure, match=r"does not allow ResetType ForceOff \(it allows On, PowerCycle\)"):
            drv.set_power(None, OFF)


@pytest.mark.parametrize(
    ("power", "message"),
    [(None, "reports no PowerState"), ("Sleeping", "PowerState 'Sleeping', not one of")],
)
def test_power_states_outside_redfish(
    bmc: ScriptedBMC, certificates: tuple[Path, Path, Path], power: str | None, message: str
) -> None:
    tree = redfish_tree()
    tree[("GET", SYSTEM)]["PowerState"] = power
    bmc.routes.update(tree)
    with driver(bmc, certificates[0]) as drv, pytest.raises(DeviceFailure, match=message):
        drv.power_status(None)


@pytest.mark.parametrize("power", ["PoweringOff", "PoweringOn", "Paused"])
def test_transitional_states_are_not_off(bmc: ScriptedBMC, certificates: tuple[Path, Path, Path], power: str) -> None:
    bmc.routes.update(redfish_tree(power=power))
    with driver(bmc, certificates[0]) as drv:
        assert drv.power_status(None) == ON


def test_answers_that_break_the_protocol(bmc: ScriptedBMC, certificates: tuple[Path, Path, Path]) -> None:
    ca = certificates[0]
    bmc.routes[("GET", "/redfish/v1/Systems")] = (200, {"Content-Type": "text/html"}, b"<html>")
    with pytest.raises(DeviceFailure, match=r"not JSON \(text/html, 6 bytes\)"), driver(bmc, ca):
        pass

    error = {
        "error": {
            "code": "Base.1.0.GeneralError",
            "message": "general",
            "@Message.ExtendedInfo": [{"Message": "The BMC is\nbusy."}],
        }
    }
    bmc.routes[("GET", "/redfish/v1/Systems")] = (503, {"Content-Type": "application/json"}, json.dumps(error).encode())
    with pytest.raises(DeviceFailure) as caught, driver(bmc, ca):
        pass
    assert str(caught.value).endswith("HTTP 503 Service Unavailable: The BMC is busy.")

    bmc.routes[("GET", "/redfish/v1/Systems")] = (403, {}, b"")
    with pytest.raises(LoginDenied, match="lacks the Redfish privilege Login"), driver(bmc, ca):
        pass

    bmc.routes[("GET", "/redfish/v1/Systems")] = {"Members": "all of them"}
    with pytest.raises(DeviceFailure, match="has no Members list"), driver(bmc, ca):
        pass

    bmc.routes[("GET", "/redfish/v1/Systems")] = {"Members": [{"id": SYSTEM}]}
    with pytest.raises(DeviceFailure, match="a member of /redfish/v1/Systems has no @odata.id"):
        with driver(bmc, ca):
            pass


def test_redirects(bmc: ScriptedBMC, certificates: tuple[Path, Path, Path]) -> None:
    ca = certificates[0]
    bmc.routes[("GET", "/redfish/v1/Systems/old")] = (307, {"Location": SYSTEM}, b"")
    with driver(bmc, ca, systems_uri="/redfish/v1/Systems/old") as drv:
        assert drv.power_status(None) == ON

    elsewhere = "https://192.0.2.1/redfish/v1/Systems/1"  # never contacted
    bmc.routes[("GET", "/redfish/v1/Systems/old")] = (302, {"Location": elsewhere}, b"")
    with pytest.raises(DeviceFailure, match="redirected to another server"):
        with driver(bmc, ca, systems_uri="/redfish/v1/Systems/old"):
            pass


def test_a_bmc_that_never_answers(certificates: tuple[Path, Path, Path]) -> None:
    with socket.socket() as listener:  # accepts (backlog) but never speaks TLS
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        drv = RedfishDriver("127.0.0.1", port, ssl_ca_file=str(certificates[0]), timeout=0.5)
        with pytest.raises(Unreachable, match=r"did not answer within 0.5 s \(login_timeout\)"), drv:
            pass


def test_plain_http_on_the_port(certificates: tuple[Path, Path, Path]) -> None:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as server:
        drv = RedfishDriver("127.0.0.1", server.server_address[1], ssl_ca_file=str(certificates[0]))
        with pytest.raises(Unreachable, match="TLS handshake with .* failed"), drv:
            pass


# -- the adapter on its own: generic errors, the caller words them -------------------------------


def test_the_adapter_keeps_status_and_body_and_never_shows_the_credentials(
    bmc: ScriptedBMC, certificates: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    client = https.JsonClient("127.0.0.1", bmc.port, ca_file=str(certificates[0]), username="admin", password="s3cret")
    try:
        assert client.request("GET", "/redfish/v1") == {"Systems": {"@odata.id": "/redfish/v1/Systems"}}
        with pytest.raises(https.StatusError) as caught:
            client.request("GET", "/nothing")
    finally:
        client.close()
    assert (caught.value.status, caught.value.body) == (404, b"{}")
    assert str(caught.value) == f"GET https://127.0.0.1:{bmc.port}/nothing: HTTP 404 Not Found"
    token = base64.b64encode(b"admin:s3cret").decode()
    assert [h["Authorization"] for _, _, _, h, _ in bmc.seen] == [f"Basic {token}"] * 2
    assert "s3cret" not in repr(client) + caplog.text and token not in repr(client) + caplog.text


def test_the_adapters_transport_errors(bmc: ScriptedBMC, tmp_path: Path) -> None:
    other_ca = make_certificates(tmp_path / "other")[0]
    client = https.JsonClient("127.0.0.1", bmc.port, ca_file=str(other_ca))
    with pytest.raises(https.CertificateRejected) as caught:
        client.request("GET", "/redfish/v1")
    assert caught.value.ca_file == str(other_ca) and str(other_ca) in str(caught.value)
    assert "ssl_" not in str(caught.value)  # the options are the agent's to name
    assert bmc.seen == []  # refused in the handshake: no request was sent
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        silent = https.JsonClient("127.0.0.1", listener.getsockname()[1], ca_file=str(other_ca), timeout=0.5)
        with pytest.raises(https.TimedOut, match=r"did not answer within 0\.5 s$"):
            silent.request("GET", "/")
    with pytest.raises(https.CaFileError, match="cannot load CA certificates from"):
        https.JsonClient("127.0.0.1", bmc.port, ca_file=str(tmp_path / "missing.pem"))
