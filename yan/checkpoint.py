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

This module deals in files only: :func:`write_pretrained` and :func:`read_pretrained` move a
config and a flat dict of tensors to and from a folder. Turning tensors into a model (building
it without initialisation, checking that the tensors fit, rebuilding the position tables that
are not saved) is the model's own business, :meth:`yan.model.YAN.from_state_dict`; so
``yan.model`` imports this module, and this module imports the model only when
:func:`load_pretrained`, kept for its callers, is called.

Example::

    model.save_pretrained("runs/yan-small", tokenizer=tokenizer)
    model = YAN.from_pretrained("runs/yan-small")
    stored = read_pretrained("runs/yan-small")  # the config and tensors, no model
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .atomic import atomic_write_text
from .config import YANConfig

if TYPE_CHECKING:  # annotations only: importing this module never imports the model
    from .model import YAN

WEIGHTS_NAME = "model.safetensors"
EMA_NAME = "ema.safetensors"  # the moving average of the weights, when the run kept one
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"  # the model card (yan.model_card)
VERSION_KEY = "yan_version"  # in config.json: the package version that wrote the checkpoint
CHECKSUMS_NAME = "checksums.json"
CHECKSUMS_FORMAT = 1


class SavableModel(Protocol):
    """What :func:`save_pretrained` needs of a model: its config and its tensors."""

    config: YANConfig

    def state_dict(self) -> Mapping[str, torch.Tensor]: ...


def save_pretrained(model: SavableModel, folder: str | Path, tokenizer: Any = None) -> Path:
    """Write ``model`` (and ``tokenizer`` if given) to ``folder``, replacing it atomically.

    A :class:`yan.model.YAN` saves itself (:meth:`yan.hub.YANHubMixin.save_pretrained`, which
    adds the model card); anything else with ``config`` and ``state_dict()`` is written here.

    Args:
        model: a :class:`yan.model.YAN` (anything with ``config`` and ``state_dict()``).
        folder: destination; its parent is created if needed.
        tokenizer: anything with ``save(folder)`` (``yan.tokenizer.YanTokenizer``).

    Returns:
        The checkpoint folder.
    """
    own = getattr(model, "save_pretrained", None)
    if callable(own):
        return Path(own(folder, tokenizer=tokenizer))
    return write_pretrained(folder, model.state_dict(), model.config, tokenizer=tokenizer)


def write_pretrained(
    folder: str | Path,
    state: Mapping[str, torch.Tensor],
    config: YANConfig,
    tokenizer: Any = None,
    *,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Write ``state`` as ``model.safetensors``, ``config`` as ``config.json`` (with the
    package version under ``yan_version``), the tokenizer's files and the text ``files`` (name
    -> content, e.g. the model card) to ``folder``, replacing it atomically; returns it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"checkpoint folder {folder} exists and is not a directory")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        # contiguous CPU copies: safetensors stores plain buffers, no views or shared storage
        state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "model": "yan"})
        record = {**config.to_dict(), VERSION_KEY: __version__}
        (tmp / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save(tmp)
        for name, text in (files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
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
    return atomic_write_text(folder / CHECKSUMS_NAME, json.dumps(record, indent=1) + "\n")


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
    data.pop(VERSION_KEY, None)  # who wrote it, not how the model is built
    try:
        return YANConfig.from_dict(data)
    except (TypeError, ValueError) as err:  # name the file, not only the field
        raise ValueError(f"{path}: {err}") from None


@dataclass(frozen=True)
class StoredModel:
    """A checkpoint folder as read from disk, before any model exists.

    Attributes:
        folder: the checkpoint folder.
        config: its ``config.json``.
        state: its ``model.safetensors``, parameter name -> tensor, on the device it was read to.
        weights_name: the file ``state`` was read from (``model.safetensors`` or the EMA's).
    """

    folder: Path
    config: YANConfig
    state: dict[str, torch.Tensor]
    weights_name: str = WEIGHTS_NAME

    @property
    def weights_path(self) -> Path:
        return self.folder / self.weights_name

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_NAME


def read_pretrained(
    folder: str | Path,
    device: str | torch.device | None = None,
    verify: bool = True,
    weights: str = WEIGHTS_NAME,
) -> StoredModel:
    """Read the config and the tensors of a folder written by :func:`write_pretrained`.

    ``weights`` names the tensor file: ``model.safetensors``, or ``ema.safetensors`` for the
    moving average of a run that kept one (the same tensor names).

    With ``verify`` (the default) the weights and config are first checked against the
    folder's ``checksums.json`` when it has one, so that a damaged file is an error rather than
    silently wrong weights (zeros written into the middle of a file still parse). The tensors
    are read straight to ``device`` (``None``: the CPU).

    Raises:
        FileNotFoundError: the folder, ``config.json`` or ``model.safetensors`` is missing.
        ValueError: a file is damaged (checksum, unreadable safetensors); the message names it.
    """
    folder = Path(folder)
    if verify and folder.is_dir():
        verify_checksums(folder, names=(CONFIG_NAME, weights))
    config = load_config(folder)
    path = _require(folder, weights)
    try:
        state = load_file(str(path), device=str(device) if device is not None else "cpu")
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{path} cannot be read: the file is damaged or cut short ({err})"
        ) from None
    return StoredModel(folder, config, state, weights)


def load_pretrained(
    folder: str | Path, device: str | torch.device | None = None, verify: bool = True
) -> YAN:
    """Rebuild a :class:`yan.model.YAN` from a folder written by :func:`save_pretrained`:
    ``YAN.from_pretrained(folder, device, verify=verify)``, in eval mode.

    Raises:
        FileNotFoundError: the folder, ``config.json`` or ``model.safetensors`` is missing.
        ValueError: a file is damaged (checksum, unreadable safetensors), or the weights do not
            match the config (missing/unexpected/misshaped tensors); the message names the file.
    """
    # Imported at call time, the one place this module touches the model: yan.model imports
    # this module at its top, and this function is kept for the callers that import it here.
    from .model import YAN

    return YAN.from_pretrained(folder, device=device, verify=verify)


__all__ = [
    "CARD_NAME",
    "CHECKSUMS_NAME",
    "CONFIG_NAME",
    "EMA_NAME",
    "VERSION_KEY",
    "WEIGHTS_NAME",
    "SavableModel",
    "StoredModel",
    "file_sha256",
    "load_config",
    "load_pretrained",
    "read_checksums",
    "read_pretrained",
    "save_pretrained",
    "verify_checksums",
    "write_checksums",
    "write_pretrained",
]
