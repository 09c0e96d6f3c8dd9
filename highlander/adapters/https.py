"""A JSON client for one HTTPS server: one persistent connection, TLS verified, one-line errors.

What a device API such as Redfish needs from HTTP, and no more: requests
go over one persistent TLS connection (reopened when the server closes it,
as some BMCs do after each answer, and a GET once more when an idle one was
dropped), every socket operation is bounded by ``timeout``, redirects are
followed only on the same origin (the credentials go with every request,
so never to another place), answers are capped at :data:`MAX_BODY`. Every
failure is an :class:`HttpsError` whose message is one line naming the
origin; a caller adds what its operator should change. The credentials are
only ever in the Authorization header: never in a message or a log record.

Built on the standard library's ``http.client`` and ``ssl``, not on requests,
httpx or urllib3 (urllib3 and requests are installed here, through
sushy-tools, for the tests): their pools, retries and redirect handling are
exactly what a fence agent must restrict (one connection, a retry only of an
idle GET, never a POST twice, no redirect off the origin), each of their
failures would have to be unwrapped again into one line, and they would be
a runtime dependency of an agent that must start in a bare environment
under Pacemaker, with about 30 ms more import time on every fencing run.

Imports of ``ssl``, ``http.client`` and ``socket`` happen when a client is
made, so a module that only declares an agent does not pay for them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import http.client
    import ssl

log = logging.getLogger(__name__)

DEFAULT_PORT = 443
MAX_BODY = 4 * 1024 * 1024  # a device's JSON document is a few kB; more is not an answer
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)


class HttpsError(Exception):
    """A request failed; ``str()`` is the one line that says where and why."""


class TransportError(HttpsError):
    """No answer: the server cannot be resolved, reached or trusted, or it went silent."""


class CertificateRejected(TransportError):
    """The server's certificate is not one the trusted CAs (``ca_file``, or the system's) vouch for."""

    def __init__(self, message: str, ca_file: str | None) -> None:
        super().__init__(message)
        self.ca_file = ca_file


class TimedOut(TransportError):
    """The server did not answer within the client's timeout."""


class ProtocolError(HttpsError):
    """The server answered, but not with HTTP and JSON as asked."""


class StatusError(HttpsError):
    """An HTTP error status (or a redirect that is not followed); the body is kept for the caller."""

    def __init__(self, message: str, status: int, body: bytes) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class CaFileError(HttpsError):
    """The CA certificates to verify the server with cannot be loaded."""

    def __init__(self, ca_file: str, reason: str) -> None:
        super().__init__(f"cannot load CA certificates from {ca_file} ({reason})")
        self.ca_file = ca_file
        self.reason = reason


