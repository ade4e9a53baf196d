"""Prepared examples held as flat int32 token ids in a memory-mapped file, read on access.

A split of ``N`` examples is six flat arrays: ``src`` / ``tgt`` (int32 token ids of every
example, end to end), ``src_off`` / ``tgt_off`` (``N + 1`` int64 offsets: example ``i`` is
``src[src_off[i]:src_off[i + 1]]``) and ``meta`` / ``meta_off`` (each example's metadata as
UTF-8 JSON bytes). Held as Python lists, one token id costs a list slot and an int object,
about 9 times its 4 bytes as int32; memory-mapped, it costs nothing until a page of the file
is read, and the pages the process reads are the operating system's page cache, shared by every
process on the machine that maps the same file (the ranks of a DDP run).

:class:`ExampleStore` is a read-only :class:`~collections.abc.Sequence` of
:class:`~yan.data.tasks.Example` over those arrays: ``store[i]`` builds one example (its ids as
Python lists, exactly what the list path holds), ``store[a:b:c]`` and :meth:`ExampleStore.take`
are views that read nothing, and :meth:`ExampleStore.lengths` comes from the offsets alone, so
that :class:`~yan.data.batching.BatchIterator` plans its length buckets without reading a token.
A rank's shard (:func:`yan.distributed.shard`) is such a view: the rank reads the rows of its
own examples only.

:func:`pack` makes the arrays of a list of examples, :func:`map_npz` maps the members of an
uncompressed ``.npz`` (``np.load`` cannot memory-map an archive): see :mod:`yan.data.cache`.
"""

from __future__ import annotations

import json
import operator
import struct
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from yan.data.tasks import Example

FIELDS = ("src", "src_off", "tgt", "tgt_off", "meta", "meta_off")
_DTYPES = {"src": np.int32, "tgt": np.int32, "meta": np.uint8}  # the offsets are int64
_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # a zip member's local file header (30 bytes)


def _flat(seqs: Sequence[Sequence[int]], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((i for s in seqs for i in s), dtype=dtype, count=int(offsets[-1]))
    return flat, offsets


def pack(examples: Sequence[Example]) -> dict[str, np.ndarray]:
    """The six flat arrays of ``examples`` (see the module docstring), keyed by :data:`FIELDS`."""
    out: dict[str, np.ndarray] = {}
    for side in ("src", "tgt"):
        seqs = [getattr(e, f"{side}_ids") for e in examples]
        out[side], out[f"{side}_off"] = _flat(seqs, np.int32)
    metas = [json.dumps(e.meta, ensure_ascii=False).encode() for e in examples]
    out["meta"], out["meta_off"] = _flat(metas, np.uint8)
    return out


def check_arrays(arrays: dict[str, np.ndarray], name: str) -> None:
    """Raise ``ValueError`` naming what is wrong when ``arrays`` are not one consistent split.

    Reads the offsets (8 bytes per example), never the token ids."""
    for key in FIELDS:
        if key not in arrays:
            raise ValueError(f"split {name!r}: no {key!r} array")
        arr, want = arrays[key], np.dtype(_DTYPES.get(key, np.int64))
        if arr.ndim != 1 or arr.dtype != want:
            raise ValueError(
                f"split {name!r}: {key} is {arr.dtype}{list(arr.shape)}, not 1-D {want}"
            )
    n = len(arrays["src_off"]) - 1
    for key in ("src", "tgt", "meta"):
        off = arrays[f"{key}_off"]
        if len(off) != n + 1 or n < 0:
            raise ValueError(f"split {name!r}: {key}_off has {len(off)} entries, expected {n + 1}")
        if off[0] != 0 or off[-1] != len(arrays[key]) or np.any(np.diff(off) < 0):
            raise ValueError(f"split {name!r}: {key}_off does not index {key} ({len(arrays[key])})")


class ExampleStore(Sequence[Example]):
    """Read-only examples over flat arrays (memory-mapped by :func:`yan.data.cache.load_splits`).

    Args:
        arrays: the six arrays of one split, keyed by :data:`FIELDS` (see :func:`pack`).
        rows: the rows of this view (``None``: all of them, in order).

    Example:
        >>> store = ExampleStore(pack(examples))
        >>> store[0] == examples[0]                 # an Example with list ids
        >>> mine = store[rank::world_size]           # a view: nothing is read
        >>> mine.lengths()                           # src + tgt lengths, from the offsets
    """

    __hash__ = None  # type: ignore[assignment]  # compares by content, like a list

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        rows: np.ndarray | None = None,
        origin: tuple[Path, str] | None = None,
    ) -> None:
        self.arrays = arrays
        self.rows = rows
        self.origin = origin  # (cache file, split name) when memory-mapped: pickled by name
        # plain-ndarray views of the same pages: slicing a np.memmap subclass costs twice as much
        self._flat = {k: v.view(np.ndarray) for k, v in arrays.items()}

    @property
    def num_rows(self) -> int:
        """Examples in the underlying split (a view may select fewer)."""
        return len(self.arrays["src_off"]) - 1

    def __len__(self) -> int:
        return self.num_rows if self.rows is None else len(self.rows)

    def _row(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"example index {i} out of range for {n} examples")
        i %= n
        return i if self.rows is None else int(self.rows[i])

    def _example(self, row: int) -> Example:
        f = self._flat
        s0, s1 = f["src_off"][row : row + 2].tolist()
        t0, t1 = f["tgt_off"][row : row + 2].tolist()
        m0, m1 = f["meta_off"][row : row + 2].tolist()
        meta = json.loads(f["meta"][m0:m1].tobytes().decode())
        return Example(f["src"][s0:s1].tolist(), f["tgt"][t0:t1].tolist(), meta)

    @overload
    def __getitem__(self, key: int) -> Example: ...

    @overload
    def __getitem__(self, key: slice) -> ExampleStore: ...

    def __getitem__(self, key: int | slice) -> Example | ExampleStore:
        if isinstance(key, slice):
            return self.take(np.arange(len(self))[key])
        return self._example(self._row(operator.index(key)))

    def __iter__(self) -> Iterator[Example]:
        for i in range(len(self)):
            yield self._example(i if self.rows is None else int(self.rows[i]))

    def take(self, indices: Sequence[int] | np.ndarray) -> ExampleStore:
        """A view of the examples at ``indices`` (positions in this view); reads no token."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"take: indices out of range for {n} examples")
        idx = idx % n if n else idx
        return type(self)(self.arrays, idx if self.rows is None else self.rows[idx], self.origin)

    def side_lengths(self, side: str) -> np.ndarray:
        """Token counts of every example's ``side`` (``"src"`` or ``"tgt"``), from the offsets."""
        off = self.arrays[f"{side}_off"]
        if self.rows is None:
            return np.diff(off)
        return off[self.rows + 1] - off[self.rows]

    def lengths(self) -> np.ndarray:
        """``len(src_ids) + len(tgt_ids)`` of every example (what length bucketing sorts by)."""
        return self.side_lengths("src") + self.side_lengths("tgt")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """A memory-mapped store pickles as its file and rows (a ``DataLoader`` worker started
        with ``spawn`` maps the file again), not as a copy of every token."""
        if self.origin is None:
            return (type(self), (self.arrays, self.rows))
        return (_remap, (type(self), *self.origin, self.rows))

    def __repr__(self) -> str:
        view = "" if self.rows is None else f" (a view of {self.num_rows})"
        return f"ExampleStore({len(self)} examples{view})"


