"""The cluster PKI: mutual TLS between sign-state replicas.

One directory holds the cluster CA and the nodes' certificates::

    ca.key  ca.crt              init_ca()   the cluster CA (key 0600, cert 0644)
    <node>.key  <node>.crt      issue()     one node (key 0600, cert 0644)

Every replica trusts only ``ca.crt`` (never the system store) and presents its
own certificate, both ways: the server learns who connected with
:func:`peer_name` and checks it against its list of known peers; the client
checks that the server is the node it meant to reach (``check_hostname``).

Keys are ECDSA P-256 (signatures ECDSA-SHA256). Ed25519 works as well with
OpenSSL 3.0 under TLS 1.3 and is no faster on a handshake here; P-256 is the
one every TLS stack, hardware token and FIPS-mode OpenSSL accepts, so a
signer written in another language can speak to the replicas unchanged.

Files are written by the durable writer (:mod:`highlander.adapters.files`):
a failure leaves nothing half-written, and an existing CA is never
overwritten.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import ssl
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from highlander.adapters.files import write_file

CA_KEY = "ca.key"
CA_CERT = "ca.crt"
KEY_MODE = 0o600
CERT_MODE = 0o644

# How the CLI spells the fixes the error messages advise.
INIT_CA_COMMAND = "highlander signstate init-ca {directory} --cluster NAME"
ISSUE_COMMAND = "highlander signstate issue {directory} {node}"

# Certificates start an hour in the past, so a node whose clock lags a little
# behind the one that issued them still accepts them.
BACKDATE = datetime.timedelta(hours=1)
ORGANIZATION = "highlander"
CA_COMMON_NAME = "highlander sign-state CA"
MAX_NODE_NAME = 64  # the X.509 upper bound of a commonName
MAX_CLUSTER_NAME = 64  # the X.509 upper bound of an organizationName

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")


class PKIError(Exception):
    """A CA or node certificate is missing, unsafe or unusable; the message says how to fix it."""


@dataclass(frozen=True)
class CA:
    """The cluster CA in ``directory``."""

    directory: Path
    cluster: str
    cert_path: Path
    key_path: Path
    fingerprint: str  # SHA-256 of the DER certificate, colon-separated hex
    not_after: datetime.datetime


# -- names -------------------------------------------------------------------


def check_node_name(node: str) -> str:
    """Return ``node`` if it is a valid host name usable as a node name, else raise PKIError."""
    rule = (
        "a node name must be a valid host name: dot-separated labels of letters, digits and "
        f"hyphens, no label starting or ending with a hyphen, at most {MAX_NODE_NAME} characters"
    )
    if not isinstance(node, str) or not _HOST_NAME.match(node):
        raise PKIError(f"invalid node name {node!r}: {rule}")
    if len(node) > MAX_NODE_NAME:
        raise PKIError(f"invalid node name {node!r}: {len(node)} characters; {rule}")
    try:
        ipaddress.ip_address(node)
    except ValueError:
        pass
    else:
        raise PKIError(
            f"invalid node name {node!r}: it is an IP address; name the node by its host name "
            "and pass the address in addresses=(...)"
        )
    if node.lower() == Path(CA_KEY).stem:
        raise PKIError(f"invalid node name {node!r}: reserved for the CA's own files")
    return node


def _check_cluster_name(cluster: str) -> str:
    if (
        not isinstance(cluster, str)
        or not cluster.strip()
        or len(cluster) > MAX_CLUSTER_NAME
        or not cluster.isprintable()
    ):
        raise PKIError(
            f"invalid cluster name {cluster!r}: give 1 to {MAX_CLUSTER_NAME} printable characters "
            "(the corosync cluster_name is a good choice)"
        )
    return cluster


def _addresses(
    addresses: Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    if isinstance(addresses, str):
        addresses = [addresses]
    result: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for address in addresses:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raise PKIError(
                f"invalid address {address!r}: give IP addresses only (the node's host name "
                "is already in its certificate)"
            ) from None
        if parsed not in result:
            result.append(parsed)
    return result


def node_paths(directory: Path, node: str) -> tuple[Path, Path]:
    """The key and certificate paths of ``node`` in ``directory``."""
    check_node_name(node)
    directory = Path(directory)
    return directory / f"{node}.key", directory / f"{node}.crt"


# -- files -------------------------------------------------------------------


def _install(files: list[tuple[Path, bytes, int]], *, replace: bool = False) -> None:
    """Write every (path, data, mode) or none of them, each with the durable writer.

    Without ``replace`` a file that exists, or appeared meanwhile, is not
    clobbered: the error names it and the files already placed are removed.
    """
    placed: list[Path] = []
    try:
        for path, data, mode in files:
            try:
                write_file(path, data, mode=mode, replace=replace)
            except FileExistsError:
                raise PKIError(f"{path} appeared while it was being written; nothing was changed") from None
            placed.append(path)
    except BaseException:
        if not replace:
            for path in placed:
                path.unlink(missing_ok=True)
        raise


def _missing(path: Path, fix: str) -> PKIError:
    return PKIError(f"{path} does not exist; {fix}")


def _read_key(path: Path, fix: str):
    """Load a private key after checking that only its owner can access it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise _missing(path, fix) from None
    except OSError as e:
        raise PKIError(f"cannot read private key {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        _check_key_mode(path, os.fstat(f.fileno()))
        data = f.read()
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise PKIError(f"{path} is not an unencrypted PEM private key ({e}); {fix}") from None


def _check_key_mode(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise PKIError(f"private key {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise PKIError(
            f"private key {path} has mode {mode:04o}: users other than its owner can access it, "
            f"so it is refused; run `chmod 600 {path}` (and if others may have read it, treat the "
            "key as compromised and issue a new one)"
        )


def _read_cert(path: Path, fix: str) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _missing(path, fix) from None
    except OSError as e:
        raise PKIError(f"cannot read certificate {path}: {e.strerror}") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise PKIError(f"{path} is not a PEM certificate ({e}); {fix}") from None


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _public_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _not_after(cert: x509.Certificate) -> datetime.datetime:
    if hasattr(cert, "not_valid_after_utc"):  # cryptography >= 42
        return cert.not_valid_after_utc
    return cert.not_valid_after.replace(tzinfo=datetime.UTC)


def _not_before(cert: x509.Certificate) -> datetime.datetime:
    if hasattr(cert, "not_valid_before_utc"):
        return cert.not_valid_before_utc
    return cert.not_valid_before.replace(tzinfo=datetime.UTC)


def _key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _days(days: int, what: str) -> datetime.timedelta:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise PKIError(f"invalid validity for {what}: days={days!r}; give a whole number of days >= 1")
    return datetime.timedelta(days=days)


# -- the CA ------------------------------------------------------------------


def init_ca(directory: Path, cluster: str, *, days: int = 3650) -> CA:
    """Create the cluster CA (``ca.key`` 0600, ``ca.crt`` 0644) in ``directory``.

    Refuses to overwrite an existing CA: every node certificate it issued
    would stop being trusted.
    """
    directory = Path(directory)
    _check_cluster_name(cluster)
    lifetime = _days(days, "the CA")
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    for path in (key_path, cert_path):
        if path.exists() or path.is_symlink():
            raise PKIError(
                f"a cluster CA already exists in {directory} ({path} exists); refusing to overwrite "
                "it, since every node certificate it issued would stop being trusted. Use it to "
                f"issue certificates (`{ISSUE_COMMAND.format(directory=directory, node='NODE')}`), "
                f"or, to start over, remove {key_path} and {cert_path} and then re-issue every "
                "node's certificate"
            )
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)

    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster),
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    _install([(key_path, _pem_key(key), KEY_MODE), (cert_path, _pem_cert(cert), CERT_MODE)])
    return _ca(directory, cert)