def tls_context(ca_file: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """A client context: verified against ``ca_file`` (PEM) or the system's trust
    store; ``verify=False`` checks nothing (the caller's explicit choice)."""
    import ssl

    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise CaFileError(str(ca_file), reason(e)) from None


class JsonClient:
    """JSON requests to one origin (``https://host:port``) over one persistent connection.

    ``username`` and ``password`` (both given) are sent as HTTP Basic
    authentication with every request; ``headers`` go with every request too.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        ca_file: str | None = None,
        verify: bool = True,
        timeout: float = 5,
        username: str | None = None,
        password: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ca_file = ca_file
        self.timeout = timeout
        self._context = tls_context(ca_file, verify)
        self._headers = {"Accept": "application/json", **(headers or {})}
        if username is not None:
            import base64

            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._conn: http.client.HTTPSConnection | None = None

    def __repr__(self) -> str:  # never the credentials
        return f"JsonClient({self.origin})"

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def request(self, method: str, path: str, body: object = None) -> Any:
        """Send ``body`` (as JSON, if any) and return the parsed answer (None if empty).

        Redirects on the same origin are followed (for GET, or with 307/308
        for any method); a status of 300 or more is a :class:`StatusError`.
        """
        for _ in range(MAX_REDIRECTS + 1):
            status, status_reason, headers, raw = self._exchange(method, path, body)
            if status in REDIRECTS and (method == "GET" or status in (307, 308)):
                path = self._redirect(method, path, headers.get("Location"))
                continue
            if status >= 300:
                where = f"{method} {self.origin}{path}: HTTP {status} {status_reason}".rstrip()
                raise StatusError(where, status, raw)
            if not raw.strip():
                return None
            try:
                return json.loads(raw)
            except ValueError:
                kind = headers.get("Content-Type") or "no Content-Type"
                raise ProtocolError(
                    f"{method} {self.origin}{path}: the answer is not JSON ({kind}, {len(raw)} bytes)"
                ) from None
        raise ProtocolError(f"{method} {self.origin}{path}: more than {MAX_REDIRECTS} redirects")

    def close(self) -> None:
        """Close the connection; never raises."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as e:  # noqa: BLE001 - closing is a courtesy
                log.debug("closing the connection to %s: %s", self.origin, reason(e))

    def _redirect(self, method: str, path: str, location: str | None) -> str:
        if not location:
            raise ProtocolError(f"{method} {self.origin}{path}: a redirect without a Location")
        target = urlsplit(location)
        if target.scheme not in ("", "https") or (
            target.netloc and (target.hostname, target.port or DEFAULT_PORT) != (self.host, self.port)
        ):
            # The credentials go with every request: never to another place.
            raise ProtocolError(
                f"{method} {self.origin}{path}: redirected to another server ({location}); not followed"
            )
        new = target.path + (f"?{target.query}" if target.query else "")
        log.debug("%s %s redirected to %s", method, path, new)
        return new

    def _exchange(self, method: str, path: str, body: object) -> tuple[int, str, Any, bytes]:
        """One request and its whole answer; a dropped idle connection is reopened once."""
        import http.client

        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read(MAX_BODY + 1)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.close()
                if reused and attempt == 1 and method == "GET":
                    continue  # the server closed the idle connection: one fresh try
                raise TransportError(f"{self.origin} closed the connection ({reason(e)})") from None
            except OSError as e:
                self.close()
                raise self._transport_error(e) from None
            except http.client.HTTPException as e:
                self.close()
                raise ProtocolError(f"{method} {self.origin}{path}: not an HTTP answer ({type(e).__name__})") from None
            break
        log.debug("%s %s -> %d %s", method, path, response.status, response.reason)
        if len(raw) > MAX_BODY:
            self.close()
            raise ProtocolError(f"{method} {self.origin}{path}: the answer exceeds {MAX_BODY} bytes")
        if response.will_close:
            self.close()
        return response.status, response.reason, response.headers, raw

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is not None and _dropped(self._conn):
            log.debug("%s closed the idle connection; reconnecting", self.origin)
            self.close()
        if self._conn is None:
            import http.client

            conn = http.client.HTTPSConnection(self.host, self.port, context=self._context, timeout=self.timeout)
            try:
                conn.connect()
            except OSError as e:
                conn.close()
                raise self._transport_error(e) from None
            log.debug("connected to %s", self.origin)
            self._conn = conn
        return self._conn

    def _transport_error(self, e: OSError) -> TransportError:
        import socket
        import ssl

        if isinstance(e, ssl.SSLCertVerificationError):
            trust = f"the CA certificates in {self.ca_file}" if self.ca_file else "the system's trust store"
            return CertificateRejected(
                f"TLS: {self.origin} presented a certificate that {trust} does not accept ({e.verify_message})",
                self.ca_file,
            )
        if isinstance(e, ssl.SSLError):
            return TransportError(f"TLS handshake with {self.origin} failed ({reason(e)}): is it an HTTPS port?")
        if isinstance(e, TimeoutError):
            return TimedOut(f"{self.origin} did not answer within {self.timeout:g} s")
        if isinstance(e, ConnectionRefusedError):
            return TransportError(f"{self.origin} refused the connection: nothing listens on that port")
        if isinstance(e, socket.gaierror):
            return TransportError(f"cannot resolve {self.host}: {e.strerror}")
        return TransportError(f"cannot reach {self.origin}: {reason(e)}")


def _dropped(conn: http.client.HTTPSConnection) -> bool:
    """Whether the peer closed an idle connection (it would be readable: EOF)."""
    import select

    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def reason(e: BaseException) -> str:
    """An exception's reason, on one line."""
    text = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())
