"""The chain as the checker: what a CometBFT chain says of one validator.

After a drill iteration the chain itself is asked, over a node's RPC, for
every height of the iteration: the block (its time, its committed
``evidence``), the next block's ``last_commit`` (the signatures that
committed this height) and the validator set (whose order the signatures
follow). From that, for our validator's address:

- per height, our signature in the commit: ``committed`` (a vote for the
  block), ``nil`` (a vote for nothing), ``absent`` (no vote), or ``none``
  when we are not in the set;
- every piece of evidence the chain committed that names us: a
  ``DuplicateVoteEvidence`` is the chain's own proof of a double sign, and
  fails the drill;
- the missed blocks of a failover: the heights from the failure to the first
  one our signature commits again.

The parsing is pure (tests feed it JSON recorded from a real node); the one
adapter is :class:`CurlRpc`, JSON-RPC batches posted with ``curl`` on a host
that reaches the node (the lab's validator hosts, a real cluster's nodes).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from highlander.adapters.runner import Runs

# CometBFT's BlockIDFlag in a commit's signatures.
FLAGS = {1: "absent", 2: "committed", 3: "nil"}
DUPLICATE_VOTE = "tendermint/DuplicateVoteEvidence"
BATCH = 10  # requests per JSON-RPC batch (CometBFT's default max_request_batch_size)

Rpc = Callable[[Sequence[tuple[str, dict[str, str]]]], list[dict[str, Any]]]


class ChainError(RuntimeError):
    """The chain did not answer, or answered something that is not CometBFT's; the message says what."""


def parse_time(text: str) -> float:
    """CometBFT's RFC 3339 time with nanoseconds as a UNIX time."""
    whole, _, rest = text.rstrip("Z").partition(".")
    fraction = float("0." + rest) if rest else 0.0
    moment = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp() + fraction


@dataclass(frozen=True)
class Evidence:
    """A piece of evidence committed at ``height``: its ``kind`` and the
    validator it names, for a vote at ``vote_height``."""

    height: int
    kind: str
    validator: str
    vote_height: int
    vote_round: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "kind": self.kind,
            "validator": self.validator,
            "vote_height": self.vote_height,
            "vote_round": self.vote_round,
        }


@dataclass(frozen=True)
class Height:
    """One committed height as our validator saw it."""

    height: int
    time: float  # the block's time (BFT time, close to the wall clock)
    ours: str  # committed / nil / absent / none
    signed_at: float | None  # our signature's timestamp, when there is one
    evidence: tuple[Evidence, ...]  # every piece committed in this block

    def row(self) -> list[Any]:
        """``[height, time, ours]``: what the timeline draws."""
        return [self.height, round(self.time, 3), self.ours]


def parse_evidence(item: dict[str, Any], height: int) -> Evidence:
    """One entry of a block's ``evidence.evidence`` list."""
    kind = str(item.get("type", "?"))
    value = item.get("value", {})
    if kind == DUPLICATE_VOTE:
        vote = value["vote_a"]
        return Evidence(height, kind, str(vote["validator_address"]).upper(), int(vote["height"]), int(vote["round"]))
    attacked = value.get("byzantine_validators") or [{}]
    return Evidence(
        height,
        kind,
        str(attacked[0].get("address", "")).upper(),
        int(value.get("conflicting_block", {}).get("signed_header", {}).get("header", {}).get("height", 0) or 0),
        0,
    )


def our_signature(
    signatures: Sequence[dict[str, Any]], validators: Sequence[str], address: str
) -> tuple[str, float | None]:
    """Our flag and signature time in a commit: the signatures follow the
    validator set's order, and an absent one carries no address."""
    address = address.upper()
    if address not in validators:
        return "none", None
    index = validators.index(address)
    if index >= len(signatures):
        raise ChainError(f"a commit has {len(signatures)} signatures for {len(validators)} validators")
    signature = signatures[index]
    named = str(signature.get("validator_address") or "").upper()
    if named and named != address:
        raise ChainError(f"signature {index} of a commit is {named}'s, the validator set says {address}'s")
    flag = FLAGS.get(int(signature["block_id_flag"]), "absent")
    when = parse_time(signature["timestamp"]) if flag != "absent" else None
    return flag, when


def heights(blocks: dict[int, dict[str, Any]], validator_sets: dict[str, list[str]], address: str) -> list[Height]:
    """Every height whose next block is in ``blocks`` (height -> ``/block``'s
    result), with the validator set (validators_hash -> addresses in order)."""
    found = []
    for height in sorted(blocks):
        following = blocks.get(height + 1)
        if following is None:
            continue
        block = blocks[height]["block"]
        header = block["header"]
        commit = following["block"]["last_commit"]
        if int(commit["height"]) != height:
            raise ChainError(f"block {height + 1}'s last commit is for height {commit['height']}")
        ours, when = our_signature(commit["signatures"], validator_sets[header["validators_hash"]], address)
        evidence = tuple(parse_evidence(item, height) for item in block["evidence"]["evidence"] or [])
        found.append(Height(height, parse_time(header["time"]), ours, when, evidence))
    return found


