"""The cluster PKI: real certificates, real TLS 1.3 handshakes over loopback."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from highlander.signstate import pki
from highlander.signstate.pki import PKIError

TIMEOUT = 10


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    """A cluster CA with nodes alpha (also known by 127.0.0.1) and beta."""
    directory = tmp_path / "pki"
    pki.init_ca(directory, "trio")
    pki.issue(directory, "alpha", addresses=["127.0.0.1"])
    pki.issue(directory, "beta")
    return directory


@pytest.fixture
def other_dir(tmp_path: Path) -> Path:
    """ANOTHER cluster's CA, which also has a node called beta."""
    directory = tmp_path / "other"
    pki.init_ca(directory, "elsewhere")
    pki.issue(directory, "beta")
    return directory


class Server:
    """Accepts one TLS connection on 127.0.0.1 in a thread; records its outcome."""

    def __init__(self, context: ssl.SSLContext):
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.peer: str | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError as e:
            self.error = e
            return
        with conn:
            conn.settimeout(TIMEOUT)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.peer = pki.peer_name(tls)
                    assert tls.version() == "TLSv1.3"
                    tls.sendall(b"ok")
                    tls.recv(1)  # until the client closes
            except BaseException as e:  # noqa: BLE001 - recorded for the test to check
                self.error = e

    def close(self) -> None:
        self.listener.close()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(context: ssl.SSLContext) -> Server:
        server = Server(context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def connect(server: Server, context: ssl.SSLContext, name: str) -> tuple[str, bytes]:
    """Handshake and read the server's greeting: (the server's node name, what it sent)."""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        return pki.peer_name(tls), tls.recv(2)


def rejected_by_server(server: Server, context: ssl.SSLContext, name: str) -> BaseException:
    """Connect a client the server must refuse; return the server's error.

    Under TLS 1.3 the client's handshake completes before the server has
    checked the client's certificate, so the client learns of the refusal
    only when it reads: an alert (SSLError), a reset, or end of file.
    """
    try:
        _, greeting = connect(server, context, name)
    except (ssl.SSLError, ConnectionError):
        greeting = None
    assert greeting in (None, b"")
    server.thread.join(TIMEOUT)
    assert server.peer is None
    assert isinstance(server.error, ssl.SSLError), server.error
    return server.error


# -- handshakes --------------------------------------------------------------


def test_mutual_handshake_names_both_nodes(pki_dir, serve):
    server = serve(pki.server_context(pki_dir, "alpha"))
    assert connect(server, pki.client_context(pki_dir, "beta"), "alpha") == ("alpha", b"ok")
    server.thread.join(TIMEOUT)
    assert server.error is None
    assert server.peer == "beta"


def test_server_reachable_by_its_listed_address(pki_dir, serve):
    server = serve(pki.server_context(pki_dir, "alpha"))
    assert connect(server, pki.client_context(pki_dir, "beta"), "127.0.0.1") == ("alpha", b"ok")


def test_client_with_a_certificate_from_another_ca_is_rejected(pki_dir, other_dir, serve):
    server = serve(pki.server_context(pki_dir, "alpha"))
    # A client of the other cluster that does trust our CA, so it is the
    # server's check that has to stop it, not the client's own.
    intruder = pki.client_context(other_dir, "beta")
    intruder.load_verify_locations(cafile=str(pki_dir / "ca.crt"))
    error = rejected_by_server(server, intruder, "alpha")
    assert "certificate verify failed" in str(error) or "unknown ca" in str(error).lower()


def test_client_without_a_certificate_is_rejected(pki_dir, serve):
    server = serve(pki.server_context(pki_dir, "alpha"))
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(cafile=str(pki_dir / "ca.crt"))
    error = rejected_by_server(server, anonymous, "alpha")
    assert "certificate" in str(error).lower()


def test_client_expecting_another_node_fails(pki_dir, serve):
    pki.issue(pki_dir, "gamma")
    server = serve(pki.server_context(pki_dir, "alpha"))
    with pytest.raises(ssl.SSLCertVerificationError, match="gamma"):
        connect(server, pki.client_context(pki_dir, "beta"), "gamma")
    server.thread.join(TIMEOUT)
    assert server.peer is None


def test_client_does_not_trust_a_server_of_another_ca(pki_dir, other_dir, serve):
    server = serve(pki.server_context(other_dir, "beta"))
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(server, pki.client_context(pki_dir, "alpha"), "beta")


def test_contexts_trust_only_the_cluster_ca(pki_dir):
    for context in (pki.server_context(pki_dir, "alpha"), pki.client_context(pki_dir, "alpha")):
        assert context.minimum_version == ssl.TLSVersion.TLSv1_3
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("organizationName", "trio"),), (("commonName", "highlander sign-state CA"),))
        ]
    assert pki.client_context(pki_dir, "alpha").check_hostname


# -- certificates ------------------------------------------------------------


def test_ca_certificate(tmp_path):
    ca = pki.init_ca(tmp_path, "trio", days=30)
    cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    assert (ca.cluster, ca.key_path, ca.cert_path) == (
        "trio",
        tmp_path / "ca.key",
        tmp_path / "ca.crt",
    )
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert cert.issuer == cert.subject
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    lifetime = ca.not_after - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=29) < lifetime <= datetime.timedelta(days=30)
    assert pki.load_ca(tmp_path) == ca