def _ca(directory: Path, cert: x509.Certificate) -> CA:
    organization = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return CA(
        directory=directory,
        cluster=str(organization[0].value) if organization else "",
        cert_path=directory / CA_CERT,
        key_path=directory / CA_KEY,
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(":"),
        not_after=_not_after(cert),
    )


def _init_ca_fix(directory: Path) -> str:
    return f"run `{INIT_CA_COMMAND.format(directory=directory)}` first"


def _load_ca_cert(directory: Path) -> x509.Certificate:
    path = directory / CA_CERT
    fix = _init_ca_fix(directory)
    cert = _read_cert(path, fix)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PKIError(f"{path} is not a CA certificate; {fix}")
    if _not_after(cert) <= _now():
        raise PKIError(
            f"the cluster CA {path} expired on {_not_after(cert):%Y-%m-%d}; create a new CA "
            "(remove ca.key and ca.crt, run "
            f"`{INIT_CA_COMMAND.format(directory=directory)}`) and re-issue every node's certificate"
        )
    return cert


def load_ca(directory: Path) -> CA:
    """The CA in ``directory`` (its certificate only; the key is not read)."""
    directory = Path(directory)
    return _ca(directory, _load_ca_cert(directory))


# -- node certificates -------------------------------------------------------


def issue(
    directory: Path,
    node: str,
    *,
    addresses: Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
    days: int = 825,
    replace: bool = False,
) -> Path:
    """Issue ``<node>.key`` (0600) and ``<node>.crt`` signed by the CA in ``directory``.

    The certificate names the node in its commonName and as a DNS name, lists
    ``addresses`` as IP addresses and is good for both TLS server and client
    authentication. Its validity ends no later than the CA's. An existing
    key or certificate of the node is kept unless ``replace`` is true; a
    replacement renames the new key, then the new certificate, into place,
    so a context created in between fails with a PKIError (key and
    certificate do not match) and can simply be retried.
    Returns the certificate's path.
    """
    directory = Path(directory)
    key_path, cert_path = node_paths(directory, node)
    ips = _addresses(addresses)
    lifetime = _days(days, f"node {node}")
    fix = _init_ca_fix(directory)
    ca_cert = _load_ca_cert(directory)
    ca_key = _read_key(directory / CA_KEY, fix)
    if _public_der(ca_key.public_key()) != _public_der(ca_cert.public_key()):
        raise PKIError(
            f"{directory / CA_KEY} does not belong to {directory / CA_CERT}; restore the matching "
            "pair from the node where the CA was created"
        )
    if not replace:
        for path in (key_path, cert_path):
            if path.exists() or path.is_symlink():
                raise PKIError(
                    f"{path} already exists; refusing to overwrite node {node}'s key or "
                    "certificate. Remove both files (or pass replace=True) to issue new ones"
                )

    key = _new_key()
    now = _now()
    not_after = min(now + lifetime, _not_after(ca_cert))
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    organization = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[0].value)] if organization else []
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, node))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - BACKDATE, _not_before(ca_cert)))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(node)] + [x509.IPAddress(ip) for ip in ips]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _install(
        [(key_path, _pem_key(key), KEY_MODE), (cert_path, _pem_cert(cert), CERT_MODE)],
        replace=replace,
    )
    return cert_path


