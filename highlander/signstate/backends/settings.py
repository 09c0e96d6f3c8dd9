"""The settings of the external backends in ``signstate.toml``, checked field by field.

``backend = "etcd"`` or ``backend = "postgresql"`` names the store; its own
section says how to reach it::

    backend = "etcd"
    node = "node-a"
    socket = "/run/highlander/signstate.sock"

    [etcd]
    endpoints = ["https://10.0.0.5:2379", "https://10.0.0.6:2379", "https://10.0.0.7:2379"]
    ca_file = "/etc/highlander/etcd/ca.crt"
    cert_file = "/etc/highlander/etcd/node-a.crt"   # a client certificate, with key_file
    key_file = "/etc/highlander/etcd/node-a.key"
    user = "highlander"                             # etcd's own authentication, with password_file
    password_file = "/etc/highlander/etcd/password"
    prefix = "/highlander/signstate/"               # where the records live

    [postgresql]
    host = "db.example.net"
    port = 5432
    dbname = "highlander"
    user = "highlander"
    password_file = "/etc/highlander/postgresql/password"
    ca_file = "/etc/highlander/postgresql/root.crt" # TLS is always verify-full

Every connection is TLS with the server's certificate verified against
``ca_file``: the register is what stops a double sign, and a store reached
in clear text or through an unverified server is one anybody on the path
can rewrite. Secrets are named by file, never written into the toml (which
is readable by all); :func:`read_secret` refuses a file others can read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

BACKENDS = ("trio", "etcd", "postgresql")


class SettingsError(ValueError):
    """A backend section is unusable; the message names the field and the fix."""


class EtcdSettings(NamedTuple):
    endpoints: tuple[tuple[str, int], ...]  # (host, port), reached over https
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    user: str | None = None
    password_file: Path | None = None
    prefix: str = "/highlander/signstate/"


class PostgresSettings(NamedTuple):
    host: str
    dbname: str
    user: str
    ca_file: Path
    port: int = 5432
    password_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


Settings = EtcdSettings | PostgresSettings


def parse_backend(document: dict[str, object], source: str) -> tuple[str, Settings | None]:
    """The backend ``document`` names and its checked section (None for the trio)."""
    name = document.get("backend", "trio")
    if name not in BACKENDS:
        raise SettingsError(f"{source}: backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    for other in BACKENDS[1:]:
        if other != name and other in document:
            raise SettingsError(
                f"{source}: [{other}] is set but backend is {name!r}; remove the section or set backend = {other!r}"
            )
    if name == "trio":
        return "trio", None
    section = document.get(name)
    if not isinstance(section, dict):
        raise SettingsError(f"{source}: backend {name!r} needs a [{name}] section saying how to reach it")
    where = f"{source}: {name}"
    return name, (_etcd(section, where) if name == "etcd" else _postgresql(section, where))


def _known(section: dict[str, object], known: tuple[str, ...], where: str) -> None:
    if "password" in section:
        raise SettingsError(
            f"{where}: a password is never written here; put it in a file readable by root "
            "only and name that file with password_file"
        )
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _text(section: dict[str, object], name: str, where: str, default: str | None = None) -> str | None:
    value = section.get(name, default)
    if value is not None and (not isinstance(value, str) or not value or len(value) > 255 or not value.isprintable()):
        raise SettingsError(f"{where}.{name} must be a non-empty string of printable characters, got {value!r}")
    return value


def _required(section: dict[str, object], name: str, where: str) -> str:
    value = _text(section, name, where)
    if value is None:
        raise SettingsError(f"{where}.{name} is required")
    return value


def _file(section: dict[str, object], name: str, where: str) -> Path | None:
    value = section.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise SettingsError(f"{where}.{name} must be an absolute path, got {value!r}")
    return Path(value)


def _pairs(section: dict[str, object], where: str) -> tuple[Path | None, Path | None, str | None, Path | None]:
    """The client certificate and the user, each complete or absent."""
    cert, key = _file(section, "cert_file", where), _file(section, "key_file", where)
    if (cert is None) != (key is None):
        raise SettingsError(f"{where}: cert_file and key_file go together (a client certificate and its key)")
    user, password = _text(section, "user", where), _file(section, "password_file", where)
    return cert, key, user, password


def _etcd(section: dict[str, object], where: str) -> EtcdSettings:
    _known(section, ("endpoints", "ca_file", "cert_file", "key_file", "user", "password_file", "prefix"), where)
    endpoints = section.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        raise SettingsError(f'{where}.endpoints must list the cluster\'s client URLs, e.g. ["https://10.0.0.5:2379"]')
    parsed = tuple(_endpoint(url, f"{where}.endpoints") for url in endpoints)
    ca_file = _file(section, "ca_file", where)
    if ca_file is None:
        raise SettingsError(f"{where}.ca_file is required: the CA that signed the etcd servers' certificates")
    cert, key, user, password = _pairs(section, where)
    if (user is None) != (password is None):
        raise SettingsError(f"{where}: user and password_file go together (etcd's user authentication)")
    prefix = _text(section, "prefix", where, EtcdSettings._field_defaults["prefix"])
    assert prefix is not None
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise SettingsError(f"{where}.prefix must start and end with '/', got {prefix!r}")
    return EtcdSettings(parsed, ca_file, cert, key, user, password, prefix)


def _endpoint(url: object, where: str) -> tuple[str, int]:
    if not isinstance(url, str):
        raise SettingsError(f'{where}: expected "https://HOST:PORT", got {url!r}')
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "https" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise SettingsError(f"{where}: {url!r} is not https://HOST:PORT (etcd is reached over TLS only)")
    return parts.hostname, port


def _postgresql(section: dict[str, object], where: str) -> PostgresSettings:
    _known(
        section,
        ("host", "port", "dbname", "user", "password_file", "ca_file", "cert_file", "key_file", "sslmode"),
        where,
    )
    sslmode = section.get("sslmode", "verify-full")
    if sslmode != "verify-full":
        raise SettingsError(
            f'{where}.sslmode must be "verify-full" (TLS with the server\'s name verified), got {sslmode!r}'
        )
    port = section.get("port", 5432)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise SettingsError(f"{where}.port must be a port from 1 to 65535, got {port!r}")
    ca_file = _file(section, "ca_file", where)
    if ca_file is None:
        raise SettingsError(f"{where}.ca_file is required: the root CA that signed the server's certificate")
    cert, key, user, password = _pairs(section, where)
    if user is None:
        raise SettingsError(f"{where}.user is required")
    if password is None and cert is None:
        raise SettingsError(f"{where}: set password_file or cert_file and key_file (how the server knows us)")
    return PostgresSettings(
        _required(section, "host", where), _required(section, "dbname", where), user, ca_file, port, password, cert, key
    )


def _check_mode(path: Path, mode: int, what: str) -> None:
    if mode & (stat.S_IRWXO | stat.S_IWGRP):
        raise SettingsError(f"{what} {path} is accessible to others (mode {stat.S_IMODE(mode):04o}); chmod 600 {path}")


def read_secret(path: Path, what: str) -> str:
    """The first line of a secret file, refused when others may read or change it."""
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(4097)
    except OSError as exc:
        raise SettingsError(f"{what} {path}: cannot read: {exc.strerror}") from None
    _check_mode(path, mode, what)
    text = data.decode(errors="replace").split("\n", 1)[0].rstrip("\r")
    if not text or len(data) > 4096:
        raise SettingsError(f"{what} {path} must hold the secret on its first line (1 to 4096 bytes)")
    return text


def check_private(path: Path, what: str) -> None:
    """Refuse a private key file others may read or change."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SettingsError(f"{what} {path}: cannot read: {exc.strerror}") from None
    _check_mode(path, mode, what)


def client_password(settings: Settings) -> str | None:
    """The password the settings name (None: none), after checking that the
    secret files are private; SettingsError names the file and the fix."""
    name = "etcd" if isinstance(settings, EtcdSettings) else "postgresql"
    if settings.key_file is not None:
        check_private(settings.key_file, f"{name} key_file")
    if settings.password_file is None:
        return None
    return read_secret(settings.password_file, f"{name} password_file")
