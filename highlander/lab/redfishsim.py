"""A Redfish BMC on loopback: sushy-tools' ``sushy-emulator`` with its fake systems driver.

Nobody here wrote the emulator (OpenStack's sushy-tools): the Redfish agent
and Debian's ``fence_redfish`` are checked against the same device. This
module only configures it, starts it, reads a system's power state for the
tests and stops it, by PID.

What the emulator is given (all of it in ``workdir``)::

    emulator.conf   its configuration, a Python file read by Flask (0600):
                    SUSHY_EMULATOR_FAKE_DRIVER = True  (no libvirt, no OpenStack)
                    SUSHY_EMULATOR_FAKE_SYSTEMS        the systems and their power
                    SUSHY_EMULATOR_STATE_DIR           its sqlite state, per run
                    SUSHY_EMULATOR_LISTEN_IP/_PORT     127.0.0.1:<port>
                    SUSHY_EMULATOR_SSL_CERT/_KEY       TLS
                    SUSHY_EMULATOR_AUTH_FILE           basic auth
    htpasswd        ``user:<bcrypt hash>`` (0600); the emulator accepts only
                    bcrypt ($2a$, $2b$, $2y$), no MD5/SHA/crypt entries
    ca.crt          a self-signed CA made here (0644): clients verify with it
    server.crt      the emulator's certificate, for IP 127.0.0.1 and localhost
    server.key      its key (0600); the CA's key is never written anywhere
    emulator.log    its output, with werkzeug's access log (one line a request)

The fake driver behaves like hardware: a power change is applied 1 to 11 s
(chosen at random) after it was asked for, and ``ForceRestart`` reads Off
until then. Its service root (``/redfish/v1``) answers without credentials,
as the Redfish specification wants; everything below it needs them.

The password never appears on a command line, in the environment, in the
configuration or in the log: only its bcrypt hash is written, to a 0600 file.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from highlander.adapters.waiting import wait_until
from highlander.lab.ports import free_ports

LOOPBACK = "127.0.0.1"
ROOT = "/redfish/v1"
POWER_STATES = ("On", "Off")

# The emulator checks the bcrypt hash on every request. The minimum cost
# (2^4 rounds, ~1 ms) keeps a test's many requests cheap; it protects a
# throw-away test password in a 0600 file, nothing else.
BCRYPT_ROUNDS = 4

# werkzeug's access log: 127.0.0.1 - - [date] "GET /redfish/v1/ HTTP/1.1" 200 -
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours the lines of 4xx and 5xx answers


class SimulatorError(RuntimeError):
    """The emulator could not be set up, started or read."""


@dataclass(frozen=True)
class FakeSystem:
    """One ComputerSystem of the fake driver. Its Redfish Id is ``uuid``."""

    name: str
    power_state: str = "On"
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def uri(self) -> str:
        return f"{ROOT}/Systems/{self.uuid}"


@dataclass(frozen=True)
class Request:
    """One line of the emulator's access log."""

    method: str
    path: str
    status: int


def emulator_program() -> str:
    """``sushy-emulator`` of the environment this Python runs in (the venv)."""
    beside = Path(sys.executable).parent / "sushy-emulator"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("sushy-emulator")
    if found is None:
        raise SimulatorError("sushy-emulator is not installed; install the test extra: pip install '.[test]'")
    return found


# -- TLS ---------------------------------------------------------------------


def make_certificates(directory: Path, *, host: str = LOOPBACK) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate it signed for ``host`` and localhost.

    Returns (ca.crt, server.crt, server.key); the key is 0600 and the CA's
    key stays in memory only, so nothing else can ever be signed with it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "highlander test BMC CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    ca_path, cert_path, key_path = (
        directory / "ca.crt",
        directory / "server.crt",
        directory / "server.key",
    )
    _write(ca_path, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    return ca_path, cert_path, key_path


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start: a secret is never readable by others."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # the umask plays no part
        f.write(data)


def htpasswd_line(username: str, password: str) -> str:
    """An Apache htpasswd entry with a bcrypt hash, the only kind sushy-emulator accepts."""
    import bcrypt

    if ":" in username or "\n" in username:
        raise SimulatorError(f"user name {username!r}: no ':' or newline allowed")
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS))
    return f"{username}:{digest.decode()}\n"


# -- the emulator ------------------------------------------------------------


