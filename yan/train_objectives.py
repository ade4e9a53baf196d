"""What :class:`yan.train.Trainer` trains: one interface, :class:`TrainObjective`, implemented for
YAN (:class:`StageObjective`: eq. 8 or eq. 11) and for the equal-budget baselines
(:class:`BaselineObjective`: GPT-2, BART and masked diffusion, each with its own loss).

The trainer owns everything a run shares whatever the model (DDP, bf16 autocast, gradient
accumulation, AdamW + warm-up, checkpoints and exact resume, ``metrics.jsonl``); the objective
owns what depends on the model: its loss parts (through ``forward``, so that DDP synchronises
the gradients), which parameters train, the validation pass, how a checkpoint writes its files,
and the banner's description. So ``yan train --model gpt2`` trains GPT-2 on the data, the
batches, the optimiser settings and the number of steps a YAN run gets (sec. 5.1: the
baselines at an equal budget).

What a run resolves before it builds one (the model's config and the sequence length of its
data) lives here too: :func:`resolve_model_config` and :func:`load_model_config`.

Example:
    >>> objective = build_objective(args, setup)    # the model, loaded from --init / --resume
    >>> parts = objective(batch, generator)          # {"loss": ..., ...}
"""

from __future__ import annotations

import copy
import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from yan.baselines.build import baseline_class, build_from_config, load_baseline, save_baseline
from yan.baselines.common import PRESET_NAMES, Baseline, BaselineConfig, preset_config
from yan.batch import Seq2SeqBatch
from yan.checkpoint import CONFIG_NAME, load_config, read_checksums, verify_checksums
from yan.config import YANConfig, preset
from yan.distributed import DistEnv, all_reduce_sum, broadcast_object
from yan.eval.validate import ValidationSettings, evaluating, rank_share
from yan.eval.validate import validate as validate_yan
from yan.model import YAN
from yan.resolve import ALIGNED_TASKS, loss_stage, resolve_config, start_for_task, task_of
from yan.train_args import MODELS, YAN_MODEL, TrainArgs

if TYPE_CHECKING:
    from yan.data.training import BatchSource
    from yan.tokenizer import YanTokenizer
    from yan.train_setup import RunSetup

# expert_assignment = "cluster": k-means runs on the target latents of this many first
# training batches (fit_expert_clusters then keeps at most 16,384 tokens of them)
CLUSTER_FIT_BATCHES = 64
# BaselineConfig fields --set may change; from an --init checkpoint only those that shape no
# parameter (the architecture is the checkpoint's)
BASELINE_FIELDS = ("d_model", "n_layers", "n_heads", "d_ff", "dropout", "aligned_positions",
                   "conv_kernel", "keep_source")  # fmt: skip
BASELINE_TRAINING_FIELDS = ("dropout", "keep_source")


class TrainObjective(nn.Module, ABC):
    """The model of a run, as the trainer sees it.

    ``forward(batch, generator, ce_steps)`` returns the loss parts as a dict of scalars, with
    the optimised one under ``"loss"`` (each is logged, averaged over micro-batches and ranks).
    The model is ``self.model``; DDP wraps the objective, not the model, because DDP
    synchronises gradients only for computations that go through ``forward``.
    """

    model: nn.Module
    find_unused_parameters = False  # DDP: some trainable parameter may get no gradient

    @abstractmethod
    def forward(
        self,
        batch: Seq2SeqBatch,
        generator: torch.Generator | None = None,
        ce_steps: int | None = None,
    ) -> dict[str, Tensor]: ...

    @abstractmethod
    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimiser updates; every other one is frozen here."""

    @abstractmethod
    def validate(
        self, batches: list[Seq2SeqBatch], env: DistEnv, settings: ValidationSettings
    ) -> dict[str, float]:
        """Validation metrics (``val_loss`` first), the same on every rank."""

    @abstractmethod
    def describe(self) -> str:
        """The model in the run's banner line: architecture, size, parameter counts."""

    def ce_steps(self, seed: int, step: int) -> int | None:
        """The Euler steps of this optimiser step's CE unroll, where the loss has one."""
        return None

    def start(self, source: BatchSource, env: DistEnv, *, seed: int, new_task: bool) -> None:
        """Called once before a new run's first step (not on resume), with the model on its
        device: anything fitted to the training data before training."""

    def checkpoint_writer(self, tok: YanTokenizer) -> Callable[[Path], None] | None:
        """How a checkpoint writes the model's files into a folder; ``None`` is YAN's format
        (:func:`yan.checkpoint.save_pretrained`, what :func:`yan.run_state.save_checkpoint`
        does by default)."""
        return None

    def _counts(self, trainable: list[nn.Parameter]) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in trainable)
        return f"{n_params / 1e6:.2f}M params ({n_train / 1e6:.2f}M trainable)"


