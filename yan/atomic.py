"""Atomic file writes: a reader (a resumed run, ``yan eval``, a hub upload) finds the old file or
the new one, never half of one.

Each rewritten file (``run.json``, the resolved ``config.json``, ``metrics.jsonl`` cut back on
resume, ``checksums.json``, ``ema.safetensors``) is written to a hidden sibling
``.NAME.PID.RANDOM.tmp`` in the same folder and renamed over the target with ``os.replace``,
which is atomic within one file system; on any failure the sibling is removed and the target is
left as it was. A whole checkpoint folder is swapped the same way by
:func:`yan.checkpoint.write_pretrained`.

The temporary file is created by the writer, like any other file, so the result has the usual
permissions (``0o666`` less the umask).

Example:
    >>> with atomic_path(folder / "ema.safetensors") as tmp:   # doctest: +SKIP
    ...     save_file(state, str(tmp))
    >>> atomic_write_text(out / "run.json", text)               # doctest: +SKIP
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` to write; renamed onto ``path`` when the block
    ends without an exception, removed in every case (the folder must exist)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`); returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


__all__ = ["atomic_path", "atomic_write_text"]
