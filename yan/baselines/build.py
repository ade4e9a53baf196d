"""Build baselines by name and preset, count their parameters, and save / load them."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from yan.baselines.bart import BartBaseline
from yan.baselines.common import BASELINES, Baseline, BaselineConfig, preset_config
from yan.baselines.gpt2 import GPT2Baseline
from yan.baselines.masked_diffusion import MaskedDiffusionBaseline

_CLASSES: dict[str, type[Baseline]] = {
    "gpt2": GPT2Baseline,
    "bart": BartBaseline,
    "masked-diffusion": MaskedDiffusionBaseline,
}
assert tuple(_CLASSES) == BASELINES

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def baseline_class(name: str) -> type[Baseline]:
    """The class of baseline ``name`` (one of :data:`yan.baselines.BASELINES`)."""
    if name not in _CLASSES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
    return _CLASSES[name]


def build_from_config(config: BaselineConfig) -> Baseline:
    """A freshly initialised baseline of the given architecture."""
    return _CLASSES[config.name](config)


def build_baseline(
    name: str, preset: str, *, vocab_size: int, pad_id: int, mask_id: int, max_len: int
) -> Baseline:
    """Baseline ``name`` (``"gpt2"``, ``"bart"``, ``"masked-diffusion"``) at size ``preset``.

    Presets: ``"paper"`` (GPT-2 124M, BART-base 139M, a ~200M masked-diffusion model, sizes
    quoted for the GPT-2 vocabulary), ``"small"`` (d=256, 4 layers, like YAN ``small``) and
    ``"tiny"`` (d=64, 2 layers, for tests). Parameter counts grow with ``vocab_size``.

    Example:
        >>> m = build_baseline("gpt2", "tiny", vocab_size=100, pad_id=98, mask_id=99, max_len=32)
        >>> m.generate(torch.tensor([[5, 6]]), torch.tensor([[True, True]]), 4).shape
        torch.Size([1, 4])
    """
    return build_from_config(
        preset_config(
            name, preset, vocab_size=vocab_size, pad_id=pad_id, mask_id=mask_id, max_len=max_len
        )
    )


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (tied embeddings count once)."""
    return sum(p.numel() for p in model.parameters())


def save_baseline(model: Baseline, folder: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (no pickle) into ``folder``."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    save_model(model, str(folder / WEIGHTS_FILE))
    return folder


def load_baseline(folder: str | Path, device: str = "cpu") -> Baseline:
    """Rebuild a baseline saved by :func:`save_baseline`; it is returned in eval mode.

    A ``config.json`` without ``aligned_positions`` or ``conv_kernel`` (written before those
    fields existed) loads with ``aligned_positions=False`` and ``conv_kernel=0``, the model
    those weights were trained with.
    """
    from safetensors.torch import load_model

    folder = Path(folder)
    for file in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / file).is_file():
            raise FileNotFoundError(f"no {file} in baseline folder {folder}")
    try:
        fields = json.loads((folder / CONFIG_FILE).read_text())
        # Saved before `aligned_positions` existed: those models used one continuous position
        # count (and have no segment embedding), not the new default.
        fields.setdefault("aligned_positions", False)
        fields.setdefault("conv_kernel", 0)  # likewise for the convolution
        config = BaselineConfig(**fields)
    except (TypeError, AttributeError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder / CONFIG_FILE} is not a baseline config: {err}") from None
    model = build_from_config(config)
    load_model(model, str(folder / WEIGHTS_FILE), device=device)
    return model.to(device).eval()
