"""A stand-in for a blockchain node: a chain that grows and a status endpoint.

It answers ``GET /status`` the way CometBFT does (JSON-RPC envelope,
``result.sync_info.latest_block_height`` as a string, ``catching_up``), so
the ``validator`` agent can be exercised end to end without a real chain.
It reports ``catching_up`` for its first seconds, like a node that syncs
after a restart, and exits cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Chain:
    """Block height as a function of time since start."""

    def __init__(self, block_time: float, catch_up: float, network: str) -> None:
        self.block_time = block_time
        self.catch_up = catch_up
        self.network = network
        self.born = time.monotonic()

    def status(self) -> dict[str, object]:
        age = time.monotonic() - self.born
        return {
            "jsonrpc": "2.0",
            "id": -1,
            "result": {
                "node_info": {"network": self.network, "moniker": "highlander-demo"},
                "sync_info": {
                    "latest_block_height": str(1 + int(age / self.block_time)),
                    "catching_up": age < self.catch_up,
                },
            },
        }


def _handler(chain: Chain) -> type[BaseHTTPRequestHandler]:
    class StatusHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/status":
                self.send_error(404, "only /status is served")
                return
            body = json.dumps(chain.status()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one request per monitor would flood the log

    return StatusHandler


class _Server(ThreadingHTTPServer):
    # SO_REUSEPORT: a test holding the port (bound with SO_REUSEPORT, never listening, so nobody else can take
    # it) lets the chain listen there without first letting go of it.
    allow_reuse_port = True


def serve(host: str, port: int, block_time: float, catch_up: float, network: str) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = _Server((host, port), _handler(Chain(block_time, catch_up, network)))
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"demo chain {network} serving http://{host}:{port}/status", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    print("demo chain stopped", flush=True)
