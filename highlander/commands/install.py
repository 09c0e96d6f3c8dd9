"""Installing the agents where Pacemaker and pcs look for them.

OCF agents go to ``<ocf-root>/resource.d/highlander/``, fence agents to
``<prefix>/sbin`` (pcs lists fence agents from there). Each installed file
is the executable pip placed in this environment's ``bin``, whose first line
names this environment's interpreter, so the agent runs the same code as
the ``highlander`` command. A manifest records what was written, so that
``--uninstall`` removes exactly that and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from highlander import strictjson
from highlander.adapters.files import write_file

OCF_PROVIDER = "highlander"
OCF_AGENTS = ("privval", "signstate", "validator")
FENCE_AGENTS: tuple[str, ...] = (
    "fence_highlander_ipmi",
    "fence_highlander_ilo_ssh",
    "fence_highlander_redfish",
)
MANIFEST = "var/lib/highlander/installed.json"


class InstallError(RuntimeError):
    """Installing or uninstalling cannot go on; the message says why and what to do."""


@dataclass
class Layout:
    """Where things go. ``destdir`` stages an install for packaging."""

    prefix: Path = Path("/usr")
    ocf_root: Path | None = None
    destdir: Path = Path("/")

    def staged(self, path: Path) -> Path:
        return self.destdir / path.relative_to("/")

    @property
    def provider_dir(self) -> Path:
        root = self.ocf_root or self.prefix / "lib/ocf"
        return self.staged(root / "resource.d" / OCF_PROVIDER)

    @property
    def sbin_dir(self) -> Path:
        return self.staged(self.prefix / "sbin")

    @property
    def manifest(self) -> Path:
        return self.destdir / MANIFEST


@dataclass
class Manifest:
    """Files written (with their digest) and directories created by installs."""

    files: dict[str, str] = field(default_factory=dict)
    directories: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        if not path.exists():
            return cls()
        try:
            data = strictjson.loads(path.read_bytes())
            return cls(dict(data["files"]), list(data["directories"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InstallError(f"{path} is not a highlander install manifest ({exc}); remove it by hand") from None

    def save(self, path: Path) -> None:
        _write(path, json.dumps({"files": self.files, "directories": self.directories}, indent=2), 0o644)


def _write(path: Path, data: bytes | str, mode: int) -> None:
    """Replace ``path`` whole (or leave it as it was); InstallError says why it could not."""
    try:
        write_file(path, data, mode=mode)
    except OSError as exc:
        raise InstallError(
            f"cannot write {path}: {exc.strerror} (every file is replaced whole or not at all; run the install again)"
        ) from None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sources(scripts_dir: Path | None = None) -> dict[str, Path]:
    """The agent executables of this environment, by name."""
    where = scripts_dir or Path(sysconfig.get_path("scripts"))
    found = {name: where / name for name in OCF_AGENTS + FENCE_AGENTS}
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        raise InstallError(
            f"agent executables missing: {', '.join(missing)}; reinstall the package "
            "(pip install highlander) into this environment"
        )
    return found


def not_readable_by_all(path: Path) -> Path | None:
    """The first part of ``path`` other users cannot reach, if any.

    Pacemaker runs agents with a bare environment and ocf-tester runs
    meta-data as ``nobody``: an interpreter under /root does not work.
    """
    current = Path(os.path.realpath(path))
    for part in [current, *current.parents]:
        mode = part.stat().st_mode
        needed = 0o005 if part.is_dir() else 0o004
        if mode & needed != needed:
            return part
    return None


def _make_directories(directory: Path, manifest: Manifest) -> None:
    """Create ``directory`` and missing parents, recording each one created."""
    for part in reversed([directory, *directory.parents]):
        if not part.exists():
            part.mkdir(mode=0o755)
            manifest.directories.append(str(part))


def install(layout: Layout, scripts_dir: Path | None = None) -> list[Path]:
    """Copy every agent into place; returns the paths written."""
    targets = {name: layout.provider_dir / name for name in OCF_AGENTS}
    targets.update({name: layout.sbin_dir / name for name in FENCE_AGENTS})
    found = sources(scripts_dir)  # before anything is written: fail leaving nothing
    manifest = Manifest.load(layout.manifest)
    _make_directories(layout.manifest.parent, manifest)
    written = []
    try:
        for name, source in found.items():
            target = targets[name]
            _make_directories(target.parent, manifest)
            _write(target, source.read_bytes(), 0o755)
            manifest.files[str(target)] = _digest(target)
            written.append(target)
    finally:  # what was written is recorded even when the rest failed, so --uninstall finds it
        manifest.save(layout.manifest)
    return written


def uninstall(layout: Layout) -> tuple[list[Path], list[Path]]:
    """Remove what the manifest lists; returns (removed, kept because changed)."""
    manifest = Manifest.load(layout.manifest)
    removed, kept = [], []
    for name, digest in manifest.files.items():
        path = Path(name)
        if not path.exists():
            continue
        if _digest(path) != digest:
            kept.append(path)
            continue
        path.unlink()
        removed.append(path)
    if kept:
        manifest.files = {str(p): manifest.files[str(p)] for p in kept}
        manifest.save(layout.manifest)
        return removed, kept
    layout.manifest.unlink(missing_ok=True)
    for name in reversed(manifest.directories):
        directory = Path(name)
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return removed, kept