# ---- YAN ----------------------------------------------------------------------------------------
def trainable_parameters(model: YAN, stage: int) -> list[nn.Parameter]:
    """``model.stage_parameters(stage)``, with every other parameter frozen.

    Parts that receive no gradient in a stage (the flow in stage 1, the length head when
    ``alpha_length = 0``) are frozen too: DDP expects a gradient for every trainable parameter.
    """
    params = model.stage_parameters(stage)
    if stage == 2 and model.config.alpha_length == 0:
        model.length_head.requires_grad_(False)
        params = [p for p in params if p.requires_grad]
    keep = {id(p) for p in params}
    for p in model.parameters():
        if id(p) not in keep:
            p.requires_grad_(False)
    return params


def needs_unused_search(config: YANConfig, stage: int) -> bool:
    """A trainable decoder with ``alpha_ce = 0`` gets no gradient in stage 2."""
    return stage == 2 and config.alpha_ce == 0 and not config.freeze_autoencoder


class StageObjective(TrainObjective):
    """YAN's objective of one stage: eq. (8) (``stage = 1``) or eq. (11) (``stage = 2``).

    YAN's losses are methods (``stage1_loss`` / ``stage2_loss``); this thin module routes them
    through ``forward`` for DDP.
    """

    def __init__(self, model: YAN, stage: int) -> None:
        super().__init__()
        self.model, self.stage = model, stage
        self.find_unused_parameters = needs_unused_search(model.config, stage)

    @classmethod
    def create(
        cls, config: YANConfig, stage: int, source: Path | None, verify: bool
    ) -> StageObjective:
        """A model of ``config``, with the weights of ``source`` when given."""
        model = YAN(config)
        if source is not None:  # a resumed checkpoint was verified when it was picked
            loaded = YAN.from_pretrained(source, verify=verify)
            model.load_state_dict(loaded.state_dict())
        return cls(model, stage)

    def forward(
        self,
        batch: Seq2SeqBatch,
        generator: torch.Generator | None = None,
        ce_steps: int | None = None,
    ) -> dict[str, Tensor]:
        if self.stage == 1:
            out: Any = self.model.stage1_loss(batch, generator=generator)
        else:
            out = self.model.stage2_loss(batch, generator=generator, ce_steps=ce_steps)
        return {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return trainable_parameters(self.model, self.stage)

    def ce_steps(self, seed: int, step: int) -> int | None:
        """``config.ce_steps`` drawn from the run seed and the step, so every rank and
        micro-batch unrolls the same T (DDP waits for the slowest rank) and a resumed run
        draws what it would have."""
        choices = self.model.config.ce_steps
        if self.stage != 2 or not choices:
            return None
        return int(np.random.default_rng([seed, step]).choice(choices))

    def start(self, source: BatchSource, env: DistEnv, *, seed: int, new_task: bool) -> None:
        """``expert_assignment = "cluster"``: k-means of the target latents of the first
        training batches (:meth:`YAN.fit_expert_clusters`) on rank 0, sent to every rank; the
        data position is rewound, so training still starts with those batches. Fitted at the
        start of stage 2, and again when a fine-tune brings a new task whose targets (e.g.
        labels) lie elsewhere; a resumed run keeps its own centres."""
        flow = self.model.flow
        if self.stage != 2 or flow.centres is None or not (flow.needs_centres or new_task):
            return
        centres = None
        if env.is_main:
            position = copy.deepcopy(source.state_dict())
            first = islice(iter(source), CLUSTER_FIT_BATCHES)
            centres = self.model.fit_expert_clusters(first, seed=seed).cpu()
            source.load_state_dict(position)
        centres = broadcast_object(centres, env)
        flow.centres.copy_(centres.to(flow.centres))

    def validate(
        self, batches: list[Seq2SeqBatch], env: DistEnv, settings: ValidationSettings
    ) -> dict[str, float]:
        """:func:`yan.eval.validate.validate`: eq. (8) / eq. (11) and token accuracies."""
        return validate_yan(
            self.model,
            batches,
            self.stage,
            env,
            mask_id=settings.mask_id,
            steps=settings.steps,
            seed=settings.seed,
            autocast=settings.autocast,
        )

    def describe(self) -> str:
        cfg = self.model.config
        return f"{cfg.arch} d={cfg.d_model} " + self._counts(
            self.model.stage_parameters(self.stage)
        )


# ---- the baselines ------------------------------------------------------------------------------
class BaselineObjective(TrainObjective):
    """A baseline's own training loss (:meth:`yan.baselines.Baseline.loss`: next-token CE for
    GPT-2 and BART, LLaDA's 1/t-weighted masked CE for masked diffusion); every parameter trains.

    Masked diffusion draws its masks from torch's global generator, which the trainer seeds per
    rank and saves in every checkpoint, so a resumed run draws what an uninterrupted one would.
    """

    def __init__(self, model: Baseline) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def create(cls, config: BaselineConfig, source: Path | None, verify: bool) -> BaselineObjective:
        """A baseline of ``config``, with the weights of ``source`` when given."""
        model = build_from_config(config)
        if source is not None:
            if verify and read_checksums(source) is not None:
                verify_checksums(source)  # as YAN.from_pretrained does for an --init
            # the saved config may differ in training fields (keep_source, dropout) only
            model.load_state_dict(load_baseline(source).state_dict())
        return cls(model)

    def forward(self, batch: Seq2SeqBatch, *yan_only: object) -> dict[str, Tensor]:
        # the generator and ce_steps are YAN's: masked diffusion draws its masks from torch's
        # global generator (see the class docstring) and no baseline unrolls a CE
        return {"loss": self.model.loss(batch)}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @torch.no_grad()
    def validate(
        self, batches: list[Seq2SeqBatch], env: DistEnv, settings: ValidationSettings
    ) -> dict[str, float]:
        """``val_loss``: the loss over the validation batches, each weighted by its target
        tokens, split over ranks and summed over all; in eval mode (no dropout) and under a
        forked, seeded RNG (masked diffusion's masks are the same at every evaluation and the
        training randomness is left as it was)."""
        sums = torch.zeros(2, dtype=torch.float64, device=env.device)  # tokens, loss x tokens
        with evaluating(self.model, env.device, settings.seed):
            for _, batch in rank_share(batches, env):
                n = batch.tgt_mask.sum().double()
                with settings.autocast():
                    loss = self.model.loss(batch)
                sums += torch.stack([n, loss.double() * n])
        all_reduce_sum(sums, env)
        return {"val_loss": float(sums[1]) / max(float(sums[0]), 1.0)}

    def describe(self) -> str:
        cfg = self.model.config
        layout = f"d={cfg.d_model} x {cfg.n_layers} layers"
        return f"{cfg.name} {layout} " + self._counts(self.trainable_parameters())

    def checkpoint_writer(self, tok: YanTokenizer) -> Callable[[Path], None]:
        """:func:`yan.baselines.save_baseline` (tied embeddings stored once) and the
        tokenizer: a folder :func:`yan.baselines.load_baseline` and ``yan generate
        --baseline`` read."""

        def write(folder: Path) -> None:
            save_baseline(self.model, folder)
            tok.save(folder)

        return write


# ---- before the model: its config -----------------------------------------------------------
def is_baseline(args: TrainArgs) -> bool:
    return args.model != YAN_MODEL


def baseline_preset(name: str) -> str:
    """The baseline size of a YAN preset: ``paper-trf`` / ``paper-mamba`` -> ``paper`` (GPT-2
    124M, BART-base 139M, ~200M masked diffusion), ``small`` and ``tiny`` as named."""
    size = "paper" if name.startswith("paper") else name
    if size not in PRESET_NAMES:
        raise ValueError(f"--preset {name} has no baseline size (known: {', '.join(PRESET_NAMES)})")
    return size


def longest_source(cls: type[Baseline], positions: int) -> int:
    """The longest ``L`` whose source and target of ``L`` tokens each fit ``positions``."""
    n = positions
    while n > 1 and cls.positions(n, n) > positions:
        n -= 1
    return n


def check_model_args(args: TrainArgs) -> None:
    """``--model``, ``--stage``, ``--preset``, ``--set`` and ``--max-len`` errors of a new run,
    before a tokenizer is trained and written."""
    if not is_baseline(args):
        early = preset(
            str(args.preset), **{k: v for k, v in args.overrides.items() if k != "vocab_size"}
        )
        if args.max_len is not None and args.max_len > early.max_len:
            raise ValueError(
                f"--max-len {args.max_len} exceeds the model's max_len={early.max_len}"
            )
        return
    baseline_preset(str(args.preset))
    _check_baseline_overrides(args, BASELINE_FIELDS)


def _check_baseline_overrides(args: TrainArgs, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(args.overrides) - set(allowed))
    if unknown:
        raise ValueError(
            f"--set {', '.join(unknown)}: --model {args.model} takes BaselineConfig fields "
            f"({', '.join(allowed)})"
        )


def load_model_config(folder: Path, model: str) -> YANConfig | BaselineConfig:
    """The config of checkpoint ``folder`` of a ``--model`` run (``config.json``)."""
    if model == YAN_MODEL:
        return load_config(folder)
    path = folder / CONFIG_NAME
    try:
        fields = json.loads(path.read_text())
        config = BaselineConfig(**fields)
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} has no {CONFIG_NAME}: not a checkpoint") from None
    except (TypeError, ValueError, AttributeError) as err:
        raise ValueError(
            f"{path} is not the config of a --model {model} checkpoint ({err})"
        ) from None
    if config.name != model:
        raise ValueError(f"{folder} holds a {config.name} checkpoint, not --model {model}")
    return config


