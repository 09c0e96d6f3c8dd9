"""The writers outside the sign-state daemon (signer state files, ``highlander
render``, ``highlander install``) on a full disk and after a crash.

A full disk is a real one: a small tmpfs mounted for the test (root) and
filled up, so writes fail with ENOSPC as they would on a node. A crash is a
real SIGKILL of a child process the moment it is about to rename its
temporary into place. Either way nothing may be left behind: on a full disk
the writer removes its temporary and reports the error; after a crash the
next write to the same destination removes it.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from highlander.commands import install as inst
from highlander.commands import render
from highlander.commands.signstate import StateFileError, raise_state_file, read_state_file
from highlander.inventory import load
from highlander.signstate.register import HRS

EXAMPLE = Path(__file__).parents[2] / "examples/trio.yml"
FILLER = "filler"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of this test's own, unmounted whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a small tmpfs to fill up")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path) -> None:
    """Take every free byte of ``disk`` (what is written after fails with ENOSPC)."""
    with open(disk / FILLER, "ab", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    probe = disk / "probe"
    with pytest.raises(OSError) as caught:
        probe.write_bytes(b"x" * 4096)
    assert caught.value.errno == errno.ENOSPC
    probe.unlink()


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and directory below ``root``."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
        if p.name != FILLER
    }


def crash_at_first_rename(code: str) -> None:
    """Run ``code`` in a child that SIGKILLs itself when it first renames anything."""
    prologue = textwrap.dedent("""
        import os, signal
        def _crash(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace = os.rename = _crash
    """)
    child = subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr


def hidden(root: Path) -> list[str]:
    """Names below ``root`` that start with a dot (where temporaries hide), but a render's marker."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if p.name != render.MARKER)


# --- signer state files (signstate export --out, the validator agent's start) ---------------


def test_a_state_file_on_a_full_disk_is_left_as_it_was(small_disk: Path) -> None:
    state = small_disk / "priv_validator_state.json"
    raise_state_file(state, "cometbft", HRS(10, 0, 3))
    before = snapshot(small_disk)
    fill(small_disk)
    with pytest.raises(StateFileError) as caught:
        raise_state_file(state, "cometbft", HRS(11, 0, 1))
    assert str(caught.value) == f"{state}: cannot write: No space left on device"
    assert snapshot(small_disk) == before
    assert read_state_file(state, "cometbft").hrs == HRS(10, 0, 3)


def test_a_state_file_temporary_left_by_a_crash_is_removed_by_the_next_write(tmp_path: Path) -> None:
    state = tmp_path / "priv_validator_state.json"
    raise_state_file(state, "cometbft", HRS(10, 0, 3))
    crash_at_first_rename(f"""
        from pathlib import Path
        from highlander.commands.signstate import raise_state_file
        from highlander.signstate.register import HRS
        raise_state_file(Path({str(state)!r}), "cometbft", HRS(11, 0, 1))
    """)
    assert len(hidden(tmp_path)) == 1, "the child died before it created its temporary"
    assert read_state_file(state, "cometbft").hrs == HRS(10, 0, 3)
    raise_state_file(state, "cometbft", HRS(12, 0, 1))
    assert hidden(tmp_path) == []
    assert read_state_file(state, "cometbft").hrs == HRS(12, 0, 1)


# --- highlander render --------------------------------------------------------------------


def test_a_render_on_a_full_disk_leaves_the_earlier_one(small_disk: Path) -> None:
    files = render.render_files(load(EXAMPLE))
    out = render.write(files[:3], small_disk / "out")
    before = snapshot(small_disk)
    fill(small_disk)
    with pytest.raises(OSError) as caught:
        render.write(files, out)
    assert caught.value.errno == errno.ENOSPC
    assert snapshot(small_disk) == before


def test_a_render_directory_left_by_a_crash_is_removed_by_the_next_render(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.render_cluster(EXAMPLE, out)
    crash_at_first_rename(f"""
        from pathlib import Path
        from highlander.commands import render
        render.render_cluster(Path({str(EXAMPLE)!r}), Path({str(out)!r}))
    """)
    assert hidden(tmp_path), "the child died before it built its directory"
    render.render_cluster(EXAMPLE, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- highlander install -------------------------------------------------------------------


def agents(tmp_path: Path) -> Path:
    scripts = tmp_path / "venv-bin"
    scripts.mkdir()
    for name in inst.OCF_AGENTS + inst.FENCE_AGENTS:
        (scripts / name).write_text("#!/usr/bin/python3\nprint('agent')\n")
    return scripts


def test_an_install_on_a_full_disk_leaves_no_temporary(small_disk: Path, tmp_path: Path) -> None:
    scripts = agents(tmp_path)
    layout = inst.Layout(destdir=small_disk / "root")
    inst.install(layout, scripts)
    (scripts / "validator").write_text("#!/usr/bin/python3\nprint('a new agent')\n")
    before = snapshot(small_disk)
    fill(small_disk)
    with pytest.raises(inst.InstallError) as caught:
        inst.install(layout, scripts)
    assert "No space left on device" in str(caught.value)
    assert snapshot(small_disk) == before


def test_an_install_temporary_left_by_a_crash_is_removed_by_the_next_install(tmp_path: Path) -> None:
    scripts = agents(tmp_path)
    root = tmp_path / "root"
    crash_at_first_rename(f"""
        from pathlib import Path
        from highlander.commands import install
        install.install(install.Layout(destdir=Path({str(root)!r})), Path({str(scripts)!r}))
    """)
    assert len(hidden(root)) == 1, "the child died before it created its temporary"
    inst.install(inst.Layout(destdir=root), scripts)
    assert hidden(root) == []