def test_node_certificate(pki_dir):
    cert = x509.load_pem_x509_certificate((pki_dir / "alpha.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alpha"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["alpha"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_node_certificate_ends_with_the_ca(tmp_path):
    ca = pki.init_ca(tmp_path, "trio", days=10)
    cert = x509.load_pem_x509_certificate(pki.issue(tmp_path, "alpha", days=825).read_bytes())
    not_after = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42
    if not_after is None:
        not_after = cert.not_valid_after.replace(tzinfo=datetime.UTC)
    assert not_after == ca.not_after


def test_file_modes(tmp_path):
    old = os.umask(0o077)  # the modes must not depend on the umask
    try:
        pki.init_ca(tmp_path, "trio")
        assert pki.issue(tmp_path, "alpha") == tmp_path / "alpha.crt"
    finally:
        os.umask(old)
    assert mode(tmp_path / "ca.key") == 0o600
    assert mode(tmp_path / "ca.crt") == 0o644
    assert mode(tmp_path / "alpha.key") == 0o600
    assert mode(tmp_path / "alpha.crt") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alpha.crt",
        "alpha.key",
        "ca.crt",
        "ca.key",
    ]


# -- refusals ----------------------------------------------------------------


def test_refuses_to_overwrite_a_ca(pki_dir):
    before = {p.name: p.read_bytes() for p in pki_dir.iterdir()}
    with pytest.raises(PKIError, match=r"already exists.*ca\.key.*refusing to overwrite") as e:
        pki.init_ca(pki_dir, "trio")
    assert "remove" in str(e.value)
    (pki_dir / "ca.key").unlink()  # half a CA is still a CA
    with pytest.raises(PKIError, match=r"ca\.crt exists"):
        pki.init_ca(pki_dir, "trio")
    assert {p.name: p.read_bytes() for p in pki_dir.iterdir()} == {
        name: data for name, data in before.items() if name != "ca.key"
    }


def test_refuses_to_overwrite_a_node_unless_asked(pki_dir):
    old = (pki_dir / "beta.crt").read_bytes()
    with pytest.raises(PKIError, match=r"beta\.key already exists"):
        pki.issue(pki_dir, "beta")
    assert (pki_dir / "beta.crt").read_bytes() == old
    pki.issue(pki_dir, "beta", replace=True)
    assert (pki_dir / "beta.crt").read_bytes() != old
    pki.client_context(pki_dir, "beta")


def test_nothing_half_written_when_writing_fails(tmp_path, monkeypatch):
    real_link = os.link
    calls = []

    def link_once(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link_once)
    with pytest.raises(OSError, match="No space"):
        pki.init_ca(tmp_path, "trio")
    assert list(tmp_path.iterdir()) == []


def test_missing_ca_says_to_run_init_ca(tmp_path):
    with pytest.raises(
        PKIError,
        match=rf"{tmp_path}/ca\.crt does not exist.*init-ca {tmp_path} --cluster NAME` first",
    ):
        pki.issue(tmp_path, "alpha")
    with pytest.raises(PKIError, match="init-ca"):
        pki.server_context(tmp_path, "alpha")


def test_missing_node_certificate_says_to_issue_it(pki_dir):
    with pytest.raises(PKIError, match=r"gamma\.key does not exist.*issue .* gamma"):
        pki.client_context(pki_dir, "gamma")


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604])
def test_key_readable_by_others_is_refused(pki_dir, file_mode):
    key = pki_dir / "alpha.key"
    key.chmod(file_mode)
    message = rf"{key} has mode {file_mode:04o}.*chmod 600 {key}"
    with pytest.raises(PKIError, match=message):
        pki.server_context(pki_dir, "alpha")
    with pytest.raises(PKIError, match=message):
        pki.client_context(pki_dir, "alpha")


def test_ca_key_readable_by_others_is_refused(pki_dir):
    (pki_dir / "ca.key").chmod(0o644)
    with pytest.raises(PKIError, match=r"ca\.key has mode 0644.*chmod 600"):
        pki.issue(pki_dir, "gamma")
    assert not (pki_dir / "gamma.key").exists()


def test_certificate_of_another_ca_is_refused(pki_dir, other_dir):
    shutil.copy2(other_dir / "beta.key", pki_dir / "beta.key")
    shutil.copy2(other_dir / "beta.crt", pki_dir / "beta.crt")
    with pytest.raises(PKIError, match=r"beta\.crt was not issued by the cluster CA"):
        pki.server_context(pki_dir, "beta")


def test_key_of_another_node_is_refused(pki_dir):
    shutil.copy2(pki_dir / "alpha.key", pki_dir / "beta.key")
    with pytest.raises(PKIError, match=r"cannot use .*beta\.crt with .*beta\.key"):
        pki.client_context(pki_dir, "beta")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-alpha",
        "alpha-",
        "al_pha",
        "al pha",
        "alpha..beta",
        "alpha.",
        ".alpha",
        "a/b",
        "../x",
        "x" * 65,
        "10.0.0.1",
        "::1",
        "ca",
        "CA",
        "ünïcode",
    ],
)
def test_bad_node_name(pki_dir, name):
    with pytest.raises(PKIError, match="invalid node name"):
        pki.issue(pki_dir, name)
    with pytest.raises(PKIError, match="invalid node name"):
        pki.server_context(pki_dir, name)


@pytest.mark.parametrize("name", ["a", "node-1", "n1.example.org", "x" * 63, "Alpha"])
def test_good_node_name(name):
    assert pki.check_node_name(name) == name


def test_bad_address(pki_dir):
    with pytest.raises(PKIError, match="invalid address 'gamma.example'"):
        pki.issue(pki_dir, "gamma", addresses=["gamma.example"])
    assert not (pki_dir / "gamma.key").exists()


def test_bad_cluster_name(tmp_path):
    with pytest.raises(PKIError, match="invalid cluster name"):
        pki.init_ca(tmp_path, "")
    assert list(tmp_path.iterdir()) == []


def test_peer_name_requires_a_verified_certificate():
    class Unverified:
        def getpeercert(self):
            return {}

    with pytest.raises(PKIError, match="no verified certificate"):
        pki.peer_name(Unverified())
