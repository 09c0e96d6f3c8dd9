"""The register in PostgreSQL (``psycopg`` 3, asyncio).

One row per signing key in ``highlander_signstate``. A change is one
transaction: ``SELECT … FOR UPDATE`` locks the key's row, the register's
rule decides, an ``UPDATE`` writes the row only when the rule changed it,
and ``COMMIT`` returns once the change is durable: every session sets
``synchronous_commit = on`` (so with synchronous standbys the commit also
waits for them), and the server must run with ``fsync`` on, which
:meth:`PostgresBackend.start` checks.

Connections are TLS with ``sslmode=verify-full`` against the configured
root CA; the password is read from its file and handed to libpq, never
put on a command line or in a connection string that could be logged.

The schema has a version (``highlander_signstate_schema``). It is created
and migrated only by ``highlander signstate init`` (:func:`migrate`); the
daemon refuses a database without it or of another version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from highlander.signstate.backends import BackendError
from highlander.signstate.backends.external import Change, ExternalBackend, Unavailable
from highlander.signstate.backends.settings import PostgresSettings, SettingsError, client_password
from highlander.signstate.register import EMPTY, HRS, Ballot, KeyId, Record, Reply

log = logging.getLogger("highlander.signstate")
T = TypeVar("T")

SCHEMA_VERSION = 1
POOL = 24  # connections at most; each carries one transaction at a time

# Each version's statements, applied in order by migrate().
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE highlander_signstate (
            chain_id text NOT NULL,
            key_id text NOT NULL,
            counter bigint NOT NULL DEFAULT 0,
            owner text NOT NULL DEFAULT '',
            height bigint NOT NULL DEFAULT 0,
            round integer NOT NULL DEFAULT 0,
            step smallint NOT NULL DEFAULT 0,
            digest text NOT NULL DEFAULT '',
            PRIMARY KEY (chain_id, key_id))""",
    ),
}

SELECT = (
    "SELECT counter, owner, height, round, step, digest FROM highlander_signstate WHERE chain_id = %s AND key_id = %s"
)
UPDATE = (
    "UPDATE highlander_signstate SET counter = %s, owner = %s, height = %s, round = %s, step = %s, digest = %s "
    "WHERE chain_id = %s AND key_id = %s"
)
INSERT = "INSERT INTO highlander_signstate (chain_id, key_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"