class RedfishSimulator:
    """sushy-emulator on 127.0.0.1 with TLS, basic auth and fake ``systems``.

    ``password`` defaults to a fresh random one. :meth:`stop` it whatever
    happens (a fixture's ``finally``); it is idempotent.
    """

    def __init__(
        self,
        workdir: Path,
        systems: tuple[FakeSystem, ...] | list[FakeSystem] = (FakeSystem("node-a"),),
        *,
        username: str = "admin",
        password: str | None = None,
        port: int | None = None,
    ) -> None:
        if not systems:
            raise SimulatorError("the emulator needs at least one system")
        for system in systems:
            if system.power_state not in POWER_STATES:
                raise SimulatorError(f"{system.name}: power_state must be one of {POWER_STATES}")
        self.workdir = Path(workdir)
        self.systems = tuple(systems)
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.port = port or free_ports(1)[0]
        self.host = LOOPBACK
        self.ca_file = self.workdir / "ca.crt"
        self.config_file = self.workdir / "emulator.conf"
        self.auth_file = self.workdir / "htpasswd"
        self.log_file = self.workdir / "emulator.log"
        self.state_dir = self.workdir / "state"
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:  # never the password
        return f"RedfishSimulator({self.host}:{self.port}, {[s.name for s in self.systems]})"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def system(self, name: str) -> FakeSystem:
        for system in self.systems:
            if system.name == name:
                return system
        raise KeyError(name)

    # -- files

    def prepare(self) -> None:
        """Certificates, the htpasswd file and the configuration."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        _, cert, key = make_certificates(self.workdir, host=self.host)
        _write(self.auth_file, htpasswd_line(self.username, self.password).encode(), 0o600)
        systems = [
            {
                "uuid": s.uuid,
                "name": s.name,
                "power_state": s.power_state,
                "external_notifier": False,
                "nics": [{"mac": _mac(i), "ip": f"127.0.0.{i + 10}"}],
            }
            for i, s in enumerate(self.systems)
        ]
        settings = {
            "SUSHY_EMULATOR_LISTEN_IP": self.host,
            "SUSHY_EMULATOR_LISTEN_PORT": self.port,
            "SUSHY_EMULATOR_SSL_CERT": str(cert),
            "SUSHY_EMULATOR_SSL_KEY": str(key),
            "SUSHY_EMULATOR_AUTH_FILE": str(self.auth_file),
            "SUSHY_EMULATOR_FAKE_DRIVER": True,
            "SUSHY_EMULATOR_FAKE_SYSTEMS": systems,
            "SUSHY_EMULATOR_STATE_DIR": str(self.state_dir),
        }
        # Flask reads the file as Python: repr() of plain data is Python literal syntax.
        text = "".join(f"{name} = {value!r}\n" for name, value in settings.items())
        _write(self.config_file, text.encode(), 0o600)

    # -- process

    def start(self, *, timeout: float = 30) -> None:
        """Start the emulator and wait (at most ``timeout`` s) until it answers over TLS."""
        if self.process is not None and self.process.poll() is None:
            return
        self.prepare()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",  # the access log reaches the file at once
        }
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [emulator_program(), "--config", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                env=env,
            )
        try:
            wait_until(self._answers, timeout=timeout, what=f"sushy-emulator on {self.host}:{self.port}")
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise SimulatorError(f"sushy-emulator exited with {code}: {self.log_tail()}")
        try:
            status, _ = self.request("GET", ROOT, auth=False, timeout=2)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200

    def stop(self, *, timeout: float = 10) -> None:
        """SIGTERM (SIGKILL after ``timeout`` s) by PID; idempotent."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> RedfishSimulator:  # noqa: PYI034
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- Redfish, for the tests

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this emulator's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        auth: bool = True,
        timeout: float = 10,
    ) -> tuple[int, object]:
        """One request on a fresh connection: (status, decoded JSON or None)."""
        headers = {"Accept": "application/json"}
        if auth:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ssl_context(), timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        return response.status, decoded

    def power_state(self, name: str | None = None) -> str:
        """The system's ``PowerState`` as Redfish reports it (first system by default)."""
        system = self.system(name) if name else self.systems[0]
        status, data = self.request("GET", system.uri)
        if status != 200 or not isinstance(data, dict) or "PowerState" not in data:
            raise SimulatorError(f"GET {system.uri}: HTTP {status}: {data!r}")
        return str(data["PowerState"])

    def reset(self, reset_type: str, name: str | None = None) -> None:
        """POST ``ComputerSystem.Reset`` (the change lands 1 to 11 s later)."""
        system = self.system(name) if name else self.systems[0]
        target = f"{system.uri}/Actions/ComputerSystem.Reset"
        status, data = self.request("POST", target, {"ResetType": reset_type})
        if status >= 300:
            raise SimulatorError(f"POST {target}: HTTP {status}: {data!r}")

    def wait_power(self, state: str, name: str | None = None, *, timeout: float = 30) -> None:
        """Wait until the system reports ``state`` (bounded: the fake driver needs up to 11 s)."""
        wait_until(
            lambda: self.power_state(name) == state,
            timeout=timeout,
            what=f"{name or self.systems[0].name} to be {state}",
            interval=0.5,
        )

    def set_power(self, state: str, name: str | None = None, *, timeout: float = 30) -> None:
        """Bring a system to ``state`` ("On"/"Off") and wait until it is there."""
        if self.power_state(name) != state:
            self.reset("On" if state == "On" else "ForceOff", name)
            self.wait_power(state, name, timeout=timeout)

    # -- the access log

    def requests(self) -> list[Request]:
        """Every request the emulator has logged so far, oldest first."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [
            Request(m["method"], m["path"], int(m["status"]))
            for m in (_ACCESS.search(_COLOUR.sub("", line)) for line in text.splitlines())
            if m
        ]

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _mac(index: int) -> str:
    return f"52:54:00:00:00:{index:02x}"
