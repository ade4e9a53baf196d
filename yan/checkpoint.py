"""Save and load YAN checkpoints: one folder, safetensors weights, JSON config, tokenizer files.

Layout of a checkpoint folder::

    model.safetensors   all parameters (no pickle: safe to load from untrusted sources)
    config.json         the resolved YANConfig (yan.config.YANConfig.to_dict)
    ...                 whatever tokenizer.save(folder) writes, when a tokenizer is given
    checksums.json      optional: sha256 and size of the other files (training checkpoints and
                        their export have one); verified by load_pretrained when present

The folder is written atomically: everything goes to a temporary sibling folder that is then
renamed into place, so a crash never leaves a half-written checkpoint behind. The checksums
catch what a rename cannot: a file damaged after it was written. A damaged or cut-short file
is reported in one line that names it, never as a bare ``SafetensorError``.

Example::

    save_pretrained(model, "runs/yan-small", tokenizer=tokenizer)
    model = load_pretrained("runs/yan-small")  # or YAN.from_pretrained("runs/yan-small")
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import YANConfig

if TYPE_CHECKING:
    from .model import YAN

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CHECKSUMS_NAME = "checksums.json"
CHECKSUMS_FORMAT = 1


def save_pretrained(model: YAN, folder: str | Path, tokenizer: Any = None) -> Path:
    """Write ``model`` (and ``tokenizer`` if given) to ``folder``, replacing it atomically.

    Args:
        model: a :class:`yan.model.YAN`.
        folder: destination; its parent is created if needed.
        tokenizer: anything with ``save(folder)`` (``yan.tokenizer.YanTokenizer``).

    Returns:
        The checkpoint folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"checkpoint folder {folder} exists and is not a directory")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        # contiguous CPU copies: safetensors stores plain buffers, no views or shared storage
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "model": "yan"})
        (tmp / CONFIG_NAME).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save(tmp)
        _replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is swapped out, then removed."""
    if not dst.exists():
        os.replace(src, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
    os.replace(dst, old / dst.name)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def _require(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint folder {folder} has no {name} ({path} is missing)")
    return path


# ---- checksums: damage found at load time, with the file named ----------------------------
def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_checksums(
    folder: str | Path, entries: Mapping[str, Mapping[str, Any]] | None = None
) -> Path:
    """Record the sha256 and size of every file in ``folder`` (or the given ``entries``, e.g.
    copied from the checkpoint an export came from) in ``folder/checksums.json``, atomically."""
    folder = Path(folder)
    if entries is None:
        entries = {
            p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size}
            for p in sorted(folder.iterdir())
            if p.is_file() and p.name != CHECKSUMS_NAME and not p.name.startswith(".")
        }
    record = {"format": CHECKSUMS_FORMAT, "algorithm": "sha256", "files": dict(entries)}
    tmp = folder / f".{CHECKSUMS_NAME}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, folder / CHECKSUMS_NAME)
    finally:
        tmp.unlink(missing_ok=True)
    return folder / CHECKSUMS_NAME


def read_checksums(folder: str | Path) -> dict[str, dict[str, Any]] | None:
    """The recorded ``{file name: {"sha256", "bytes"}}`` of ``folder``; ``None`` without a record
    (a folder written before checksums existed, or by ``save_pretrained`` alone)."""
    path = Path(folder) / CHECKSUMS_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        files = record["files"]
        if record.get("format") != CHECKSUMS_FORMAT or not isinstance(files, dict):
            raise ValueError("unknown format")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is damaged or not a checksum record ({err})") from None
    return files


def verify_checksums(folder: str | Path, names: Iterable[str] | None = None) -> None:
    """Raise ``ValueError`` naming the first file of ``folder`` (all recorded ones, or ``names``
    among them) whose size or sha256 differs from ``checksums.json``. Nothing to check without
    a record. Sizes are compared first: a cut-short file fails without being read."""
    folder = Path(folder)
    recorded = read_checksums(folder)
    if recorded is None:
        return
    wanted = list(recorded) if names is None else [n for n in names if n in recorded]
    where = f"(checked against {folder / CHECKSUMS_NAME})"
    for name in wanted:
        path, entry = folder / name, recorded[name]
        if not path.is_file():
            raise ValueError(f"{path} is missing {where}")
        size = path.stat().st_size
        if size != entry.get("bytes", size):
            raise ValueError(
                f"{path} is damaged: {size} bytes instead of {entry['bytes']} (cut short?) {where}"
            )
    for name in wanted:
        path = folder / name
        if file_sha256(path) != recorded[name].get("sha256"):
            raise ValueError(
                f"{path} is damaged: its sha256 differs from the one recorded when it was "
                f"written {where}"
            )


def load_config(folder: str | Path) -> YANConfig:
    """The :class:`YANConfig` stored in a checkpoint folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    path = _require(folder, CONFIG_NAME)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of YANConfig fields")
    try:
        return YANConfig.from_dict(data)
    except (TypeError, ValueError) as err:  # name the file, not only the field
        raise ValueError(f"{path}: {err}") from None


def load_pretrained(
    folder: str | Path, device: str | torch.device | None = None, verify: bool = True
) -> YAN:
    """Rebuild a :class:`yan.model.YAN` from a folder written by :func:`save_pretrained`.

    With ``verify`` (the default) the weights and config are first checked against the
    folder's ``checksums.json`` when it has one, so that a damaged file is an error rather than
    silently wrong weights (zeros written into the middle of a file still parse).

    Raises:
        FileNotFoundError: the folder, ``config.json`` or ``model.safetensors`` is missing.
        ValueError: a file is damaged (checksum, unreadable safetensors), or the weights do not
            match the config (missing/unexpected/misshaped tensors); the message names the file.
    """
    from .model import YAN

    folder = Path(folder)
    if verify and folder.is_dir():
        verify_checksums(folder, names=(CONFIG_NAME, WEIGHTS_NAME))
    config = load_config(folder)
    weights = _require(folder, WEIGHTS_NAME)
    try:
        state = load_file(str(weights), device=str(device) if device is not None else "cpu")
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{weights} cannot be read: the file is damaged or cut short ({err})"
        ) from None
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = YAN(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or misshaped:
        raise ValueError(
            f"{weights} does not match {folder / CONFIG_NAME}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {misshaped[:5]}"
        )
    model.load_state_dict(state, assign=True)
    # non-persistent buffers (sinusoidal positions) are rebuilt on the target device
    _rebuild_buffers(model, config, device)
    return model.eval()


def _rebuild_buffers(model: YAN, config: YANConfig, device: str | torch.device | None) -> None:
    """Rebuild the non-persistent buffers left on the meta device: YAN's only ones are fixed
    sinusoidal position tables ``(length, dim)``, so their shape is all that is needed."""
    from .blocks import sinusoidal_positions

    target = torch.device(device) if device is not None else torch.device("cpu")
    for module in model.modules():
        for name in module._non_persistent_buffers_set:
            buf = module._buffers.get(name)
            if buf is not None and buf.is_meta:
                module._buffers[name] = sinusoidal_positions(*buf.shape).to(target)


__all__ = [
    "CHECKSUMS_NAME",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "file_sha256",
    "load_config",
    "load_pretrained",
    "read_checksums",
    "save_pretrained",
    "verify_checksums",
    "write_checksums",
]