class PostgresBackend(ExternalBackend):
    store_name = "postgresql"

    def __init__(self, node: str, settings: PostgresSettings, timeout: float) -> None:
        super().__init__(node, timeout)
        self.settings = settings
        self.where = f"{settings.host}:{settings.port}"
        self._password: str | None = None
        self._idle: list[Any] = []  # open connections not in use
        self._slots = asyncio.Semaphore(POOL)

    async def start(self) -> None:
        """Read the secrets; refuse wrong credentials, a missing or other schema, or a
        server without fsync. An unreachable server is not fatal: requests answer
        NO_QUORUM until it is back."""
        self._read_secrets()
        try:
            async with self._connection() as connection:
                await check_schema(connection)
        except Unavailable as exc:
            log.warning("event=store-unavailable store=postgresql reason=%r", str(exc))

    def _read_secrets(self) -> None:
        try:
            self._password = client_password(self.settings)
        except SettingsError as exc:
            raise BackendError(str(exc)) from None

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

    # --- connections ---

    async def connect(self) -> Any:
        """A new connection (TLS, verified; durable commits), or Unavailable / BackendError."""
        import psycopg

        s = self.settings
        options: dict[str, Any] = {
            "host": s.host,
            "port": s.port,
            "dbname": s.dbname,
            "user": s.user,
            "sslmode": "verify-full",
            "sslrootcert": str(s.ca_file),
            "connect_timeout": max(1, round(self.timeout)),
            "options": "-c synchronous_commit=on",
            "application_name": f"highlander-signstate {self.node}",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
            "tcp_user_timeout": int(self.timeout * 1000),
        }
        if self._password is not None:
            options["password"] = self._password
        if s.cert_file is not None:
            options.update(sslcert=str(s.cert_file), sslkey=str(s.key_file))
        try:
            return await asyncio.wait_for(psycopg.AsyncConnection.connect(**options), self.timeout)
        except asyncio.TimeoutError:
            raise Unavailable(f"{self.where}: no connection within {self.timeout:g} s") from None
        except psycopg.OperationalError as exc:
            text = " ".join(str(exc).split())
            if "authentication failed" in text or "certificate" in text or "does not exist" in text:
                raise BackendError(
                    f"postgresql {self.where}: {text} (check user, password_file and ca_file, and "
                    "that the database exists)"
                ) from None
            raise Unavailable(f"{self.where}: {text}") from None

    @asynccontextmanager
    async def _connection(self, fresh: bool = False) -> AsyncIterator[Any]:
        """A pooled connection (a new one if ``fresh``); one that failed in any way is
        closed, not reused."""
        import psycopg

        async with self._slots:
            connection = self._idle.pop() if self._idle and not fresh else await self.connect()
            try:
                yield connection
            except (psycopg.OperationalError, psycopg.InterfaceError, asyncio.TimeoutError, Unavailable) as exc:
                await _discard(connection)
                if isinstance(exc, Unavailable):
                    raise
                text = " ".join(str(exc).split()) or f"no answer within {self.timeout:g} s"
                raise Unavailable(f"{self.where}: {text}") from None
            except psycopg.Error as exc:
                await _discard(connection)
                raise BackendError(f"postgresql {self.where}: {' '.join(str(exc).split())}") from None
            except BaseException:
                await _discard(connection)
                raise
            self._idle.append(connection)

    async def _transaction(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)`` in one transaction, within ``timeout``. A pooled
        connection the server dropped (it restarted, or cut it) is found out by
        using it: then the work runs once more on a new connection, which is safe
        because the register's rule gives the same answer to the same request."""
        async with asyncio.timeout(self.timeout):
            for fresh in (False, True):
                pooled = bool(self._idle) and not fresh
                try:
                    async with self._connection(fresh) as connection, connection.transaction():
                        return await work(connection)
                except Unavailable:
                    if not pooled:
                        raise
        raise AssertionError("unreachable")

    # --- the store's operations ---

    async def _read(self, key: KeyId) -> Record:
        async def read(connection: Any) -> Record:
            return _record(await (await connection.execute(SELECT, key)).fetchone())

        return await self._guarded(self._transaction(read))

    async def _update(self, key: KeyId, change: Change) -> Reply:
        async def update(connection: Any) -> Reply:
            row = await (await connection.execute(SELECT + " FOR UPDATE", key)).fetchone()
            if row is None:
                await connection.execute(INSERT, key)
                row = await (await connection.execute(SELECT + " FOR UPDATE", key)).fetchone()
            record = _record(row)
            changed, reply = change(record)
            if changed != record:
                await connection.execute(UPDATE, (*changed.promised, *changed.hwm, changed.digest, *key))
            return reply

        return await self._guarded(self._transaction(update))

    async def _guarded(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except TimeoutError:
            raise Unavailable(f"{self.where}: no answer within {self.timeout:g} s") from None


def _record(row: tuple[Any, ...] | None) -> Record:
    if row is None:
        return EMPTY
    counter, owner, height, round_, step, digest = row
    return Record(Ballot(counter, owner), HRS(height, round_, step), digest)


async def _discard(connection: Any) -> None:
    try:
        await asyncio.wait_for(connection.close(), 1.0)
    except Exception:  # a broken connection may fail to close; it is dropped all the same
        pass


async def _version(connection: Any) -> int | None:
    """The schema version the database holds (None: no schema)."""
    found = await (await connection.execute("SELECT to_regclass('highlander_signstate_schema')")).fetchone()
    if found[0] is None:
        return None
    row = await (await connection.execute("SELECT version FROM highlander_signstate_schema")).fetchone()
    return None if row is None else int(row[0])


async def check_schema(connection: Any) -> None:
    """Refuse a database this version of highlander cannot use, and a server without fsync."""
    async with connection.transaction():
        version = await _version(connection)
        fsync = (await (await connection.execute("SELECT current_setting('fsync')")).fetchone())[0]
    if version is None:
        raise BackendError(
            "the database has no sign-state schema: create it once with "
            "'highlander signstate init --backend postgresql'"
        )
    if version != SCHEMA_VERSION:
        newer = version > SCHEMA_VERSION
        raise BackendError(
            f"the database's sign-state schema is version {version}, this highlander uses {SCHEMA_VERSION}: "
            + (
                "upgrade highlander on this node"
                if newer
                else "migrate it with 'highlander signstate init --backend postgresql'"
            )
        )
    if fsync != "on":
        raise BackendError(
            "the PostgreSQL server runs with fsync off: an acknowledged advance could be lost in a crash; turn fsync on"
        )


async def migrate(backend: PostgresBackend) -> str:
    """Create the schema, or bring an older one to :data:`SCHEMA_VERSION`; what was done."""
    backend._read_secrets()
    connection = await backend.connect()
    try:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext('highlander_signstate_schema'))")
            version = await _version(connection)
            if version is not None and version > SCHEMA_VERSION:
                raise BackendError(
                    f"the database's sign-state schema is version {version}, newer than this "
                    f"highlander's {SCHEMA_VERSION}: upgrade highlander"
                )
            if version == SCHEMA_VERSION:
                return f"the sign-state schema is at version {SCHEMA_VERSION}; nothing to do"
            if version is None:
                await connection.execute("CREATE TABLE highlander_signstate_schema (version integer NOT NULL)")
                await connection.execute("INSERT INTO highlander_signstate_schema VALUES (0)")
            for step in range((version or 0) + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    await connection.execute(statement)
            await connection.execute("UPDATE highlander_signstate_schema SET version = %s", (SCHEMA_VERSION,))
        return (
            f"created the sign-state schema, version {SCHEMA_VERSION}"
            if version is None
            else f"migrated the sign-state schema from version {version} to {SCHEMA_VERSION}"
        )
    finally:
        await connection.close()