def _check_node_files(directory: Path, node: str, ca_cert: x509.Certificate) -> tuple[Path, Path]:
    """Check the node's files before OpenSSL loads them, so its errors come out readable."""
    key_path, cert_path = node_paths(directory, node)
    fix = f"run `{ISSUE_COMMAND.format(directory=directory, node=node)}`"
    try:
        st = key_path.lstat()
    except FileNotFoundError:
        raise _missing(key_path, fix) from None
    _check_key_mode(key_path, st)
    cert = _read_cert(cert_path, fix)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise PKIError(
            f"{cert_path} was not issued by the cluster CA {directory / CA_CERT} (was the CA "
            f"created again?); remove {key_path} and {cert_path} and {fix}"
        ) from None
    if _not_after(cert) <= _now():
        raise PKIError(
            f"{cert_path} expired on {_not_after(cert):%Y-%m-%d}; remove {key_path} and {cert_path} and {fix}"
        )
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if dns != [node]:
        raise PKIError(f"{cert_path} is not node {node}'s certificate (it names {dns}); {fix}")
    return key_path, cert_path


def _context(protocol: int, directory: Path, node: str) -> ssl.SSLContext:
    directory = Path(directory)
    check_node_name(node)
    ca_cert = _load_ca_cert(directory)
    ca_path = directory / CA_CERT
    mode = stat.S_IMODE(ca_path.stat().st_mode)
    if mode & 0o022:
        raise PKIError(
            f"{ca_path} has mode {mode:04o}: users other than its owner could replace the CA this "
            f"node trusts; run `chmod 644 {ca_path}`"
        )
    key_path, cert_path = _check_node_files(directory, node, ca_cert)

    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    # Only the cluster CA: never load_default_certs() or the system store.
    context.load_verify_locations(cafile=str(ca_path))
    try:
        context.load_cert_chain(certfile=str(cert_path), keyfile=str(key_path))
    except ssl.SSLError as e:
        raise PKIError(
            f"cannot use {cert_path} with {key_path} ({e.reason or e}); remove both and run "
            f"`{ISSUE_COMMAND.format(directory=directory, node=node)}`"
        ) from None
    return context


def server_context(directory: Path, node: str) -> ssl.SSLContext:
    """A TLS 1.3 server context for ``node`` that requires a client certificate from the cluster CA.

    Authenticating the client only proves that it belongs to the cluster:
    check :func:`peer_name` against the known peers after the handshake.
    """
    return _context(ssl.PROTOCOL_TLS_SERVER, directory, node)


def client_context(directory: Path, node: str) -> ssl.SSLContext:
    """A TLS 1.3 client context for ``node`` that presents its certificate and checks the server's.

    Wrap with ``server_hostname=<peer node name>``: the handshake fails unless
    the server's certificate, issued by the cluster CA, names that node.
    """
    context = _context(ssl.PROTOCOL_TLS_CLIENT, directory, node)
    context.check_hostname = True
    context.hostname_checks_common_name = False
    return context


def peer_name(ssl_socket) -> str:
    """The node name in the verified certificate of the peer of ``ssl_socket``.

    Works on an :class:`ssl.SSLSocket` or :class:`ssl.SSLObject` after the
    handshake. Raises PKIError if the peer's certificate was not verified.
    """
    cert = ssl_socket.getpeercert()
    if not cert:  # None: no certificate; {}: a certificate that was not verified
        raise PKIError("the peer presented no verified certificate; use server_context()/client_context()")
    dns = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    if len(dns) > 1:
        raise PKIError(f"the peer's certificate names several hosts {dns}; it is not a node certificate")
    if dns:
        name = dns[0]
    else:
        common = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
        if len(common) != 1:
            raise PKIError("the peer's certificate names no node")
        name = common[0]
    try:
        return check_node_name(name)
    except PKIError as e:
        raise PKIError(f"the peer's certificate does not name a node: {e}") from None
