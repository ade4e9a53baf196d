"""The repository itself: no file that git tracks holds an unresolved merge conflict."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("<<<<<<< ", ">>>>>>> ")


def test_no_tracked_file_holds_merge_conflict_markers():
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    found = []
    for name in filter(None, files):
        path = ROOT / name.decode()
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:  # a binary file
            continue
        found += [
            f"{name.decode()}:{i}" for i, line in enumerate(lines, 1) if line.startswith(MARKERS)
        ]
    assert not found, f"unresolved merge conflicts at {found}"
