"""The register in etcd (v3 API through its gRPC gateway, with ``etcd3gw``).

One etcd key per signing key, ``<prefix><chain_id>/<key_id>``, holding the
record as JSON. A change is one transaction: *if the key's mod_revision is
still the one this node last saw, put the changed record (or nothing, when
the rule changed nothing), else return the current key*. etcd runs every
transaction through its Raft log, comparisons included, so the answer is
linearizable; when the comparison fails the transaction brought the current
record along and the rule is applied again to it. The common case (one
signer per key, on this node) is a single round trip.

etcd3gw is a blocking client (``requests`` underneath): calls run in a small
thread pool, each thread with its own HTTP session. ``timeout`` bounds every
call; a member that does not answer costs that call one timeout and the
thread moves on to the next endpoint. etcd without a quorum does not answer
(it times out or says so): the signer gets ``NO_QUORUM``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from highlander.signstate.backends import BackendError
from highlander.signstate.backends.external import ATTEMPTS, Change, ExternalBackend, Unavailable
from highlander.signstate.backends.settings import EtcdSettings, SettingsError, client_password
from highlander.signstate.register import EMPTY, KeyId, Record, Reply
from highlander.signstate.wire import WireError, loads, parse_record, record_document

log = logging.getLogger("highlander.signstate")

WORKERS = 16  # etcd calls in flight at once


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class EtcdBackend(ExternalBackend):
    store_name = "etcd"

    def __init__(self, node: str, settings: EtcdSettings, timeout: float) -> None:
        super().__init__(node, timeout)
        self.settings = settings
        self._password: str | None = None
        self._token: str | None = None
        self._lock = threading.Lock()
        self._endpoint = 0  # the endpoint new calls go to; moves on when one fails
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="etcd")
        # Per key, the record and mod_revision last seen: the next change assumes them.
        self._seen: dict[KeyId, tuple[Record, int]] = {}

    async def start(self) -> None:
        """Read the secrets and check that etcd takes our credentials (an unreachable
        etcd is not fatal: requests answer NO_QUORUM until it is back)."""
        try:
            self._password = client_password(self.settings)
        except SettingsError as exc:
            raise BackendError(str(exc)) from None
        try:
            await self._call(lambda client: self._post(client, "/maintenance/status", {}))
        except Unavailable as exc:
            log.warning("event=store-unavailable store=etcd reason=%r", str(exc))

    async def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # --- the store's operations ---

    def _key(self, key: KeyId) -> bytes:
        return f"{self.settings.prefix}{key.chain_id}/{key.key_id}".encode()

    async def _read(self, key: KeyId) -> Record:
        answer = await self._call(lambda client: self._post(client, "/kv/range", {"key": _b64(self._key(key))}))
        record, revision = self._decode(key, answer.get("kvs") or [])
        self._seen[key] = (record, revision)
        return record

    async def _update(self, key: KeyId, change: Change) -> Reply:
        name = _b64(self._key(key))
        record, revision = self._seen.get(key, (EMPTY, 0))
        for _ in range(ATTEMPTS):
            changed, reply = change(record)
            put = [{"request_put": {"key": name, "value": _b64(_encode(changed))}}]
            request: dict[str, Any] = {
                "compare": [{"key": name, "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}],
                "success": put if changed != record else [],
                "failure": [{"request_range": {"key": name}}],
            }
            answer = await self._call(lambda client: self._post(client, "/kv/txn", request))
            if answer.get("succeeded"):
                if changed != record:
                    revision = int(answer["header"]["revision"])
                self._seen[key] = (changed, revision)
                return reply
            found = (answer.get("responses") or [{}])[0].get("response_range", {}).get("kvs") or []
            record, revision = self._decode(key, found)
            self._seen[key] = (record, revision)
        raise Unavailable(f"{ATTEMPTS} conflicting changes of {key} in a row")

    def _decode(self, key: KeyId, kvs: list[dict[str, Any]]) -> tuple[Record, int]:
        if not kvs:
            return EMPTY, 0
        try:
            return parse_record(loads(base64.b64decode(kvs[0]["value"]))), int(kvs[0]["mod_revision"])
        except (WireError, KeyError, ValueError) as exc:
            raise BackendError(
                f"etcd key {self._key(key).decode()} does not hold a sign-state record ({exc}); "
                "nothing else may write under the prefix"
            ) from None

    # --- calls, in the thread pool ---

    async def _call(self, operation: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._blocking, operation)

    def _blocking(self, operation: Any) -> dict[str, Any]:
        """``operation(client)`` on this thread's client, with a new token once if ours expired."""
        from etcd3gw import exceptions

        for attempt in (1, 2):
            client = self._client()
            try:
                return operation(client)
            except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError) as exc:
                _refuse_tls(exc, client)
                self._next_endpoint(client)
                raise Unavailable(_reason(exc, client)) from None
            except exceptions.Etcd3Exception as exc:
                text = _reason(exc, client)
                if "invalid auth token" in text and attempt == 1:
                    self._authenticate(client, stale=self._token)
                    continue
                if "request timed out" in text or "no leader" in text or "leader changed" in text:
                    raise Unavailable(text) from None
                raise BackendError(f"etcd refused the request: {text}") from None
        raise AssertionError("unreachable")

    def _client(self) -> Any:
        import etcd3gw
        import requests

        endpoint = self._endpoint
        client = getattr(self._local, "client", None)
        if client is None or self._local.endpoint != endpoint:
            host, port = self.settings.endpoints[endpoint % len(self.settings.endpoints)]
            s = self.settings
            session = requests.Session()
            # Only our CA, never a proxy or CA bundle from the environment.
            session.trust_env = False
            session.verify = str(s.ca_file)
            if s.cert_file is not None:
                session.cert = (str(s.cert_file), str(s.key_file))
            client = etcd3gw.Etcd3Client(
                host=host, port=port, protocol="https", timeout=self.timeout, api_path="/v3/", session=session
            )
            self._local.client, self._local.endpoint = client, endpoint
        if self.settings.user and self._token is None:
            self._authenticate(client, stale=None)
        if self._token is not None:
            client.session.headers["Authorization"] = self._token
        return client

    def _next_endpoint(self, client: Any) -> None:
        with self._lock:
            if self._local.endpoint == self._endpoint:
                self._endpoint += 1
        log.warning("event=store-endpoint store=etcd failed=%s:%s", client.host, client.port)

    def _authenticate(self, client: Any, stale: str | None) -> None:
        """A token for our user (one for all threads; a stale one is replaced once)."""
        from etcd3gw import exceptions

        with self._lock:
            if self._token != stale:
                return  # another thread got a new one
            client.session.headers.pop("Authorization", None)  # etcd refuses a login that carries a stale token
            try:
                answer = client.post(
                    client.get_url("/auth/authenticate"), json={"name": self.settings.user, "password": self._password}
                )
            except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError) as exc:
                _refuse_tls(exc, client)
                raise Unavailable(_reason(exc, client)) from None
            except exceptions.Etcd3Exception as exc:
                raise BackendError(
                    f"etcd refused user {self.settings.user!r} ({_reason(exc, client)}); check "
                    f"user and {self.settings.password_file}"
                ) from None
            self._token = answer["token"]
        client.session.headers["Authorization"] = self._token

    @staticmethod
    def _post(client: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return client.post(client.get_url(path), json=body)


def _encode(record: Record) -> bytes:
    return json.dumps(record_document(record), separators=(",", ":")).encode()


def _refuse_tls(exc: Exception, client: Any) -> None:
    """A TLS failure is a configuration error, not an outage: say so (BackendError)."""
    text = _reason(exc, client)
    if "certificate" in text.lower():
        raise BackendError(f"etcd TLS failed ({text}): check ca_file, cert_file and key_file") from None


def _reason(exc: Exception, client: Any) -> str:
    """What etcd (or the connection to it) said, in one line, naming the endpoint."""
    text = str(getattr(exc, "detail_text", "") or exc)
    try:
        text = json.loads(text).get("error") or text
    except (ValueError, AttributeError):
        pass
    return f"{client.host}:{client.port}: {' '.join(text.split())[:300]}"
