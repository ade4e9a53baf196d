"""Save and load YAN checkpoints: one folder, safetensors weights, JSON config, tokenizer files.

Layout of a checkpoint folder::

    model.safetensors   all parameters (no pickle: safe to load from untrusted sources)
    config.json         the resolved YANConfig (yan.config.YANConfig.to_dict)
    ...                 whatever tokenizer.save(folder) writes, when a tokenizer is given

The folder is written atomically: everything goes to a temporary sibling folder that is then
renamed into place, so a crash never leaves a half-written checkpoint behind.

Example::

    save_pretrained(model, "runs/yan-small", tokenizer=tokenizer)
    model = load_pretrained("runs/yan-small")  # or YAN.from_pretrained("runs/yan-small")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from .config import YANConfig

if TYPE_CHECKING:
    from .model import YAN

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


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
    return YANConfig.from_dict(data)


def load_pretrained(folder: str | Path, device: str | torch.device | None = None) -> YAN:
    """Rebuild a :class:`yan.model.YAN` from a folder written by :func:`save_pretrained`.

    Raises:
        FileNotFoundError: the folder, ``config.json`` or ``model.safetensors`` is missing.
        ValueError: the weights do not match the config (missing/unexpected/misshaped tensors).
    """
    from .model import YAN

    folder = Path(folder)
    config = load_config(folder)
    weights = _require(folder, WEIGHTS_NAME)
    state = load_file(str(weights), device=str(device) if device is not None else "cpu")
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


__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "load_config", "load_pretrained", "save_pretrained"]
