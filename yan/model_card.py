"""The model card (``README.md``) of a YAN checkpoint folder or hub repository.

Written with every checkpoint (:meth:`yan.hub.YANHubMixin.save_pretrained`) and written again
when a folder is pushed (:func:`yan.hub.push_checkpoint`), so that an evaluation run after
training shows in the pushed card. Everything in it is read from the files, nothing is typed
by hand: the configuration, the parameter count of every part (:meth:`yan.model.YAN.
param_counts`), the training data and settings of the run (``run.json`` in the folder, or in
the run folder of a ``checkpoints/step-N``), and the tables of ``yan eval --out FOLDER``
(``eval_<task>.md``).

Example::

    card = model_card(model.config, model.param_counts(), Path("runs/s2"))
    card.save("runs/s2/README.md")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from . import __version__
from .config import YANConfig

RUN_FILE = "run.json"  # yan.run_state.RUN_FILE (not imported: that module imports the model)
EVAL_TABLES = "eval_*.md"  # yan.evaluate.write_outputs
# the run settings shown, in this order, when run.json has them
TRAINING_KEYS = (
    "stage",
    "task",
    "data",
    "stream",
    "max_steps",
    "batch_size",
    "grad_accum",
    "lr",
    "warmup",
    "weight_decay",
    "grad_clip",
    "max_len",
    "tokenizer",
    "seed",
    "precision",
    "ema_decay",
    "init",
)
PARTS = {
    "embeddings": "token embedding + output projection",
    "encoder": "encoder E_phi (without embedding)",
    "decoder": "decoder p_theta (without projection)",
    "flow_trunk": "latent flow trunk",
    "moe_head": "MoE head (K experts + gate)",
    "length_head": "length head",
}


def run_settings(folder: Path) -> dict[str, Any]:
    """``run.json`` of ``folder`` or, for ``RUN/checkpoints/step-N``, of ``RUN``; ``{}`` if none."""
    folder = Path(folder)
    candidates = [folder / RUN_FILE]
    if folder.parent.name == "checkpoints":
        candidates.append(folder.parent.parent / RUN_FILE)
    for path in candidates:
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                return {}  # a damaged run.json leaves the card without its training section
            return data if isinstance(data, dict) else {}
    return {}


def eval_tables(folder: Path) -> dict[str, str]:
    """The ``eval_<task>.md`` tables in ``folder``, by task."""
    found = sorted(Path(folder).glob(EVAL_TABLES))
    return {p.stem.removeprefix("eval_"): p.read_text(encoding="utf-8").strip() for p in found}


def _title(config: YANConfig) -> str:
    return (
        f"YAN ({config.arch}, d_model {config.d_model}, {config.K} experts, "
        f"vocabulary {config.vocab_size:,})"
    )


def model_card(
    config: YANConfig,
    counts: Mapping[str, int],
    folder: Path | None = None,
    *,
    repo_id: str | None = None,
    card_data: ModelCardData | None = None,
    has_ema: bool = False,
) -> ModelCard:
    """The card of a checkpoint of ``config`` with parameter ``counts`` (``param_counts()``).

    Args:
        folder: where the card looks for ``run.json`` and evaluation tables (``None``: none).
        repo_id: the hub repository, used in the loading example (default: ``"org/name"``).
        card_data: the card's YAML metadata (library name, tags); ``library_name: yan``
            when not given.
        has_ema: the folder holds ``ema.safetensors``; the example says how to load it.
    """
    data = card_data if card_data is not None else ModelCardData(library_name="yan")
    where = repo_id or "org/name"
    lines = [
        f"# {_title(config)}",
        "",
        "A non-autoregressive language model with a latent mixture-of-experts flow (YAN): the "
        "encoder maps tokens to latents, a few Euler steps of the MoE-FM flow carry noise to "
        "the target latents, and a light decoder reads every token at once. Saved by the `yan` "
        f"package {__version__}.",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoTokenizer",
        "from yan.model import YAN",
        "",
        f'model = YAN.from_pretrained("{where}")'
        + ('  # weights="ema": the moving average' if has_ema else ""),
        f'tokenizer = AutoTokenizer.from_pretrained("{where}")  # with <|padding|>, <|mask|>',
        "```",
        "",
        "## Parameters",
        "",
        "| part | parameters |",
        "|---|---:|",
    ]
    for key, label in PARTS.items():
        if key in counts:
            lines.append(f"| {label} | {counts[key]:,} |")
    lines += [f"| **total** | **{counts['total']:,}** |", ""]
    settings = run_settings(folder) if folder is not None else {}
    shown = [(k, settings[k]) for k in TRAINING_KEYS if settings.get(k) not in (None, "", {}, [])]
    if shown:
        lines += ["## Training", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | `{json.dumps(v) if not isinstance(v, str) else v}` |" for k, v in shown]
        if settings.get("overrides"):
            lines.append(f"| config overrides | `{json.dumps(settings['overrides'])}` |")
        lines.append("")
    tables = eval_tables(folder) if folder is not None else {}
    if tables:
        lines += ["## Evaluation", ""]
        for task, table in tables.items():
            lines += [f"### {task}", "", table, ""]
    lines += [
        "## Configuration",
        "",
        "```json",
        json.dumps(config.to_dict(), indent=2),
        "```",
        "",
    ]
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)
    return ModelCard(content)


__all__ = ["model_card", "run_settings", "eval_tables"]