@dataclass(frozen=True)
class Verdict:
    """The chain's account of our validator over ``heights``."""

    address: str
    heights: tuple[Height, ...]

    @property
    def evidence(self) -> list[Evidence]:
        """Every piece of evidence that names our validator: a double sign."""
        return [e for h in self.heights for e in h.evidence if e.validator == self.address.upper()]

    def count(self, flag: str) -> int:
        return sum(1 for h in self.heights if h.ours == flag)

    def to_dict(self) -> dict[str, Any]:
        first = self.heights[0].height if self.heights else None
        last = self.heights[-1].height if self.heights else None
        return {
            "address": self.address,
            "first_height": first,
            "last_height": last,
            "committed": self.count("committed"),
            "nil": self.count("nil"),
            "absent": self.count("absent"),
            "evidence": [e.to_dict() for e in self.evidence],
            "evidence_heights": sorted({e.height for e in self.evidence}),
        }


@dataclass(frozen=True)
class MissedBlocks:
    """From a failure to our validator's next committed signature."""

    since: float
    first_height: int | None  # the first height made after ``since``
    signed_height: int | None  # the first height from there that our signature commits
    missed: int | None  # heights from first_height up to (not including) signed_height
    absent: int  # of those, the ones without our vote at all (the rest: nil)

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_height": self.first_height,
            "signed_height": self.signed_height,
            "missed": self.missed,
            "absent": self.absent,
        }


def missed_blocks(found: Iterable[Height], since: float) -> MissedBlocks:
    """The heights made after ``since`` until our signature commits one
    (``missed`` None: it never did within what was read)."""
    after = [h for h in sorted(found, key=lambda h: h.height) if h.time > since]
    if not after:
        return MissedBlocks(since, None, None, None, 0)
    signed = next((h for h in after if h.ours == "committed"), None)
    window = [h for h in after if signed is None or h.height < signed.height]
    return MissedBlocks(
        since,
        after[0].height,
        signed.height if signed else None,
        None if signed is None else signed.height - after[0].height,
        sum(1 for h in window if h.ours == "absent"),
    )


class ChainReader:
    """Reads heights of a chain through ``rpc`` (a JSON-RPC batch caller)."""

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc

    def latest(self) -> int:
        (status,) = self.rpc([("status", {})])
        return int(status["sync_info"]["latest_block_height"])

    def verdict(self, address: str, first: int, last: int) -> Verdict:
        """Our validator over heights ``first`` .. ``last`` (``last`` below the
        latest height: its commit is in the next block)."""
        first = max(first, 1)
        wanted = list(range(first, last + 2))
        blocks: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start : start + BATCH]
            for height, result in zip(chunk, self.rpc([("block", {"height": str(h)}) for h in chunk])):
                blocks[height] = result
        sets: dict[str, list[str]] = {}
        for height in sorted(blocks):
            digest = blocks[height]["block"]["header"]["validators_hash"]
            if digest not in sets:
                (answer,) = self.rpc([("validators", {"height": str(height), "per_page": "100"})])
                sets[digest] = [str(v["address"]).upper() for v in answer["validators"]]
        return Verdict(address.upper(), tuple(heights(blocks, sets, address)))


@dataclass(frozen=True)
class ChainView:
    """Where a drill reads the chain, and which validator is ours there."""

    reader: ChainReader
    address: str


class CurlRpc:
    """JSON-RPC batches to ``url``, posted with ``curl`` by ``runner`` (which reaches the node)."""

    def __init__(self, runner: Runs, url: str = "http://127.0.0.1:26657", timeout: float = 30.0) -> None:
        self.runner = runner
        self.url = url
        self.timeout = timeout

    def __call__(self, requests: Sequence[tuple[str, dict[str, str]]]) -> list[dict[str, Any]]:
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "id": i + 1, "method": method, "params": params}
                for i, (method, params) in enumerate(requests)
            ]
        )
        done = self.runner.run(
            [
                "curl",
                "-sS",
                "--max-time",
                str(int(self.timeout)),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
                self.url,
            ],
            stdin=body,
            timeout=self.timeout + 5,
        )
        if not done.ok:
            raise ChainError(f"the chain's RPC at {self.url} did not answer: {(done.stderr or done.stdout).strip()}")
        return answers(done.stdout, len(requests), self.url)


def answers(text: str, count: int, url: str) -> list[dict[str, Any]]:
    """The results of a JSON-RPC batch, in request order; an error names the request."""
    try:
        replies = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChainError(f"{url} answered something that is not JSON: {text[:200]!r}") from exc
    if isinstance(replies, dict):
        if replies.get("id") is None and "error" in replies:
            raise ChainError(f"{url} refused the batch: {replies['error']}")
        replies = [replies]
    by_id = {reply.get("id"): reply for reply in replies}
    results = []
    for index in range(count):
        reply = by_id.get(index + 1)
        if reply is None or "result" not in reply:
            raise ChainError(f"{url}: request {index} of the batch failed: {(reply or {}).get('error')}")
        results.append(reply["result"])
    return results
