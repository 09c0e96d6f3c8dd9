"""One signing key answering privval requests: FilePV's rule, then the
register, then the signature.

For every SignVote/SignProposal, under one lock per key (two connections
asking for the same height/round/step with different blocks — the way
Horcrux signed twice — get exactly one signature):

1. the chain id, the request's shape and its sign bytes are checked;
2. FilePV's rule against this signer's last signature decides: refuse,
   hand out the stored signature, or sign anew;
3. a new signature must be above the register's mark at promotion and
   within ``max_height_gap`` of the last mark;
4. the register advances (a majority of the trio, durable) — only then is
   the key used;
5. the new last signature is handed out, and saved durably right after by a
   thread of its own (only the newest: one not yet written when a newer
   comes is skipped).

Why the save may follow the answer, where FilePV saves first: FilePV's file
is its only guard, and here the register is the guard that accepted this
mark and digest before the key was used. A signer restarted before its file
caught up is promoted above the register's mark, which holds that signature:
it signs nothing more at that mark (a missed vote at worst). The file lets a
restarted signer hand out a stored signature again and refuse lower marks
before it even asks. One durable write less on the way to every signature.

An instance that is not promoted answers PubKey and Ping (so its node stays
up) and refuses to sign; one the register reports superseded (STALE_EPOCH)
refuses to sign until it is promoted again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from google.protobuf.message import Message

from highlander.privval import messages, schema, signbytes
from highlander.privval.key import ValidatorKey
from highlander.privval.rules import LastSigned, Refuse, Reuse, check_fresh, decide
from highlander.privval.state import Saver, StateFile
from highlander.signstate import formats
from highlander.signstate.client import Conflict, Refused, Session, Superseded
from highlander.signstate.register import HRS, KeyId

if TYPE_CHECKING:
    from highlander.adapters.metrics import PrivvalMetrics

log = logging.getLogger("highlander.privval")
SIGN_KINDS = {"sign_vote_request": "vote", "sign_proposal_request": "proposal"}
SUPERSEDED = "superseded: another signer was promoted in the register; this one no longer signs"


class Register(Protocol):
    """What the signer needs of the sign-state register (``SignerClient``)."""

    def promote(self, key: KeyId) -> Session: ...

    def advance(self, key: KeyId, epoch: int, hrs: HRS, digest: str) -> None: ...


class Refusal(Exception):
    """Why a request is not signed; sent to the node as a RemoteSignerError.
    ``quiet`` ones are expected (an unpromoted signer) and logged at debug level;
    ``result`` is what the metrics count it as (refused, conflict, superseded)."""

    def __init__(self, reason: str, quiet: bool = False, result: str = "refused") -> None:
        super().__init__(reason)
        self.quiet = quiet
        self.result = result


class Signer:
    """The requests of every node this signer is connected to, for one key."""

    def __init__(
        self,
        chain_id: str,
        key: ValidatorKey,
        key_id: KeyId,
        state: StateFile,
        connect_register: Callable[[], Register],
        max_height_gap: int = 100_000,
        metrics: PrivvalMetrics | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.key = key
        self.key_id = key_id
        self.state = state
        self.max_height_gap = max_height_gap
        self.metrics = metrics
        self._connect_register = connect_register
        self._register: Register | None = None
        self._lock = threading.Lock()
        self.last = state.load()
        self._saver = Saver(self.state, self.last, self.key_id)
        self.session: Session | None = None
        self.superseded = False

    # -- promotion ------------------------------------------------------------

    def _client(self) -> Register:
        if self._register is None:
            self._register = self._connect_register()
        return self._register

    def promote(self) -> Session:
        """Take a new epoch in the register; sign from now on strictly above
        the mark it returns. Raises ``Refused`` or ``ConnectionError``."""
        with self._lock:
            session = self._client().promote(self.key_id)
            self.session, self.superseded = session, False
        log.info("event=promoted key=%s epoch=%d mark=%s", self.key_id, session.epoch, session.hwm)
        return session

    def demote(self) -> None:
        """Stop signing; returns once no signature is being made."""
        with self._lock:
            self.session = None
        log.info("event=demoted key=%s", self.key_id)

    def may_sign(self) -> bool:
        """Promoted and not superseded: signing requests can succeed here."""
        return self.session is not None and not self.superseded

    # -- requests -------------------------------------------------------------

    def handle(self, request: Message, peer: str) -> Message:
        """The response to one request from the node at ``peer``."""
        kind = request.WhichOneof("sum")
        started = time.perf_counter()
        height = self._requested_height(request, kind)
        try:
            if kind == "ping_request":
                return messages.wrap("ping_response", schema.PingResponse())
            if kind == "pub_key_request":
                self._check_chain(request.pub_key_request.chain_id, "public key")
                return messages.pub_key_response(self.key.public)
            if kind == "sign_vote_request":
                response, result = self._sign_vote(request.sign_vote_request, peer)
            elif kind == "sign_proposal_request":
                response, result = self._sign_proposal(request.sign_proposal_request, peer)
            elif kind == "sign_bytes_request":
                raise Refusal("arbitrary bytes are never signed: they bypass the double-sign rule")
            else:
                # CometBFT's own signer answers an empty message to what it does not know.
                log.warning("event=unknown-request node=%s request=%s", peer, kind or "none")
                return schema.PrivvalMessage()
        except Refusal as refusal:
            level = logging.DEBUG if refusal.quiet else logging.WARNING
            log.log(level, "event=refused node=%s request=%s reason=%r", peer, kind, str(refusal))
            self._count(kind, refusal.result, started)
            return messages.refusal(kind, str(refusal))
        self._count(kind, result, started, height)
        return response

    def _requested_height(self, request: Message, kind: str | None) -> int | None:
        """The height a sign request asks for, reported to the metrics; None for other requests."""
        if kind == "sign_vote_request":
            height = request.sign_vote_request.vote.height
        elif kind == "sign_proposal_request":
            height = request.sign_proposal_request.proposal.height
        else:
            return None
        if self.metrics is not None:
            self.metrics.requested(height)
        return height

    def _count(self, kind: str | None, result: str, started: float, height: int | None = None) -> None:
        if self.metrics is not None and kind in SIGN_KINDS:
            self.metrics.signed(SIGN_KINDS[kind], result, started, height)

    def _check_chain(self, chain_id: str, what: str) -> None:
        if chain_id != self.chain_id:
            raise Refusal(f"{what} requested for chain {chain_id!r}; this signer serves {self.chain_id!r} only")

    def _sign_signable(self, chain_id: str, signable: Message, peer: str, what: str) -> str:
        """Sign a vote or proposal in place (signature, and the stored timestamp when
        reused); whether it was signed anew or resent."""
        self._check_chain(chain_id, what)
        schema.fill_non_nullable(signable)
        hrs_of, sign_bytes_of = (
            (signbytes.vote_hrs, signbytes.vote_sign_bytes)
            if what == "vote"
            else (signbytes.proposal_hrs, signbytes.proposal_sign_bytes)
        )
        try:
            hrs = hrs_of(signable)
        except signbytes.BadRequest as exc:
            raise Refusal(str(exc)) from None
        signature, timestamp, result = self._sign(hrs, sign_bytes_of(self.chain_id, signable), peer, what)
        signable.signature = signature
        if timestamp is not None:
            signable.timestamp.CopyFrom(timestamp)
        return result

    def _sign_vote(self, request: Message, peer: str) -> tuple[Message, str]:
        vote = request.vote
        result = self._sign_signable(request.chain_id, vote, peer, "vote")
        vote.ClearField("extension_signature")
        if signbytes.needs_extension_signature(vote) and not request.skip_extension_signing:
            # Made fresh each time, as FilePV does: it signs the application's
            # extension, not the consensus vote.
            vote.extension_signature = self.key.sign(signbytes.vote_extension_sign_bytes(self.chain_id, vote))
        return messages.wrap("signed_vote_response", schema.SignedVoteResponse(vote=vote)), result

    def _sign_proposal(self, request: Message, peer: str) -> tuple[Message, str]:
        result = self._sign_signable(request.chain_id, request.proposal, peer, "proposal")
        proposal = schema.SignedProposalResponse(proposal=request.proposal)
        return messages.wrap("signed_proposal_response", proposal), result

    def _sign(self, hrs: HRS, sign_bytes: bytes, peer: str, what: str) -> tuple[bytes, Message | None, str]:
        """The signature to hand out for ``sign_bytes`` at ``hrs``, the stored
        timestamp when it replaces the request's, and whether it was signed
        anew or resent; or a Refusal."""
        with self._lock:
            if self.superseded:
                raise Refusal(SUPERSEDED, quiet=True, result="superseded")
            session = self.session
            if session is None:
                raise Refusal("this signer is not promoted; it answers PubKey and Ping only", quiet=True)
            decision = decide(self.last, hrs, sign_bytes)
            if isinstance(decision, Refuse):
                # A conflict with this signer's own last signature is what two
                # nodes of one validator racing look like: refused, and logged
                # by handle(); ALARM is kept for the register's CONFLICT.
                raise Refusal(decision.reason)
            if isinstance(decision, Reuse):
                log.info("event=resent key=%s node=%s %s at=%s", self.key_id, peer, what, hrs)
                return decision.signature, decision.timestamp, "resent"
            problem = check_fresh(hrs, session.hwm, max(self.last.hrs, session.hwm), self.max_height_gap)
            if problem:
                raise Refusal(problem)
            self._advance(session, hrs, sign_bytes, peer, what)
            signature = self.key.sign(sign_bytes)
            signed = LastSigned(hrs, sign_bytes, signature)
            self.last = signed
            self._saver.submit(signed)
        log.info("event=signed key=%s node=%s %s at=%s", self.key_id, peer, what, hrs)
        return signature, None, "signed"

    def close(self) -> None:
        """Wait until the last signature is in the state file."""
        self._saver.close()

    def _advance(self, session: Session, hrs: HRS, sign_bytes: bytes, peer: str, what: str) -> None:
        digest = formats.digest_of(formats.SignState(hrs, signbytes=sign_bytes))
        try:
            self._client().advance(self.key_id, session.epoch, hrs, digest)
        except Superseded as exc:
            self.superseded = True
            log.error("event=superseded key=%s epoch=%d detail=%r: signing stops", self.key_id, session.epoch, str(exc))
            raise Refusal(SUPERSEDED, result="superseded") from None
        except Conflict:
            log.error("event=ALARM reason=register-conflict key=%s node=%s %s at=%s", self.key_id, peer, what, hrs)
            raise Refusal(
                f"the register holds a different signature at {hrs}: refusing a double sign", result="conflict"
            ) from None
        except Refused as exc:
            raise Refusal(f"the register refused {hrs}: {exc}") from None
        except (ConnectionError, OSError, ValueError) as exc:
            self._register = None  # connect again next time
            raise Refusal(f"the sign-state register did not answer: {exc}") from None
