"""``highlander signstate import`` and ``export --out`` on state files that are
not what a signer writes: one clear line and exit status 1, never a
traceback, and the replica's state directory untouched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness import HIGHLANDER


def highlander(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HIGHLANDER, "signstate", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            b'{"height": ' + b"[" * 30_000 + b"]" * 30_000 + b', "round": 0, "step": 0}',
            "nested deeper than 32 levels at line 1 column 43",
        ),
        (b'{"height": "5", "round": 0, "step": 1, "height": "9"}', 'field "height" appears more than once'),
        (b'{"height": "5"}\xff', "not valid UTF-8: invalid start byte at byte 15"),
        (b" " * 70_000, "more than 65536 bytes; a signer's state file is a few hundred: is this the right file?"),
    ],
    ids=["deep", "duplicate", "not-utf8", "huge"],
)
def test_import_of_a_bad_state_file_is_one_clear_line(tmp_path: Path, data: bytes, problem: str) -> None:
    state_file = tmp_path / "priv_validator_state.json"
    state_file.write_bytes(data)
    state_dir = tmp_path / "state"
    config = tmp_path / "signstate.toml"
    config.write_text(
        f'node = "node-a"\nlisten = "127.0.0.1:7480"\nstate_dir = "{state_dir}"\npki_dir = "{tmp_path}"\n'
        f'socket = "{tmp_path}/s.sock"\n[peers]\nnode-b = "127.0.0.1:7481"\nnode-c = "127.0.0.1:7482"\n'
    )
    done = highlander("import", "--config", str(config), "--chain-id", "c", "--key-id", "k", str(state_file))
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"Error: {state_file}: {problem}\n"
    assert not state_dir.exists()
