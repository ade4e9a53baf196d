"""yan.atomic: a rewritten file is the old one or the new one, never half of one."""

import os
import stat

import pytest

from yan.atomic import atomic_path, atomic_write_text


def test_atomic_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old\n")
    assert atomic_write_text(path, "new\n") == path
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "ema.safetensors"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ema.safetensors"]


def test_the_temporary_is_a_hidden_sibling_unique_per_write(tmp_path):
    path = tmp_path / "checksums.json"
    with atomic_path(path) as first, atomic_path(path) as second:
        assert first.parent == tmp_path and first.name.startswith(".checksums.json.")
        assert first != second and not first.exists()
        first.write_text("1")
        second.write_text("2")
    assert path.read_text() == "1"  # the outer block ends last and wins


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_the_file_gets_the_usual_permissions(tmp_path):
    """Like a plain open(): 0o666 less the umask (a mkstemp file would be 0o600)."""
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    atomic_write_text(atomic, "x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
