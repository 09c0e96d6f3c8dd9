"""A stand-in for CometBFT's FilePV: signs on its own, step after step.

Like FilePV it loads its last signed mark from the state file once, at
start, then for every signature writes the file (temp file, rename) before it
hands the signature out. Each signature is also a journal line
``<CLOCK_MONOTONIC seconds> <height>/<round>/<step>``, so a test can tell what
was signed and when (the clock is the host's, shared with the test).

Usage: python filepv_signer.py STATE_FILE JOURNAL [SECONDS_PER_SIGNATURE [IDENTITY]]

IDENTITY goes into the sign bytes, as a real validator's blocks differ
between two nodes: two signers with different identities at one mark sign
different bytes, a double sign.
Only the standard library: it runs with the daemon's bare environment.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time


def load(path: str) -> tuple[int, int, int]:
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:  # nothing signed yet (CometBFT's init writes 0/0/0)
        return 0, 0, 0
    return int(state["height"]), int(state["round"]), int(state["step"])


def save(path: str, height: int, round_: int, step: int, identity: str) -> None:
    signbytes = f"vote {height}/{round_}/{step}{identity and ' by ' + identity}".encode()
    document = {
        "height": str(height),
        "round": round_,
        "step": step,
        "signature": base64.b64encode(b"\x01" * 64).decode(),
        "signbytes": signbytes.hex().upper(),
    }
    temporary = f"{path}.signer.tmp"
    with open(temporary, "w") as f:
        json.dump(document, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def main() -> None:
    path, journal = sys.argv[1], sys.argv[2]
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    identity = sys.argv[4] if len(sys.argv) > 4 else ""
    height, round_, step = load(path)
    with open(journal, "a", buffering=1) as out:
        while True:
            height, round_, step = (height + 1, 0, 1) if step in (0, 3) else (height, round_, step + 1)
            save(path, height, round_, step, identity)
            out.write(f"{time.monotonic():.6f} {height}/{round_}/{step}\n")
            time.sleep(pause)


if __name__ == "__main__":
    main()
