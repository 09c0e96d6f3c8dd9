"""install/uninstall staged below a temporary destdir, from a fake scripts dir."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from highlander.commands import install as inst
from highlander.commands.install import InstallError, Layout, Manifest

AGENT_TEXT = "#!/usr/bin/python3\nprint('agent')\n"


@pytest.fixture(autouse=True)
def one_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Install mechanics do not depend on how many agents there are."""
    monkeypatch.setattr(inst, "OCF_AGENTS", ("validator",))
    monkeypatch.setattr(inst, "FENCE_AGENTS", ())


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    directory = tmp_path / "venv-bin"
    directory.mkdir()
    for name in inst.OCF_AGENTS + inst.FENCE_AGENTS:
        script = directory / name
        script.write_text(AGENT_TEXT)
        script.chmod(0o700)  # install must not copy the source's mode
    return directory


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    root = tmp_path / "root"
    root.mkdir()
    return Layout(destdir=root)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def validator_path(layout: Layout) -> Path:
    return layout.destdir / "usr/lib/ocf/resource.d/highlander/validator"


def test_layout_stages_every_path_below_destdir(tmp_path: Path) -> None:
    layout = Layout(destdir=tmp_path)
    assert layout.provider_dir == tmp_path / "usr/lib/ocf/resource.d/highlander"
    assert layout.sbin_dir == tmp_path / "usr/sbin"
    assert layout.manifest == tmp_path / "var/lib/highlander/installed.json"


def test_layout_honours_prefix_and_ocf_root(tmp_path: Path) -> None:
    layout = Layout(prefix=Path("/opt/ha"), ocf_root=Path("/srv/ocf"), destdir=tmp_path)
    assert layout.provider_dir == tmp_path / "srv/ocf/resource.d/highlander"
    assert layout.sbin_dir == tmp_path / "opt/ha/sbin"
    assert (
        Layout(prefix=Path("/opt/ha"), destdir=tmp_path).provider_dir
        == tmp_path / "opt/ha/lib/ocf/resource.d/highlander"
    )


def test_install_copies_each_agent_executable_for_all(layout: Layout, scripts: Path) -> None:
    written = inst.install(layout, scripts)
    target = validator_path(layout)
    assert written == [target]
    assert target.read_text() == AGENT_TEXT
    assert mode(target) == 0o755
    for directory in [target.parent, *target.parent.parents]:
        if directory == layout.destdir:
            break
        assert mode(directory) == 0o755, directory


def test_install_leaves_no_temporary_file(layout: Layout, scripts: Path) -> None:
    inst.install(layout, scripts)
    assert sorted(p.name for p in validator_path(layout).parent.iterdir()) == ["validator"]


def test_the_manifest_records_files_with_digests_and_created_directories(layout: Layout, scripts: Path) -> None:
    inst.install(layout, scripts)
    data = json.loads(layout.manifest.read_text())
    target = validator_path(layout)
    assert data["files"] == {str(target): hashlib.sha256(AGENT_TEXT.encode()).hexdigest()}
    root = layout.destdir
    assert data["directories"] == [
        str(root / "var"),
        str(root / "var/lib"),
        str(root / "var/lib/highlander"),
        str(root / "usr"),
        str(root / "usr/lib"),
        str(root / "usr/lib/ocf"),
        str(root / "usr/lib/ocf/resource.d"),
        str(root / "usr/lib/ocf/resource.d/highlander"),
    ]


def test_existing_directories_are_not_recorded_as_created(layout: Layout, scripts: Path) -> None:
    (layout.destdir / "usr/lib/ocf/resource.d").mkdir(parents=True)
    (layout.destdir / "var/lib/highlander").mkdir(parents=True)
    inst.install(layout, scripts)
    manifest = Manifest.load(layout.manifest)
    assert manifest.directories == [str(layout.destdir / "usr/lib/ocf/resource.d/highlander")]


def test_reinstall_is_idempotent(layout: Layout, scripts: Path) -> None:
    inst.install(layout, scripts)
    first_manifest = layout.manifest.read_text()
    first_tree = tree(layout.destdir)
    assert inst.install(layout, scripts) == [validator_path(layout)]
    assert layout.manifest.read_text() == first_manifest
    assert tree(layout.destdir) == first_tree
    assert mode(validator_path(layout)) == 0o755


def test_reinstall_replaces_an_outdated_agent(layout: Layout, scripts: Path) -> None:
    inst.install(layout, scripts)
    (scripts / "validator").write_text(AGENT_TEXT + "# new version\n")
    inst.install(layout, scripts)
    assert validator_path(layout).read_text().endswith("# new version\n")
    digest = Manifest.load(layout.manifest).files[str(validator_path(layout))]
    assert digest == hashlib.sha256((AGENT_TEXT + "# new version\n").encode()).hexdigest()
    removed, kept = inst.uninstall(layout)
    assert removed == [validator_path(layout)] and kept == []


