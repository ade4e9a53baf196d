"""Local data files -> records (plain dicts), and the column mapping shared by every loader.

A *record* is a ``dict`` with the canonical fields the task framings read (``text``; ``label``;
``context``/``question``/``answer``) plus an optional ``doc`` that groups records from one
source document (splits never cut a group). Files: ``.txt``, ``.jsonl``/``.ndjson``, ``.json``
(a list of objects), ``.csv``/``.tsv`` and ``.parquet``, optionally ``.gz``/``.bz2``/``.xz``
compressed (not parquet); a folder reads every supported file in it, sorted by name.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

Record = dict[str, Any]
SampleBy = Literal["line", "paragraph", "document"]

TEXT_SUFFIXES = (".txt", ".text")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
SUPPORTED = (*TEXT_SUFFIXES, *JSONL_SUFFIXES, ".json", ".csv", ".tsv", ".parquet")
_COMPRESSION = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _format_of(path: Path) -> tuple[str, str | None]:
    """(data suffix, compression suffix or None) of a file name such as ``x.jsonl.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    comp = suffixes[-1] if suffixes and suffixes[-1] in _COMPRESSION else None
    data = suffixes[-2] if comp and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    return data, comp


def is_supported_file(path: Path) -> bool:
    data, comp = _format_of(path)
    return data in SUPPORTED and not (comp and data == ".parquet")


def _open_text(path: Path) -> IO[str]:
    _, comp = _format_of(path)
    if comp:
        return _COMPRESSION[comp](path, "rt", encoding="utf-8")  # type: ignore[operator]
    return open(path, encoding="utf-8")


def _read_text(path: Path, sample_by: SampleBy) -> list[Record]:
    with _open_text(path) as f:
        raw = f.read()
    if sample_by == "document":
        return [{"text": raw.strip(), "doc": path.name}] if raw.strip() else []
    if sample_by == "paragraph":
        # Blank lines separate paragraphs; line breaks inside one are soft wraps.
        paras = (" ".join(p.split()) for p in raw.replace("\r\n", "\n").split("\n\n"))
        return [{"text": p} for p in paras if p]
    if sample_by == "line":
        return [{"text": line.strip()} for line in raw.splitlines() if line.strip()]
    raise ValueError(f"sample_by must be 'line', 'paragraph' or 'document', got {sample_by!r}")


def _read_jsonl(path: Path) -> list[Record]:
    out: list[Record] = []
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {n} is not valid JSON ({err.msg})") from err
            if not isinstance(obj, dict):
                raise ValueError(f"{path}: line {n} is a JSON {type(obj).__name__}, not an object")
            out.append(obj)
    return out


def _read_json(path: Path) -> list[Record]:
    with _open_text(path) as f:
        try:
            obj = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise ValueError(f"{path}: a .json data file must hold a list of objects")
    return obj


def _read_table(path: Path, data: str) -> list[Record]:
    import pandas as pd

    if data == ".parquet":
        frame = pd.read_parquet(path)
    else:
        # dtype=str and no NA parsing: "None", "NA" or "" in a text column stay text.
        sep = "\t" if data == ".tsv" else ","
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    return frame.to_dict("records")


def read_file(path: str | Path, sample_by: SampleBy = "line") -> list[Record]:
    """Records of one local data file (see the module docstring for the formats).

    Text formats must be UTF-8; another encoding is a ``ValueError`` naming the file (rather
    than the codec's message, which names neither file nor fix).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    if not is_supported_file(path):
        raise ValueError(
            f"unsupported data file {path.name!r}: use one of {', '.join(SUPPORTED)} "
            "(optionally .gz/.bz2/.xz compressed, except parquet)"
        )
    data, _ = _format_of(path)
    try:
        if data in TEXT_SUFFIXES:
            return _read_text(path, sample_by)
        if data in JSONL_SUFFIXES:
            return _read_jsonl(path)
        if data == ".json":
            return _read_json(path)
        return _read_table(path, data)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"data file {path} is not UTF-8 text ({err.reason}: byte "
            f"{err.object[err.start : err.start + 1]!r} near offset {err.start}); convert it, "
            f"e.g. iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}"
        ) from None


def read_local(path: str | Path, sample_by: SampleBy = "line") -> list[Record]:
    """Records of a local file, or of every supported file in a folder (sorted by name)."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_supported_file(p))
        if not files:
            raise FileNotFoundError(f"no data files ({', '.join(SUPPORTED)}) in folder {path}")
        records: list[Record] = []
        for f in files:
            records.extend(read_file(f, sample_by))
    else:
        records = read_file(path, sample_by)
    if not records:
        raise ValueError(f"data set {path} is empty (no non-blank records)")
    return records


def get_path(record: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted path: ``"answers.text.0"`` -> ``record["answers"]["text"][0]``."""
    value: Any = record
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple, np.ndarray)) and part.lstrip("-").isdigit():
            idx = int(part)
            if not -len(value) <= idx < len(value):
                raise KeyError(path)
            value = value[idx]
        else:
            raise KeyError(path)
    return value


def apply_columns(
    records: list[Record], columns: Mapping[str, str] | None, source: str
) -> list[Record]:
    """Rename fields: ``columns={"text": "review", "answer": "answers.text.0"}``.

    Keys are the canonical fields, values the names (or dotted paths) in the data. Fields that
    are not mapped are kept as they are. A missing column raises ``ValueError`` listing the
    columns that exist.
    """
    if not columns:
        return records
    if not isinstance(columns, Mapping):
        raise ValueError(f"columns must be a mapping canonical field -> column, got {columns!r}")
    out: list[Record] = []
    for n, rec in enumerate(records):
        new = dict(rec)
        for field, col in columns.items():
            try:
                new[field] = get_path(rec, col)
            except KeyError:
                raise ValueError(
                    f"column {col!r} (for field {field!r}) not found in {source} record {n}; "
                    f"columns are: {', '.join(map(str, rec))}"
                ) from None
        out.append(new)
    return out


def as_text(value: Any, field: str) -> str:
    """A record field as a string (numbers and numpy scalars too); lists are an error."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        raise ValueError(
            f"field {field!r} holds a {type(value).__name__}, not text; select one element "
            f"with a dotted column path, e.g. columns={{'{field}': '<column>.0'}}"
        )
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)