def resolve_model_config(
    args: TrainArgs, tok: YanTokenizer, init: YANConfig | BaselineConfig | None
) -> tuple[YANConfig | BaselineConfig, int]:
    """The run's model config and the tokens per sequence of its data (``--max-len``).

    A baseline of a new run takes its size from ``--preset`` (:func:`baseline_preset`) and
    reads data of that YAN preset's length, so both models see the same batches; its positions
    fit a source and a target of that length. ``keep_source`` follows the task (an aligned task
    keeps the visible source tokens, as YAN's source start does) unless ``--set`` says
    otherwise.
    """
    if not is_baseline(args):
        assert init is None or isinstance(init, YANConfig)
        config = resolve_config(args.preset, args.overrides, tok, init)
        config = start_for_task(config, task_of(args), explicit="flow_start" in args.overrides)
        max_len = args.max_len or config.max_len
        if max_len > config.max_len:
            raise ValueError(f"--max-len {max_len} exceeds the model's max_len={config.max_len}")
        return config, max_len
    cls = baseline_class(args.model)
    ids = dict(vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id)
    if init is None:
        max_len = args.max_len or preset(str(args.preset)).max_len
        size = baseline_preset(str(args.preset))
        base = preset_config(args.model, size, **ids, max_len=cls.positions(max_len, max_len))
        allowed = BASELINE_FIELDS
    else:
        assert isinstance(init, BaselineConfig)
        base, allowed = init, BASELINE_TRAINING_FIELDS
        have = {k: getattr(init, k) for k in ids}
        if have != ids:
            raise ValueError(
                f"--init: the checkpoint's vocabulary {have} is not the tokenizer's {ids}"
            )
        max_len = args.max_len or longest_source(cls, init.max_len)
        if cls.positions(max_len, max_len) > init.max_len:
            raise ValueError(
                f"--max-len {max_len}: a source and a target of {max_len} tokens take "
                f"{cls.positions(max_len, max_len)} positions, the checkpoint has {init.max_len}"
            )
    _check_baseline_overrides(args, allowed)
    fields = {"keep_source": task_of(args) in ALIGNED_TASKS, **args.overrides}
    return dataclasses.replace(base, **fields), max_len


def build_objective(args: TrainArgs, setup: RunSetup) -> TrainObjective:
    """The objective of the run with its model, initialised from the current torch seed and
    loaded from the checkpoint to resume (already verified) or from ``--init`` (verified here)."""
    source = setup.resume_from or args.init
    verify = setup.resume_from is None
    if isinstance(setup.config, BaselineConfig):
        return BaselineObjective.create(setup.config, source, verify)
    return StageObjective.create(setup.config, loss_stage(args.stage), source, verify)


__all__ = [
    "BASELINE_FIELDS",
    "BASELINE_TRAINING_FIELDS",
    "CLUSTER_FIT_BATCHES",
    "MODELS",
    "YAN_MODEL",
    "BaselineObjective",
    "StageObjective",
    "TrainObjective",
    "baseline_preset",
    "build_objective",
    "check_model_args",
    "is_baseline",
    "load_model_config",
    "needs_unused_search",
    "resolve_model_config",
    "trainable_parameters",
]