def _remap(
    cls: type[ExampleStore], path: Path, split: str, rows: np.ndarray | None
) -> ExampleStore:
    from yan.data.cache import load_splits  # the cache builds on this module

    splits = load_splits(path)
    if splits is None or split not in splits:
        raise ValueError(f"cannot map split {split!r} of {path} again: the file changed or is gone")
    return cls(splits[split].arrays, rows, (path, split))


def map_npz(path: Path) -> dict[str, np.ndarray]:
    """Every member of an uncompressed ``.npz`` as a read-only :class:`numpy.memmap` view.

    ``np.load(mmap_mode="r")`` reads an archive's members into memory; the members that
    ``np.savez`` writes are stored uncompressed, so each one's array lies at a fixed offset of
    the file and one memory map of the file serves them all. Raises ``ValueError`` (or
    ``OSError``, ``zipfile.BadZipFile``) when the file is not such an archive or is cut short.
    """
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        size = f.seek(0, 2)
        places: dict[str, tuple[int, np.dtype, tuple[int, ...], bool]] = {}
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"{path.name}: member {info.filename} is compressed or not .npy")
            f.seek(info.header_offset)
            head = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
            if head[0] != b"PK\x03\x04":
                raise ValueError(f"{path.name}: bad local header for {info.filename}")
            start = info.header_offset + _LOCAL_HEADER.size + head[-2] + head[-1]
            f.seek(start)
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read(f)
            offset = f.tell()
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if (
                dtype.hasobject
                or offset + nbytes > size
                or offset - start + nbytes != info.file_size
            ):
                raise ValueError(f"{path.name}: member {info.filename} is cut short or malformed")
            places[info.filename[: -len(".npy")]] = (offset, dtype, shape, fortran)
    whole = np.memmap(path, dtype=np.uint8, mode="r")
    out: dict[str, np.ndarray] = {}
    for name, (offset, dtype, shape, fortran) in places.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        flat = whole[offset : offset + nbytes].view(dtype)
        out[name] = flat.reshape(shape, order="F" if fortran else "C")
    return out


__all__ = ["FIELDS", "ExampleStore", "check_arrays", "map_npz", "pack"]