def test_uninstall_removes_the_files_and_the_directories_it_created(layout: Layout, scripts: Path) -> None:
    inst.install(layout, scripts)
    removed, kept = inst.uninstall(layout)
    assert removed == [validator_path(layout)]
    assert kept == []
    assert not (layout.destdir / "usr").exists()
    assert not layout.manifest.exists()


def test_uninstall_leaves_the_destdir_as_it_was_before_install(layout: Layout, scripts: Path) -> None:
    (layout.destdir / "etc").mkdir()
    (layout.destdir / "etc/hosts").write_text("127.0.0.1 localhost\n")
    before = tree(layout.destdir)
    inst.install(layout, scripts)
    inst.uninstall(layout)
    # This includes the manifest's own directory (var/lib/highlander), which
    # install created as well.
    assert tree(layout.destdir) == before


def test_uninstall_leaves_unrelated_files_and_their_directory_alone(layout: Layout, scripts: Path) -> None:
    provider = layout.destdir / "usr/lib/ocf/resource.d/highlander"
    provider.mkdir(parents=True)
    (provider / "mine").write_text("someone else's agent\n")
    inst.install(layout, scripts)
    (provider / "later").write_text("added after the install\n")
    removed, kept = inst.uninstall(layout)
    assert removed == [validator_path(layout)] and kept == []
    assert sorted(p.name for p in provider.iterdir()) == ["later", "mine"]
    assert (provider / "mine").read_text() == "someone else's agent\n"


def test_uninstall_keeps_a_directory_it_created_that_is_no_longer_empty(layout: Layout, scripts: Path) -> None:
    inst.install(layout, scripts)
    other = layout.destdir / "usr/lib/ocf/resource.d/heartbeat"
    other.mkdir()
    (other / "Dummy").write_text("#!/bin/sh\n")
    inst.uninstall(layout)
    assert (other / "Dummy").is_file()
    assert not (layout.destdir / "usr/lib/ocf/resource.d/highlander").exists()


def test_uninstall_keeps_a_file_changed_since_install(layout: Layout, scripts: Path) -> None:
    inst.install(layout, scripts)
    target = validator_path(layout)
    target.write_text(AGENT_TEXT + "# local fix\n")
    removed, kept = inst.uninstall(layout)
    assert removed == []
    assert kept == [target]
    assert target.read_text().endswith("# local fix\n")
    # The manifest still lists the kept file, so it is not forgotten.
    assert str(target) in Manifest.load(layout.manifest).files


def test_uninstall_skips_a_file_already_removed(layout: Layout, scripts: Path) -> None:
    inst.install(layout, scripts)
    validator_path(layout).unlink()
    assert inst.uninstall(layout) == ([], [])
    assert not (layout.destdir / "usr").exists()


def test_uninstall_without_a_manifest_removes_nothing(layout: Layout) -> None:
    (layout.destdir / "usr").mkdir()
    assert inst.uninstall(layout) == ([], [])
    assert (layout.destdir / "usr").is_dir()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param("[]", id="a-list"),
        pytest.param('{"files": {}}', id="no-directories"),
        pytest.param('{"directories": []}', id="no-files"),
        pytest.param('{"files": 3, "directories": []}', id="files-not-a-mapping"),
        pytest.param("", id="empty"),
    ],
)
@pytest.mark.parametrize("operation", ["install", "uninstall"])
def test_a_corrupt_manifest_is_an_install_error(layout: Layout, scripts: Path, text: str, operation: str) -> None:
    layout.manifest.parent.mkdir(parents=True)
    layout.manifest.write_text(text)
    with pytest.raises(InstallError, match="not a highlander install manifest"):
        if operation == "install":
            inst.install(layout, scripts)
        else:
            inst.uninstall(layout)
    assert layout.manifest.read_text() == text


def test_missing_agent_executables_are_an_install_error(layout: Layout, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(InstallError, match="agent executables missing"):
        inst.install(layout, empty)
    assert tree(layout.destdir) == set()


def test_sources_default_to_this_environments_scripts() -> None:
    found = inst.sources()
    assert set(found) == set(inst.OCF_AGENTS + inst.FENCE_AGENTS)
    assert all(path.is_file() for path in found.values())


def test_not_readable_by_all_finds_the_closed_directory(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    inner = closed / "python3"
    inner.write_text("")
    inner.chmod(0o755)
    assert inst.not_readable_by_all(inner) == closed


def test_not_readable_by_all_finds_an_unreadable_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("")
    secret.chmod(0o600)
    assert inst.not_readable_by_all(secret) == secret


def test_a_system_interpreter_is_readable_by_all() -> None:
    assert inst.not_readable_by_all(Path("/usr/bin/env")) is None
