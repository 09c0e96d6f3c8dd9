#!/usr/bin/env python3
"""Build the highlander wheel on the controller; print {"wheel": path, "digest": ...} as JSON.

    build_wheel.py SOURCE OUT

SOURCE is copied first without build/, *.egg-info and caches (an in-tree
build would pack stale files left in build/), then `pip wheel --no-deps`
builds it into OUT, replacing any earlier wheel there. The digest is the
SHA-256 of the wheel's RECORD (every file's own hash), so it names the
contents, not the zip's timestamps: the nodes reinstall only when it changes.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

IGNORE = shutil.ignore_patterns(
    "build", "dist", "*.egg-info", ".git", "__pycache__", ".pytest_cache", ".hypothesis", ".tox", ".venv", "*.pyc"
)


def main(source: str, out: str) -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="highlander-wheel-") as scratch:
        tree = Path(scratch, "src")
        shutil.copytree(source, tree, ignore=IGNORE, symlinks=True)
        built = Path(scratch, "dist")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--wheel-dir",
                str(built),
                str(tree),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            return result.returncode
        (wheel,) = built.glob("highlander-*.whl")
        for old in out_dir.glob("highlander-*.whl"):
            old.unlink()
        target = out_dir / wheel.name
        shutil.copy2(wheel, target)
    with zipfile.ZipFile(target) as archive:
        record = next(name for name in archive.namelist() if name.endswith(".dist-info/RECORD"))
        digest = hashlib.sha256(archive.read(record)).hexdigest()
    print(json.dumps({"wheel": str(target), "digest": digest}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
