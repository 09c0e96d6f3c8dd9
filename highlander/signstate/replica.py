"""One replica: the register's rules applied to the durable store.

Every change is on disk before the reply is returned. Requests for one key
are serialised by a lock; different keys proceed in parallel. A key whose
record is damaged is refused (with the store's error) until an operator
restores it, instead of being treated as empty.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from highlander.signstate import register
from highlander.signstate.register import OK, KeyId, Record, Reply
from highlander.signstate.store import Store, StoreError
from highlander.signstate.wire import Request


class Replica:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._locks: defaultdict[KeyId, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._cache: dict[KeyId, Record] = {}

    def _lock(self, key: KeyId) -> threading.Lock:
        with self._guard:
            return self._locks[key]

    def record(self, key: KeyId) -> Record:
        """The current record (the caller holds the key's lock)."""
        if key not in self._cache:
            self._cache[key] = self.store.load(key)
        return self._cache[key]

    def handle(self, request: Request) -> Reply:
        """Apply one request; raises StoreError when the record is unusable."""
        with self._lock(request.key):
            current = self.record(request.key)
            if request.op == "promise":
                updated, reply = register.promise(current, request.epoch)
            elif request.op == "advance":
                updated, reply = register.advance(current, request.epoch, request.hrs, request.digest)
            else:
                return Reply(OK, current)
            if updated != current:
                self.store.save(request.key, updated)  # durable before anyone hears of it
                self._cache[request.key] = updated
            return reply

    def restore(self, key: KeyId, record: Record) -> Record:
        """Raise ``key``'s record to at least ``record`` (import); never lowers it.

        This is also the repair of a damaged record: it is replaced by the
        imported one, taken from a healthy replica or the signer's state file.
        """
        with self._lock(key):
            try:
                current = self.record(key)
            except StoreError:
                current = register.EMPTY
            if current.hwm == record.hwm and current.digest != record.digest and current.digest:
                raise StoreError(
                    f"{key}: imported mark {record.hwm} has another digest than the stored one: "
                    "two different signatures at one height/round/step; investigate before importing"
                )
            hwm, digest = max((current.hwm, current.digest), (record.hwm, record.digest))
            merged = Record(max(current.promised_epoch, record.promised_epoch), hwm, digest)
            if merged != current:
                self.store.save(key, merged)
                self._cache[key] = merged
            return merged
