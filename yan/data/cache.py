"""On-disk cache for parsed corpora and prepared (tokenised, framed, split) examples.

Location: the ``cache_dir`` argument, else ``$YAN_DATA_CACHE``, else ``~/.cache/yan/data``.

* Parsed corpora (``corpora/NAME-vN.json.gz``): gzip'd JSON records.
* Prepared splits (``prepared/TASK-KEY.npz``, the key a digest of everything they depend on,
  see :func:`yan.data.pipeline.prepare`): one uncompressed ``.npz`` with, per split, the token
  ids of every example as flat int32 arrays, int64 offsets, and each example's metadata as JSON
  bytes (:mod:`yan.data.store`). :func:`load_splits` memory-maps the file instead of reading it:
  a split is an :class:`~yan.data.store.ExampleStore` whose examples are built when they are
  used, so a process holds (in the page cache, shared by every process that maps the file) only
  the pages of the examples it reads; as Python lists the ids took about 9 times their int32
  size, on every rank. Nothing is unpickled.

Writes go to a temporary file and are renamed into place, so a reader in another process never
sees half a file, and a file that is being read stays valid when another one replaces it. A file
that is absent, cut short, of an older layout (:data:`FORMAT`) or inconsistent is rebuilt; the
token ids themselves are not checksummed on load, since that would read every page.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yan.atomic import atomic_path
from yan.data.records import Record
from yan.data.store import FIELDS, ExampleStore, check_arrays, map_npz, pack
from yan.data.tasks import Example

ENV_VAR = "YAN_DATA_CACHE"
FORMAT = 2  # layout of prepared splits; 1 (no 'format' member) was read back into Python lists


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
    """``write`` a temporary sibling, renamed onto ``path`` (:func:`yan.atomic.atomic_path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write(tmp)


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


def save_splits(path: Path, splits: Mapping[str, Sequence[Example]]) -> None:
    """One uncompressed ``.npz`` holding every split's flat arrays (:func:`yan.data.store.pack`),
    the split names and :data:`FORMAT`, written atomically."""
    arrays: dict[str, np.ndarray] = {"format": np.array([FORMAT], dtype=np.int64)}
    names = list(splits)
    arrays["splits"] = np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)
    for name in names:
        for key, arr in pack(splits[name]).items():
            arrays[f"{name}.{key}"] = arr

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # stored, not deflated: each member can be memory-mapped

    _atomic_write(path, write)


def load_splits(path: Path) -> dict[str, ExampleStore] | None:
    """Splits saved by :func:`save_splits`, memory-mapped (see :class:`ExampleStore`), or
    ``None`` when the file is absent, cut short, of another format or inconsistent (the caller
    then rebuilds it). Only the offsets are read here; token ids are read when used."""
    if not path.is_file():
        return None
    try:
        arrays = map_npz(path)
        if "format" not in arrays or arrays["format"].tolist() != [FORMAT]:
            return None  # an older layout (or not ours): rebuilt, never misread
        names = json.loads(arrays["splits"].tobytes().decode())
        out: dict[str, ExampleStore] = {}
        for name in names:
            split = {key: arrays.get(f"{name}.{key}") for key in FIELDS}
            if any(v is None for v in split.values()):
                return None
            check_arrays(split, name)  # type: ignore[arg-type]
            out[name] = ExampleStore(split, origin=(path, name))  # type: ignore[arg-type]
        return out
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
