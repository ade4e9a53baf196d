"""On-disk cache for parsed corpora and prepared (tokenised, framed, split) examples.

Location: the ``cache_dir`` argument, else ``$YAN_DATA_CACHE``, else ``~/.cache/yan/data``.
Records are gzip'd JSON; examples are ``.npz`` (flat int32 ids + offsets) with their metadata as
JSON, so nothing is unpickled. Writes go to a temporary file and are renamed into place, so a
reader in another process never sees half a file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from yan.data.records import Record
from yan.data.tasks import Example

ENV_VAR = "YAN_DATA_CACHE"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder (created on first write, not here)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "yan" / "data"


def digest(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable description (cache keys)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_records(path: Path, records: list[Record]) -> None:
    def write(tmp: Path) -> None:
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            json.dump(records, f, ensure_ascii=False)

    _atomic_write(path, write)


def load_records(path: Path) -> list[Record] | None:
    """Cached records, or ``None`` when absent or unreadable (then they are rebuilt)."""
    if not path.is_file():
        return None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, EOFError):
        return None


def _flatten(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((i for s in seqs for i in s), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def _unflatten(flat: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    values = flat.tolist()
    bounds = offsets.tolist()
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def save_splits(path: Path, splits: dict[str, list[Example]]) -> None:
    """One ``.npz`` holding every split's examples."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, list[dict[str, Any]]] = {}
    for name, examples in splits.items():
        for side in ("src", "tgt"):
            seqs = [getattr(e, f"{side}_ids") for e in examples]
            arrays[f"{name}.{side}"], arrays[f"{name}.{side}_off"] = _flatten(seqs)
        meta[name] = [e.meta for e in examples]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic_write(path, write)


def load_splits(path: Path) -> dict[str, list[Example]] | None:
    """Splits saved by :func:`save_splits`, or ``None`` when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            out: dict[str, list[Example]] = {}
            for name, metas in meta.items():
                src = _unflatten(z[f"{name}.src"], z[f"{name}.src_off"])
                tgt = _unflatten(z[f"{name}.tgt"], z[f"{name}.tgt_off"])
                out[name] = [Example(s, t, m) for s, t, m in zip(src, tgt, metas)]
            return out
    except (OSError, ValueError, KeyError):
        return None
