"""What a training run resolves before it builds a model: its task, its objective and its config.

The stage names a run accepts (:data:`STAGES`), the task each stage trains by default
(:data:`DEFAULT_TASK`), which objective a stage optimises (:func:`loss_stage`: eq. 8 or
eq. 11), and the run's :class:`~yan.config.YANConfig` (:func:`resolve_config`): a preset, or the
architecture of an ``--init`` checkpoint, plus ``--set`` overrides
(:func:`yan.config.parse_override`), with the vocabulary always taken from the tokenizer.

Example:
    >>> from yan.tokenizer import get_tokenizer
    >>> cfg = resolve_config("tiny", {"K": 2}, get_tokenizer("gpt2"))
    >>> cfg.K, cfg.tokenizer
    (2, 'gpt2')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from yan.config import YANConfig, preset
from yan.run_state import json_value

if TYPE_CHECKING:
    from yan.tokenizer import YanTokenizer
    from yan.train_args import TrainArgs

STAGES = ("1", "2", "finetune")
DEFAULT_TASK = {"1": "pretrain", "2": "infill"}
ALIGNED_TASKS = ("pretrain", "infill")  # target position l is source position l

# Config fields that only shape the loss or the training dynamics, not any parameter: these may
# differ between a checkpoint given to --init and the run that continues from it.
TRAINING_FIELDS = frozenset(
    {
        "tokenizer",
        "dropout",
        "sigma",
        "train_steps",
        "ce_steps",
        "lambda_ce",
        "lambda_mmd",
        "lambda_scale",
        "latent_noise_std",
        "mmd_max_tokens",
        "alpha_moefm",
        "alpha_ce",
        "alpha_length",
        "freeze_autoencoder",
        "stage1_mask_rate",
        "stage1_mask_span",
        "masked_ce_weight",
        "mmd_scale_bandwidths",
        "nll_reduction",
        "memory_positions",
        "flow_start",
        "start_noise",
        "flow_param",
        "expert_assignment",
        "expert_floor",
    }
)


def task_of(args: TrainArgs) -> str:
    """The run's task: ``--task``, else the stage's default (stage 1 ``pretrain``, 2 ``infill``)."""
    return args.task or DEFAULT_TASK[args.stage]


def loss_stage(stage: str) -> int:
    """Which objective a stage optimises: eq. (8) for stage 1, eq. (11) otherwise."""
    return 1 if stage == "1" else 2


def tokenizer_label(tok: YanTokenizer) -> str:
    """What ``YANConfig.tokenizer`` records: the name, or the hub id of a hub tokenizer."""
    return tok.source if tok.name == "hf" else tok.name


def resolve_config(
    preset_name: str | None,
    overrides: Mapping[str, Any],
    tok: YanTokenizer,
    init_config: YANConfig | None = None,
) -> YANConfig:
    """The run's :class:`YANConfig`: a preset (or the ``--init`` checkpoint's) plus ``--set``.

    The vocabulary always comes from the tokenizer. With an ``--init`` checkpoint the
    architecture is the checkpoint's: ``--preset`` and ``--set`` may repeat it but not change
    it (weights cannot change shape); loss weights and other :data:`TRAINING_FIELDS` may.
    """
    overrides = dict(overrides)
    if "vocab_size" in overrides and overrides["vocab_size"] != tok.vocab_size:
        raise ValueError(
            f"--set vocab_size={overrides['vocab_size']} does not match the tokenizer "
            f"({tok.vocab_size} ids including <|padding|> and <|mask|>)"
        )
    overrides.pop("vocab_size", None)
    if init_config is None:
        if preset_name is None:
            raise ValueError("--preset is required (or --init DIR)")
        return preset(
            preset_name,
            **{**overrides, "vocab_size": tok.vocab_size},
            tokenizer=tokenizer_label(tok),
        )
    init_dict = init_config.to_dict()
    if preset_name is not None:
        wanted = preset(preset_name, **overrides, vocab_size=tok.vocab_size).to_dict()
        what = f"--preset {preset_name}" + (" with --set" if overrides else "")
    else:
        unknown = sorted(set(overrides) - set(init_dict))
        if unknown:
            raise ValueError(f"unknown YANConfig field(s) in --set: {unknown}")
        wanted = {**init_dict, **overrides}
        what = "--set"
    diff = {
        k: (init_dict[k], wanted[k])
        for k in init_dict
        if k not in TRAINING_FIELDS and json_value(init_dict[k]) != json_value(wanted[k])
    }
    if diff:
        shown = ", ".join(f"{k}: checkpoint {a!r} vs {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ValueError(
            f"{what} does not match the architecture of the --init checkpoint ({shown}); "
            "a checkpoint cannot change shape: drop --preset or use the preset it was trained with"
        )
    return init_config.replace(**{k: v for k, v in overrides.items() if k in TRAINING_FIELDS})


def start_for_task(config: YANConfig, task: str, explicit: bool = False) -> YANConfig:
    """The source-bridge start (``flow_start = "source"``) needs a target aligned with its
    source; for other tasks (last-word, QA, classification) a run starts from noise unless
    ``--set flow_start=...`` says otherwise."""
    if explicit or task in ALIGNED_TASKS or config.flow_start != "source":
        return config
    return config.replace(flow_start="noise")


__all__ = [
    "ALIGNED_TASKS",
    "DEFAULT_TASK",
    "STAGES",
    "TRAINING_FIELDS",
    "loss_stage",
    "resolve_config",
    "start_for_task",
    "task_of",
    "tokenizer_label",
]
