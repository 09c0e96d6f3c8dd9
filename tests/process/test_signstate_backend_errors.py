"""Bad input to the etcd and PostgreSQL backends: one clear error each, nothing signed.

Wrong credentials, a password file others can read, an unreachable store,
etcd without a quorum, a PostgreSQL schema missing or of another version.
The daemons and servers are real processes, stopped by PID.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends_support import init
from harness import HIGHLANDER

from highlander.adapters.waiting import wait_until
from highlander.signstate.client import Refused, Session, SignerClient
from highlander.lab.stores import LocalEtcd, LocalPostgres, LocalStoreNodes
from highlander.lab.ports import free_ports
from highlander.signstate.register import HRS, KeyId

pytestmark = pytest.mark.signstate

KEY = KeyId("errors-1", "validator")


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[LocalEtcd]:
    cluster = LocalEtcd(tmp_path / "etcd")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    server = LocalPostgres(tmp_path / "postgres")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def serve_fails(workdir: Path, toml: str) -> str:
    """Start a daemon that must refuse to run; its error output."""
    nodes = LocalStoreNodes(workdir, toml)
    nodes.prepare()
    done = subprocess.run(
        [*HIGHLANDER, "signstate", "serve", "--config", str(nodes.config("node-a"))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert not nodes.socket("node-a").exists(), "a signer socket was opened"
    return done.stderr


def wrong_password(workdir: Path) -> Path:
    path = workdir / "wrong-password"
    path.write_text("not-the-password\n")
    path.chmod(0o600)
    return path


def test_etcd_wrong_password_is_one_clear_error(etcd: LocalEtcd, tmp_path: Path) -> None:
    error = serve_fails(tmp_path / "nodes", etcd.store_toml(wrong_password(tmp_path)))
    assert "etcd refused user 'highlander'" in error and "authentication failed" in error, error


def test_postgresql_wrong_password_is_one_clear_error(postgres: LocalPostgres, tmp_path: Path) -> None:
    error = serve_fails(tmp_path / "nodes", postgres.store_toml(wrong_password(tmp_path)))
    assert 'password authentication failed for user "highlander"' in error, error


@pytest.mark.parametrize("store", ["etcd", "postgresql"])
def test_a_password_file_others_can_read_is_refused(store: str, tmp_path: Path) -> None:
    readable = tmp_path / "password"
    readable.write_text("secret\n")
    readable.chmod(0o644)
    section = (
        (
            f'backend = "etcd"\n[etcd]\nendpoints = ["https://127.0.0.1:1"]\nca_file = "/nonexistent"\n'
            f'user = "u"\npassword_file = "{readable}"\n'
        )
        if store == "etcd"
        else (
            f'backend = "postgresql"\n[postgresql]\nhost = "127.0.0.1"\ndbname = "d"\nuser = "u"\n'
            f'ca_file = "/nonexistent"\npassword_file = "{readable}"\n'
        )
    )
    error = serve_fails(tmp_path / "nodes", section)
    assert f"{readable} is accessible to others (mode 0644); chmod 600 {readable}" in error, error


@pytest.fixture
def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalStoreNodes]:
    """Daemons configured for a store where nothing listens."""
    port = free_ports(1)[0]
    password = tmp_path / "password"
    password.write_text("secret\n")
    password.chmod(0o600)
    ca = Path(__file__)  # never read: nothing answers
    section = (
        (
            f'backend = "etcd"\n[etcd]\nendpoints = ["https://127.0.0.1:{port}"]\nca_file = "{ca}"\n'
            f'user = "u"\npassword_file = "{password}"\n'
        )
        if request.param == "etcd"
        else (
            f'backend = "postgresql"\n[postgresql]\nhost = "127.0.0.1"\nport = {port}\ndbname = "d"\n'
            f'user = "u"\nca_file = "{ca}"\npassword_file = "{password}"\n'
        )
    )
    nodes = LocalStoreNodes(tmp_path / "nodes", section)
    try:
        nodes.start("node-a")
        yield nodes
    finally:
        nodes.stop()


@pytest.mark.parametrize("unreachable", ["etcd", "postgresql"], indirect=True)
def test_an_unreachable_store_answers_no_quorum_and_nothing_is_signed(unreachable: LocalStoreNodes) -> None:
    with SignerClient(unreachable.socket("node-a"), timeout=10) as client:
        with pytest.raises(Refused) as refused:
            client.promote(KEY)
        assert refused.value.status == "NO_QUORUM" and "did not answer" in refused.value.detail
        assert "Connection refused" in refused.value.detail, refused.value.detail
        with pytest.raises(Refused) as refused:
            client.advance(KEY, 1, HRS(1, 0, 1), "ab")
        assert refused.value.status == "NO_QUORUM", refused.value


def test_etcd_without_quorum_answers_no_quorum_and_nothing_is_signed(etcd: LocalEtcd, tmp_path: Path) -> None:
    nodes = LocalStoreNodes(tmp_path / "nodes", etcd.store_toml(), timeout=1.0)
    try:
        nodes.start("node-a")
        with SignerClient(nodes.socket("node-a"), timeout=10) as client:
            session = client.promote(KEY)
            client.advance(KEY, session.epoch, HRS(1, 0, 1), "ab")
            for member in LocalEtcd.MEMBERS[1:]:
                etcd.end(member, signal.SIGKILL)
            for attempt in range(3):  # each to whichever member the daemon tries
                with pytest.raises(Refused) as refused:
                    client.advance(KEY, session.epoch, HRS(2 + attempt, 0, 1), "ab")
                assert refused.value.status == "NO_QUORUM", refused.value
            with pytest.raises(Refused) as refused:
                client.promote(KEY)
            assert refused.value.status == "NO_QUORUM"
            found = client.status(KEY)
            assert isinstance(found["etcd"], str) and "did not answer" in found["etcd"], found
            etcd.start()
            back = wait_until(lambda: _promoted(client), timeout=30, what="a promotion once etcd has its quorum back")
            assert back.hwm == HRS(1, 0, 1)  # nothing was accepted without the quorum
    finally:
        nodes.stop()


def _promoted(client: SignerClient) -> Session | None:
    try:
        return client.promote(KEY)
    except Refused as exc:
        if exc.status != "NO_QUORUM":
            raise
        return None


def test_a_postgresql_schema_missing_or_of_another_version_is_refused(postgres: LocalPostgres, tmp_path: Path) -> None:
    toml = postgres.store_toml()
    error = serve_fails(tmp_path / "missing", toml)
    assert (
        "the database has no sign-state schema: create it once with 'highlander signstate init "
        "--backend postgresql'" in error
    ), error
    nodes = LocalStoreNodes(tmp_path / "nodes", toml)
    nodes.prepare()
    created = init(nodes.config("node-a"), "postgresql")
    assert created.returncode == 0 and "created the sign-state schema, version 1" in created.stdout, created.stderr
    again = init(nodes.config("node-a"), "postgresql")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr
    postgres.admin("UPDATE highlander_signstate_schema SET version = 2", dbname="highlander")
    error = serve_fails(tmp_path / "newer", toml)
    assert "schema is version 2, this highlander uses 1: upgrade highlander on this node" in error, error
    refused = init(nodes.config("node-a"), "postgresql")
    assert refused.returncode != 0 and "newer than this highlander's 1" in refused.stderr, refused.stderr
    wrong = init(nodes.config("node-a"), "trio")
    assert wrong.returncode != 0 and "names backend 'postgresql', not 'trio'" in wrong.stderr, wrong.stderr


def test_import_raises_the_record_in_the_store(postgres: LocalPostgres, tmp_path: Path) -> None:
    nodes = LocalStoreNodes(tmp_path / "nodes", postgres.store_toml())
    nodes.prepare()
    assert init(nodes.config("node-a"), "postgresql").returncode == 0
    state = tmp_path / "priv_validator_state.json"
    state.write_text('{"height": "120", "round": 0, "step": 3}\n')
    done = subprocess.run(
        [
            *HIGHLANDER,
            "signstate",
            "import",
            "--config",
            str(nodes.config("node-a")),
            "--chain-id",
            KEY.chain_id,
            "--key-id",
            KEY.key_id,
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and '"height": 120' in done.stdout, done.stdout + done.stderr
    try:
        nodes.start("node-b")
        with SignerClient(nodes.socket("node-b")) as client:
            assert client.promote(KEY).hwm == HRS(120, 0, 3)
    finally:
        nodes.stop()


def other_ca(workdir: Path) -> Path:
    from highlander.signstate import pki

    pki.init_ca(workdir / "other-ca", "someone-else")
    return workdir / "other-ca" / "ca.crt"


def test_etcd_behind_a_certificate_of_another_ca_is_refused(etcd: LocalEtcd, tmp_path: Path) -> None:
    toml = etcd.store_toml().replace(str(etcd.ca.ca), str(other_ca(tmp_path)))
    error = serve_fails(tmp_path / "nodes", toml)
    assert "etcd TLS failed" in error and "certificate verify failed" in error, error


def test_postgresql_behind_a_certificate_of_another_ca_is_refused(postgres: LocalPostgres, tmp_path: Path) -> None:
    toml = postgres.store_toml().replace(str(postgres.ca.ca), str(other_ca(tmp_path)))
    error = serve_fails(tmp_path / "nodes", toml)
    assert "check user, password_file and ca_file" in error and "certificate verify failed" in error, error
