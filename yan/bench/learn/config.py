"""The learn bench's settings: tasks, models, metrics, and :class:`LearnConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yan.bench.budget import RunBudget

TASKS = ("copy", "infill", "last-word", "classify")
MODELS = (
    "yan-trf",
    "yan-mamba",
    "masked-diffusion",
    "gpt2",
    "copy-source",
    "unigram",
    "ngram",
    "majority",
    "tfidf-logreg",
    "tfidf-logreg-budget",
    "bag-of-embeddings",
)
METRICS = (
    "token_acc",
    "masked_acc",
    "rouge1",
    "rougeL",
    "exact_match",
    "label_acc",
    "label_acc_free",
    "label_share",  # predictions equal to the most frequent one (1.0: a constant output)
    "agreement",  # tokens identical to the float32 generation (the low-precision rows)
)
ARCH_NAMES = {"transformer": "yan-trf", "mamba": "yan-mamba"}


@dataclass
class LearnConfig(RunBudget):
    """What ``yan bench learn`` trains and scores (see the module docstring).

    The shared budget (preset, data, max_len, batch_size, lr, warmup, seed, device) is
    :class:`~yan.bench.budget.RunBudget`'s; ``data`` is the copy / infill / last-word corpus.

    Attributes:
        classify_data: the labelled corpus of the classification task.
        stage1_steps, stage2_steps: YAN's two stages; each baseline trains for their sum.
        mamba_stage2_steps: stage-2 steps of YAN-M when they must differ (``None``: the same).
            On a CPU the pure-PyTorch selective scan makes a YAN-M stage-2 step ~4x a
            YAN-TRF one (5 unrolled trunk evaluations of a sequential scan); a shorter
            budget for it is possible, and its records carry the steps it really had.
        finetune_steps: classification fine-tuning steps for every model.
        archs: YAN variants (``transformer``, ``mamba``).
        baselines: ``masked-diffusion`` and/or ``gpt2``.
        T, routings: YAN's Euler steps and routing modes scored on copy / infill / last-word.
        diffusion_T: denoising steps of masked diffusion (``None``: one token per step).
        eval_examples: held-out examples per task (the first ones of the test split).
        classify_examples: held-out reviews for classification, a seeded sample of the whole
            test split (:func:`yan.bench.learn.data.spread`); ``None``: ``eval_examples``.
        overrides: YANConfig fields for every YAN run (e.g. the paper-literal recipe).
        low_precision: also score YAN at T = 3, frozen routing with its weights in this dtype
            (``bfloat16``; ``None``: not), with its agreement with the float32 tokens.
        work: folder for the trained models; reruns reuse finished ones.
    """

    classify_data: str = "movie-reviews"
    stage1_steps: int = 1500
    stage2_steps: int = 500
    mamba_stage2_steps: int | None = None
    finetune_steps: int = 300
    archs: tuple[str, ...] = ("transformer", "mamba")
    baselines: tuple[str, ...] = ("masked-diffusion", "gpt2")
    T: tuple[int, ...] = (1, 3, 4, 8)
    routings: tuple[str, ...] = ("frozen", "argmax", "resample")
    diffusion_T: tuple[int | None, ...] = (8, None)
    eval_examples: int = 500
    classify_examples: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    low_precision: str | None = "bfloat16"
    work: Path = Path("runs/bench-learn")
    progress: bool = True

    @classmethod
    def quick(cls) -> LearnConfig:
        """The <= 30 minute CPU version (what ``--quick`` and ``make demo`` rely on)."""
        return cls(
            stage1_steps=400,
            stage2_steps=100,
            finetune_steps=150,
            diffusion_T=(8,),
            eval_examples=100,
            classify_examples=400,
            work=Path("runs/bench-learn-quick"),
        )

    def __post_init__(self) -> None:
        self.work = Path(self.work)
        for name in ("stage1_steps", "stage2_steps", "finetune_steps", "eval_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.classify_examples is not None and self.classify_examples < 1:
            raise ValueError(f"classify_examples must be >= 1, got {self.classify_examples}")
        if self.low_precision is not None:
            from yan.precision import dtype_name, resolve_dtype

            self.low_precision = dtype_name(resolve_dtype(self.low_precision))
        if self.mamba_stage2_steps is not None and self.mamba_stage2_steps < 1:
            raise ValueError(f"mamba_stage2_steps must be >= 1, got {self.mamba_stage2_steps}")
        unknown = set(self.archs) - set(ARCH_NAMES)
        if unknown:
            raise ValueError(f"unknown archs {sorted(unknown)}; expected {tuple(ARCH_NAMES)}")
        unknown = set(self.baselines) - {"masked-diffusion", "gpt2"}
        if unknown:
            raise ValueError(
                f"unknown baselines {sorted(unknown)}; expected masked-diffusion, gpt2"
            )

    @property
    def pretrain_steps(self) -> int:
        """Optimiser steps before classification fine-tuning (YAN-TRF and the baselines)."""
        return self.stage1_steps + self.stage2_steps

    def stage2_for(self, arch: str) -> int:
        """Stage-2 steps of one YAN variant."""
        if arch == "mamba" and self.mamba_stage2_steps is not None:
            return self.mamba_stage2_steps
        return self.stage2_steps
