"""The backend named in signstate.toml and the inventory: checked field by field,
rendered by ``highlander render`` and read back by the daemon's own parser."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from highlander.commands.render import render_files
from highlander.inventory.model import InventoryError, parse
from highlander.signstate.backends.settings import EtcdSettings, PostgresSettings, SettingsError, read_secret
from highlander.signstate.config import ConfigError, parse_config

EXAMPLE = Path(__file__).parents[2] / "examples" / "trio.yml"
ETCD = {
    "endpoints": ["https://10.0.0.5:2379", "https://[fd00::6]:2379"],
    "ca_file": "/etc/etcd/ca.crt",
    "user": "highlander",
    "password_file": "/etc/highlander/etcd-password",
}
POSTGRESQL = {
    "host": "db.example.net",
    "dbname": "highlander",
    "user": "highlander",
    "ca_file": "/etc/pg/root.crt",
    "password_file": "/etc/highlander/pg-password",
}


def document(backend: str, section: dict[str, object], **extra: object) -> dict[str, object]:
    return {"backend": backend, "node": "node-a", "socket": "/run/s.sock", backend: section, **extra}


def test_the_trio_is_the_default() -> None:
    config = parse_config(
        {
            "node": "a",
            "listen": "127.0.0.1:1",
            "state_dir": "/s",
            "pki_dir": "/p",
            "socket": "/run/s.sock",
            "peers": {"b": "127.0.0.1:2", "c": "127.0.0.1:3"},
        }
    )
    assert config.backend == "trio" and config.store is None


def test_etcd_and_postgresql_need_no_trio_fields() -> None:
    etcd = parse_config(document("etcd", ETCD))
    assert etcd.backend == "etcd" and etcd.listen is None and etcd.peers == {}
    assert etcd.store == EtcdSettings(
        (("10.0.0.5", 2379), ("fd00::6", 2379)),
        Path("/etc/etcd/ca.crt"),
        user="highlander",
        password_file=Path("/etc/highlander/etcd-password"),
    )
    postgresql = parse_config(document("postgresql", POSTGRESQL)).store
    assert isinstance(postgresql, PostgresSettings) and postgresql.port == 5432 and postgresql.host == "db.example.net"


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (
            {"backend": "consul", "node": "a", "socket": "/run/s.sock"},
            "backend must be one of trio, etcd, postgresql, got 'consul'",
        ),
        ({"backend": "etcd", "node": "a", "socket": "/run/s.sock"}, "backend 'etcd' needs a [etcd] section"),
        (document("etcd", ETCD, listen="127.0.0.1:1"), "listen is a setting of the trio backend, not of etcd"),
        (document("etcd", ETCD, postgresql=POSTGRESQL), "[postgresql] is set but backend is 'etcd'"),
        (document("etcd", {**ETCD, "endpoints": ["http://10.0.0.5:2379"]}), "is not https://HOST:PORT"),
        (document("etcd", {**ETCD, "endpoints": []}), "etcd.endpoints must list"),
        (document("etcd", {k: v for k, v in ETCD.items() if k != "ca_file"}), "etcd.ca_file is required"),
        (document("etcd", {**ETCD, "password": "x"}), "a password is never written here"),
        (document("etcd", {k: v for k, v in ETCD.items() if k != "user"}), "user and password_file go together"),
        (document("etcd", {**ETCD, "cert_file": "/c.crt"}), "cert_file and key_file go together"),
        (document("etcd", {**ETCD, "prefix": "highlander"}), "etcd.prefix must start and end with '/'"),
        (document("postgresql", {**POSTGRESQL, "sslmode": "require"}), 'sslmode must be "verify-full"'),
        (document("postgresql", {**POSTGRESQL, "port": 0}), "postgresql.port must be a port from 1 to 65535"),
        (document("postgresql", {k: v for k, v in POSTGRESQL.items() if k != "host"}), "postgresql.host is required"),
        (
            document("postgresql", {k: v for k, v in POSTGRESQL.items() if k != "password_file"}),
            "set password_file or cert_file and key_file",
        ),
        (document("postgresql", {**POSTGRESQL, "password_file": "secret"}), "password_file must be an absolute path"),
    ],
)
def test_a_bad_backend_setting_is_named(doc: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(doc, "cfg.toml")
    assert words in str(error.value) and str(error.value).startswith("cfg.toml: ")


def test_a_secret_file_must_be_private(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\nignored\n")
    secret.chmod(0o600)
    assert read_secret(secret, "etcd password_file") == "s3cret"
    secret.chmod(0o640)
    assert read_secret(secret, "etcd password_file") == "s3cret"  # a group of readers may be intended
    for mode in (0o604, 0o620):
        secret.chmod(mode)
        with pytest.raises(SettingsError, match=f"is accessible to others \\(mode 0{mode:o}\\); chmod 600"):
            read_secret(secret, "etcd password_file")


def inventory(**signstate: object) -> dict[str, object]:
    document = yaml.safe_load(EXAMPLE.read_text())
    document.setdefault("signstate", {}).update(signstate)
    return document


@pytest.mark.parametrize(("backend", "section"), [("etcd", ETCD), ("postgresql", POSTGRESQL)])
def test_render_writes_the_backend_every_node_reads_back(backend: str, section: dict[str, object]) -> None:
    parsed = parse(inventory(backend=backend, **{backend: section}))
    files = [f for f in render_files(parsed) if str(f.relative).endswith("signstate.toml")]
    assert len(files) == 3
    for rendered in files:
        config = parse_config(tomllib.loads(rendered.text), rendered.relative)
        assert config.backend == backend and config.listen is None
        assert config.store == parse_config(document(backend, section)).store
        assert "listen" not in rendered.text and "[peers]" not in rendered.text


def test_an_inventory_backend_without_its_section_is_named() -> None:
    with pytest.raises(InventoryError) as error:
        parse(inventory(backend="postgresql"))
    assert "signstate.postgresql" in str(error.value)
