"""Train YAN: stage 1 (eq. 8), stage 2 (eq. 11) and fine-tuning, on one process or under torchrun.

::

    yan train --preset small --data wiki-mini --stage 1 --max-steps 2000 --out runs/s1
    yan train --preset small --data wiki-mini --stage 2 --init runs/s1 --max-steps 2000 --out runs/s2
    yan train --stage finetune --task qa --data squad --init runs/s2 --max-steps 5000 --out runs/ft
    torchrun --nproc_per_node=8 -m yan.train --preset paper-trf --data finewiki,fineweb-edu ...

Stages (sec. 4.2, App. B.3-B.4):

* ``--stage 1``: the regularised autoencoder of eq. (8): CE + MMD + scale, latent noise; only
  encoder and decoder train. Default task ``pretrain`` (the text is the target).
* ``--stage 2``: MoE-FM NLL + CE of the decoded 4-step Euler endpoint, eq. (11), gradients
  through the unrolled solver; encoder and decoder frozen (``YAN.stage_parameters(2)``).
  On a text corpus the framing is infilling (source = masked text, target = full text).
  ``--init DIR`` starts from a stage-1 output.
* ``--stage finetune --task T --init DIR``: the stage-2 objective on a downstream task from a
  pretrained checkpoint, learning rate 1e-5 by default (App. B.3).

Optimisation (App. B.3): AdamW(0.9, 0.999, weight decay 0.01), linear warm-up from 0 over
``--warmup`` steps then constant, gradient clipping at 1.0, gradient accumulation, bf16
autocast on CUDA. ``--batch-size`` is the *global* batch (sequences per optimiser step over all
processes and accumulation steps), so the paper's 32 stays 32 on any number of GPUs.

Output folder ``--out DIR``::

    DIR/model.safetensors, config.json, tokenizer files   latest weights: YAN.from_pretrained(DIR)
    DIR/checksums.json                                     sha256 of the exported files
    DIR/checkpoints/step-XXXXXXXX/                         full resumable checkpoint (also
        model.safetensors, config.json, tokenizer files    loadable with from_pretrained)
        optimizer.pt          AdamW state (plain tensors; torch.load(weights_only=True))
        trainer_state.json    step, scheduler, run settings, per-rank RNG states and data position
        checksums.json        sha256 and size of every file above, verified on load and resume
    DIR/metrics.jsonl         one JSON object per logged step (train) and per validation
    DIR/run.json              the arguments of the last invocation
    DIR/.train.lock           while a run is training: its pid, host and start time

One run owns ``DIR`` at a time: a second ``yan train`` on it stops with an error naming the
owner; a lock left by a killed run on this host is taken over with a warning. A checkpoint
folder appears only complete (written under a hidden name, then renamed), so a crash during a
save leaves the previous one in place; ``--resume`` picks the newest one whose checksums verify,
setting newer damaged ones aside as ``checkpoints/damaged-step-N`` with a warning (two are kept
by default, so there is one to fall back on). A run never starts again from step 0 over an
existing metrics history unless ``--overwrite`` says so. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import inspect
import json
import math
import os
import pickle
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from yan import data as yan_data
from yan.batch import Seq2SeqBatch
from yan.checkpoint import CONFIG_NAME, load_config, load_pretrained
from yan.cli import exit_with_error
from yan.config import PAPER_LITERAL, PRESETS, YANConfig, preset
from yan.data.hub import HUB_CORPORA
from yan.data.tasks import InfillConfig, sample_mask_positions
from yan.distributed import (
    DEVICES,
    DistEnv,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_distributed,
    main_first,
    main_only,
    shard,
    shutdown,
)
from yan.model import YAN
from yan.optim import (
    FINETUNE_LR,
    PRETRAIN_LR,
    WARMUP_STEPS,
    WEIGHT_DECAY,
    build_optimizer,
    warmup_constant,
)
from yan.run_state import (
    DAMAGED_PREFIX,
    METRICS_FILE,
    OPTIMIZER_FILE,
    RUN_FILE,
    STATE_FILE,
    STATE_FORMAT,
    MetricsLog,
    RunLock,
    atomic_write_text,
    check_resume,
    checkpoint_dirs,
    clean_staging,
    clear_run,
    json_value,
    latest_checkpoint,
    metrics_history,
    rank_seed,
    read_state,
    resumable_checkpoint,
    rng_state,
    save_checkpoint,
    set_aside,
    set_rng_state,
)
from yan.threads import apply_threads, pick_threads
from yan.tokenizer import BPE_FILE, META_FILE, YanTokenizer, get_tokenizer

STAGES = ("1", "2", "finetune")
DEFAULT_TASK = {"1": "pretrain", "2": "infill"}
# expert_assignment = "cluster": k-means runs on the target latents of this many first
# training batches (fit_expert_clusters then keeps at most 16,384 tokens of them)
CLUSTER_FIT_BATCHES = 64
MIN_BPE_VOCAB = 512  # a byte-level BPE needs 256 bytes + specials; below this it is all bytes

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
    }
)
# Run settings a --resume must share with the checkpoint to continue the same loss curve.


# ---- arguments ------------------------------------------------------------------------------
@dataclass
class TrainArgs:
    """Everything a training run needs; the CLI flags map one to one onto these fields.

    ``batch_size`` is global (summed over processes and accumulation steps); ``lr`` ``None``
    means the paper's rate for the stage (1e-4 pretraining, 1e-5 fine-tuning); ``max_len``
    ``None`` means the config's; ``task`` ``None`` means ``pretrain`` (stage 1) or ``infill``
    (stage 2); ``threads`` ``None`` keeps torch's count (the CLI has picked the idle cores,
    :mod:`yan.threads`), except that a resumed run takes the count its checkpoint was trained
    with, so that it continues bit-identically. See ``yan train --help`` for the rest.
    """

    out: Path
    data: str
    stage: str = "1"
    preset: str | None = None
    task: str | None = None
    max_steps: int = 1000
    init: Path | None = None
    resume: bool = False
    batch_size: int = 32
    grad_accum: int = 1
    lr: float | None = None
    warmup: int = WARMUP_STEPS
    weight_decay: float = WEIGHT_DECAY
    grad_clip: float = 1.0
    max_len: int | None = None
    tokenizer: str | None = None
    seed: int = 0
    eval_every: int = 500
    eval_batches: int = 20
    eval_steps: int = 4
    save_every: int = 1000
    log_every: int = 10
    keep_checkpoints: int = 2
    overrides: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    sample_by: str = "line"
    stream: bool = False
    strict: bool = False
    device: str = "auto"
    threads: int | None = None
    precision: str = "auto"
    progress: bool = True
    cache_dir: str | None = None
    debug_rank_dump: Path | None = None
    overwrite: bool = False
    allow_stage1_over_flow: bool = False

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.init = Path(self.init) if self.init is not None else None
        self.stage = str(self.stage)
        if self.debug_rank_dump is not None:
            self.debug_rank_dump = Path(self.debug_rank_dump)


@dataclass
class TrainResult:
    """What :func:`train` returns: the output folder, the final step, the last train and val
    metrics of this invocation, and the training-loop seconds of the whole run (all resumes)."""

    out: Path
    step: int
    train: dict[str, Any]
    val: dict[str, Any]
    elapsed: float


def _check_args(args: TrainArgs) -> None:
    """Argument errors that need no data or model, with the flag named in every message."""
    if args.stage not in STAGES:
        raise ValueError(f"--stage must be one of {', '.join(STAGES)}, got {args.stage!r}")
    if args.preset is not None and args.preset not in PRESETS:
        raise ValueError(f"unknown --preset {args.preset!r}; available: {', '.join(PRESETS)}")
    if args.task is not None and args.task not in yan_data.TASKS:
        raise ValueError(f"unknown --task {args.task!r}; known: {', '.join(yan_data.TASKS)}")
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
    if args.device not in DEVICES:
        raise ValueError(f"--device must be one of {DEVICES}, got {args.device!r}")
    if args.precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"--precision must be auto, fp32 or bf16, got {args.precision!r}")
    if args.init is not None and not args.init.is_dir():
        raise FileNotFoundError(f"--init checkpoint folder not found: {args.init}")


def task_of(args: TrainArgs) -> str:
    return args.task or DEFAULT_TASK[args.stage]


def loss_stage(stage: str) -> int:
    """Which objective a stage optimises: eq. (8) for stage 1, eq. (11) otherwise."""
    return 1 if stage == "1" else 2


# ---- config and tokenizer -------------------------------------------------------------------
def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (``K=4``, ``freeze_autoencoder=false``) or a bare string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


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


ALIGNED_TASKS = ("pretrain", "infill")  # target position l is source position l


def start_for_task(config: YANConfig, task: str, explicit: bool = False) -> YANConfig:
    """The source-bridge start (``flow_start = "source"``) needs a target aligned with its
    source; for other tasks (last-word, QA, classification) a run starts from noise unless
    ``--set flow_start=...`` says otherwise."""
    if explicit or task in ALIGNED_TASKS or config.flow_start != "source":
        return config
    return config.replace(flow_start="noise")


def corpus_texts(args: TrainArgs) -> list[str]:
    """Every text field of the training split (the tokenizer must not see val/test)."""
    records = yan_data.load_corpus(
        args.data, columns=args.columns or None, cache_dir=args.cache_dir, sample_by=args.sample_by
    )
    if not records:
        raise ValueError(f"data set {args.data!r} is empty")
    group = "doc" if all("doc" in r for r in records) else None
    train_records = yan_data.split(records, seed=args.seed, group_by=group)["train"]
    fields = ("text", "context", "question", "answer", "label")
    texts = [r[f] for r in train_records for f in fields if isinstance(r.get(f), str) and r[f]]
    if not texts:
        raise ValueError(f"data set {args.data!r} has no text to train a tokenizer on")
    return texts


def bpe_vocab_size(args: TrainArgs) -> int:
    """Size of a BPE trained for this run: ``--set vocab_size`` or the preset's, at least 512."""
    wanted = args.overrides.get("vocab_size")
    if wanted is None:
        wanted = PRESETS[args.preset or "paper-trf"].get("vocab_size", YANConfig.vocab_size)
    if isinstance(wanted, bool) or not isinstance(wanted, int):
        raise ValueError(f"--set vocab_size must be an integer, got {wanted!r}")
    return max(int(wanted), MIN_BPE_VOCAB)


def fresh_tokenizer(args: TrainArgs, env: DistEnv, streamed: bool) -> YanTokenizer:
    """``--tokenizer`` (default: the preset's). ``bpe`` is trained on the training split by rank
    0, saved into the output folder, and loaded from there by the other ranks."""
    assert args.preset is not None  # checked by _check_args when there is no --init
    name = args.tokenizer or str(PRESETS[args.preset].get("tokenizer", YANConfig.tokenizer))
    if name != "bpe":
        return get_tokenizer(name)
    if streamed:
        raise ValueError(
            "--tokenizer bpe is trained on the corpus and needs an in-memory data set; with a "
            "streamed corpus pass --tokenizer llama3 (the paper's), gpt2 or a tokenizer folder"
        )

    def train_and_save() -> None:
        tok = YanTokenizer.train(corpus_texts(args), vocab_size=bpe_vocab_size(args))
        args.out.mkdir(parents=True, exist_ok=True)
        _save_tokenizer_atomic(tok, args.out)

    main_only(train_and_save, env)  # one BPE for all ranks: trained once, read back by all
    return YanTokenizer.load(args.out)


def _save_tokenizer_atomic(tok: YanTokenizer, folder: Path) -> None:
    with tempfile.TemporaryDirectory(dir=folder, prefix=".tokenizer-") as tmp:
        tok.save(tmp)
        for path in sorted(Path(tmp).iterdir(), key=lambda p: p.name == META_FILE):
            os.replace(path, folder / path.name)  # the metadata file last: it marks completeness


# ---- data -----------------------------------------------------------------------------------
class BatchSource(Protocol):
    """An iterable of batches with a resumable position (``BatchIterator``, :class:`StreamShard`)."""

    def __iter__(self) -> Iterator[Seq2SeqBatch]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def mask_batch(
    batch: Seq2SeqBatch, mask_id: int, rng: np.random.Generator, cfg: InfillConfig
) -> Seq2SeqBatch:
    """Infilling framing of a text batch (App. B.2): source = target with spans masked."""
    src = batch.tgt.clone()
    for row, n in enumerate(batch.tgt_mask.sum(1).tolist()):
        positions = sample_mask_positions(int(n), rng, cfg)
        src[row, torch.from_numpy(positions)] = mask_id
    return Seq2SeqBatch(src, batch.tgt_mask.clone(), batch.tgt, batch.tgt_mask)


class StreamShard:
    """This rank's share of a streamed corpus: of every ``world_size`` consecutive batches, batch
    ``rank`` (a rank-offset iterator), optionally in the infilling framing.

    Reading whole groups keeps the stream position identical on all ranks, so the saved
    position (the stream's own ``state_dict`` plus the group count) resumes exactly.
    """

    def __init__(self, stream: Any, env: DistEnv, *, infill_mask_id: int | None, seed: int) -> None:
        self.stream, self.env = stream, env
        self.mask_id, self.seed = infill_mask_id, seed
        self.groups = 0

    def __iter__(self) -> Iterator[Seq2SeqBatch]:
        it = iter(self.stream)
        while True:
            group = list(islice(it, self.env.world_size))
            if len(group) < self.env.world_size:
                return
            self.groups += 1
            batch = group[self.env.rank]
            if self.mask_id is not None:
                rng = np.random.default_rng([self.seed, self.env.rank, self.groups])
                batch = mask_batch(batch, self.mask_id, rng, InfillConfig())
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "groups": self.groups}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.groups = int(state["groups"])


def streamed_sources(args: TrainArgs) -> list[str] | None:
    """The sources of a streamed pretraining run (``--stream`` or a streamed hub corpus)."""
    parts = [p.strip() for p in args.data.split(",") if p.strip()]
    if not parts:
        raise ValueError("--data is empty")
    streaming = [p for p in parts if p in HUB_CORPORA and HUB_CORPORA[p].streaming]
    if not (args.stream or streaming):
        if len(parts) > 1:
            raise ValueError(
                f"--data {args.data!r}: several comma-separated sources are only supported for "
                "streamed pretraining corpora (--stream or finewiki,fineweb-edu)"
            )
        return None
    if task_of(args) not in ("pretrain", "infill"):
        raise ValueError(
            f"a streamed corpus is pretraining text: --task must be pretrain or infill, "
            f"got {task_of(args)!r}"
        )
    return parts


@dataclass
class RunData:
    train: BatchSource
    val: list[Seq2SeqBatch]
    description: str


def build_data(
    args: TrainArgs, tok: YanTokenizer, env: DistEnv, micro: int, max_len: int
) -> RunData:
    """Training iterator for this rank's shard and the (shared) validation batches."""
    task = task_of(args)
    sources = streamed_sources(args)
    n_val = args.eval_batches
    if sources is not None:
        infill_id = tok.mask_id if task == "infill" else None
        kwargs: dict[str, Any] = dict(max_len=max_len, batch_size=micro, sources=sources)
        kwargs["text_column"] = args.columns.get("text")
        train_stream = yan_data.PretrainStream(tok, split="train", seed=args.seed, **kwargs)
        val_stream = yan_data.PretrainStream(tok, split="val", seed=args.seed, **kwargs)
        val = list(islice(iter(val_stream), n_val))
        if infill_id is not None:  # fixed masks: every evaluation scores the same positions
            rng = np.random.default_rng([args.seed, 10**6])
            val = [mask_batch(b, infill_id, rng, InfillConfig()) for b in val]
        train = StreamShard(train_stream, env, infill_mask_id=infill_id, seed=args.seed)
        return RunData(train, val, f"streamed {', '.join(sources)} ({task})")
    splits = main_first(
        lambda: yan_data.prepare(
            args.data,
            task,
            tok,
            max_len=max_len,
            seed=args.seed,
            cache_dir=args.cache_dir,
            columns=args.columns or None,
            strict=args.strict,
            sample_by=args.sample_by,
        ),
        env,
    )
    n_train, n_val_ex = len(splits["train"]), len(splits.get("val", []))
    mine = {"train": shard(splits["train"], env)}
    if splits.get("val"):
        mine["val"] = splits["val"]
    loaders = yan_data.make_loaders(mine, task, tok, batch_size=micro, seed=args.seed)
    val = list(islice(iter(loaders["val"]), n_val)) if "val" in loaders else []
    desc = f"{args.data} ({task}: {n_train} train / {n_val_ex} val examples)"
    return RunData(loaders["train"], val, desc)


# ---- the objective under DDP ----------------------------------------------------------------
class StageObjective(nn.Module):
    """``forward(batch, generator)`` = the stage's loss parts as a dict of scalars.

    DDP synchronises gradients only for computations that go through ``forward``; YAN's losses
    are methods, so this thin module routes them through one.
    """

    def __init__(self, model: YAN, stage: int) -> None:
        super().__init__()
        self.model, self.stage = model, stage

    def forward(
        self,
        batch: Seq2SeqBatch,
        generator: torch.Generator | None = None,
        ce_steps: int | None = None,
    ) -> dict[str, torch.Tensor]:
        if self.stage == 1:
            out: Any = self.model.stage1_loss(batch, generator=generator)
        else:
            out = self.model.stage2_loss(batch, generator=generator, ce_steps=ce_steps)
        return {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}


def _no_buffer_sync() -> dict[str, bool]:
    """DDP keyword that skips the per-step buffer broadcast (YAN's buffers are fixed
    sinusoidal positions and the cluster centres, sent to every rank once before training);
    its name changed in torch 2.13."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return {key: False}


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


# ---- evaluation -----------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: YAN,
    batches: list[Seq2SeqBatch],
    stage: int,
    env: DistEnv,
    *,
    mask_id: int | None,
    steps: int,
    seed: int,
    autocast: Any,
) -> dict[str, float]:
    """Validation loss and token accuracies, batches split over ranks, sums all-reduced.

    Stage 1: loss of eq. (8) without latent noise, its CE, and reconstruction accuracy. Stage 2:
    loss of eq. (11), and the accuracy of ``model.generate`` with ``steps`` Euler steps and
    oracle target lengths, over all target tokens and (infilling) over masked positions.
    Runs under a forked RNG so that evaluating never changes the training randomness.
    """
    device = env.device
    sums = torch.zeros(7, dtype=torch.float64, device=device)
    fork = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        was_training = model.training
        model.eval()
        gen = torch.Generator(device=device).manual_seed(seed)
        try:
            for i, batch in enumerate(batches):
                if i % env.world_size != env.rank:
                    continue
                batch = batch.to(device)
                n = batch.tgt_mask.sum().double()
                with autocast():
                    if stage == 1:
                        out: Any = model.stage1_loss(batch, noise=False, generator=gen)
                    else:
                        out = model.stage2_loss(batch, generator=gen)
                sums[0] += n
                sums[1] += out.loss.double() * n
                sums[2] += out.ce.double() * n
                if stage == 1:
                    sums[3] += out.accuracy.double() * n
                    sums[4] += n
                    continue
                with autocast():
                    g = model.generate(
                        batch.src,
                        batch.src_mask,
                        tgt_len=batch.tgt_mask.sum(1),
                        steps=steps,
                        seed=seed + i,
                    )
                width = g.tokens.shape[1]
                tgt, tmask = batch.tgt[:, :width], batch.tgt_mask[:, :width]
                hit = (g.tokens == tgt) & tmask
                sums[3] += hit.sum()
                sums[4] += tmask.sum()
                if mask_id is not None and batch.src.shape == batch.tgt.shape:
                    masked = (batch.src == mask_id)[:, :width] & tmask
                    sums[5] += (hit & masked).sum()
                    sums[6] += masked.sum()
        finally:
            model.train(was_training)
    all_reduce_sum(sums, env)
    total = max(float(sums[0]), 1.0)
    out_metrics = {"val_loss": float(sums[1]) / total, "val_ce": float(sums[2]) / total}
    key = "val_recon_acc" if stage == 1 else "val_token_acc"
    out_metrics[key] = float(sums[3]) / max(float(sums[4]), 1.0)
    if float(sums[6]) > 0:
        out_metrics["val_masked_acc"] = float(sums[5]) / float(sums[6])
    return out_metrics


# ---- the run --------------------------------------------------------------------------------
def _run_settings(
    args: TrainArgs, env: DistEnv, max_len: int, lr: float, tokenizer_fingerprint: str
) -> dict[str, Any]:
    data = args.data
    if Path(data).expanduser().exists():
        data = str(Path(data).expanduser().resolve())
    return {
        "stage": args.stage,
        "task": task_of(args),
        "data": data,
        "columns": dict(sorted(args.columns.items())),
        "sample_by": args.sample_by,
        "stream": streamed_sources(args) is not None,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "world_size": env.world_size,
        "max_len": max_len,
        "lr": lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        # not a resume key: `yan generate` / `yan eval` compare it with the tokenizer in use
        "tokenizer_fingerprint": tokenizer_fingerprint,
        "init": str(args.init) if args.init is not None else None,
        # the lineage of the weights, for a later stage-1 --init (see stage1_over_flow)
        "flow_trained": args.stage != "1"
        or (args.init is not None and stage1_over_flow(args.init) is not None),
    }


@dataclass
class OutPlan:
    """What :func:`_prepare_out` decided for ``--out``; carried out only when training starts
    (:meth:`Trainer._start_files`), so a run refused later (a resume with other arguments, bad
    data) leaves the folder as it was."""

    resume_from: Path | None = None
    damaged: list[tuple[Path, str]] = field(default_factory=list)  # newer than resume_from
    clear: bool = False  # --overwrite: delete the previous run's files first


def _prepare_out(args: TrainArgs) -> OutPlan:
    """The checkpoint to resume from, after checking ``--out`` may be (re)used (rank 0, under
    the run lock).

    ``--resume`` takes the newest checkpoint that verifies; newer damaged ones are named in a
    warning and will be set aside (``checkpoints/damaged-step-N``), so that the resumed run can
    save those steps again. Starting from step 0 over a run's history (its metrics or
    checkpoints) needs ``--overwrite``, which deletes them first: a history silently replaced
    by a new run's is lost work that no banner line makes up for.
    """
    out = args.out
    if args.resume:
        found, damaged = resumable_checkpoint(out)
        if found is not None:
            for folder, problem in damaged:
                warnings.warn(
                    f"--resume: skipping {folder.name}: {problem}; it is set aside as "
                    f"{DAMAGED_PREFIX}{folder.name}, resuming from {found.name}",
                    stacklevel=2,
                )
            return OutPlan(found, damaged)
        last = metrics_history(out)
        if damaged or last is not None:
            what = (
                "no usable checkpoint (" + "; ".join(f"{f.name}: {why}" for f, why in damaged) + ")"
                if damaged
                else f"a metrics history up to step {last} but no checkpoint"
            )
            if not args.overwrite:
                raise ValueError(
                    f"--resume: {out} has {what}; nothing was changed. Pass --overwrite to "
                    "start again from step 0 (this deletes the run's checkpoints and metrics), "
                    "or choose another --out"
                )
            return OutPlan(clear=True)
        return OutPlan()
    # files a starting run writes before its first step may be left by a run that failed early
    startup = {META_FILE, BPE_FILE, CONFIG_NAME, RUN_FILE}
    if out.is_dir() and any(
        p.name not in startup and not p.name.startswith(".") for p in out.iterdir()
    ):
        if args.overwrite:
            return OutPlan(clear=True)
        latest = latest_checkpoint(out)
        what = f"a training run (checkpoint {latest.name})" if latest else "files"
        raise ValueError(
            f"--out {out} already holds {what}; pass --resume to continue it, --overwrite to "
            "start again from step 0 (deleting its checkpoints and metrics), or choose an "
            "empty --out"
        )
    return OutPlan()


def stage1_over_flow(init: Path) -> str | None:
    """Why the ``--init`` checkpoint holds a trained latent flow (its run's stage), or ``None``.

    Looks at what the training runs recorded: ``trainer_state.json`` of a ``step-N`` folder or of
    the newest checkpoint of an output folder (``flow_trained`` there survives a stage-1 rerun),
    and ``run.json``.
    """
    states = [init / STATE_FILE] + [d / STATE_FILE for d in checkpoint_dirs(init)[-1:]]
    records: list[dict[str, Any]] = []
    for path in states:
        try:
            records.append(json.loads(path.read_text()).get("run", {}))
        except (OSError, ValueError, AttributeError):
            continue
    try:
        records.append(json.loads((init / RUN_FILE).read_text()))
    except (OSError, ValueError):
        pass
    for run in records:
        if not isinstance(run, dict):
            continue
        if str(run.get("stage")) in ("2", "finetune"):
            return f"it was trained with --stage {run['stage']}"
        if run.get("flow_trained"):
            return "its flow was trained by an earlier stage-2 run"
    return None


def _weights_checksum(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def train(args: TrainArgs) -> TrainResult:
    """Run (or resume) one training stage; see the module docstring. Raises ``ValueError`` /
    ``FileNotFoundError`` with a message naming the argument for every bad input."""
    _check_args(args)
    env = init_distributed(args.device)
    locks: list[RunLock] = []
    try:
        if not env.is_main:
            warnings.filterwarnings("ignore")  # data warnings are reported once, by rank 0
        # one run per folder, for the whole run: rank 0 holds the lock, every rank gets its error
        main_only(lambda: locks.append(RunLock.acquire(args.out)), env)
        setup = _setup(args, env)
        # data before the model: bad data fails before anything is written
        run_data = build_data(args, setup.tok, env, setup.micro, setup.max_len)
        return Trainer(args, env, setup, run_data).run()
    finally:
        for lock in locks:
            lock.release()
        shutdown(env)


@dataclass
class _Setup:
    """Resolved inputs of a run: tokenizer, config, sizes, and the checkpoint to resume."""

    tok: YanTokenizer
    config: YANConfig
    max_len: int
    lr: float
    micro: int
    run: dict[str, Any]
    resume_from: Path | None
    saved: dict[str, Any] | None
    plan: OutPlan = field(default_factory=OutPlan)


def _setup(args: TrainArgs, env: DistEnv) -> _Setup:
    """Check ``--out``, pick the tokenizer, resolve the config; refuse incompatible resumes."""
    if args.init is not None and args.stage == "1" and not args.allow_stage1_over_flow:
        why = stage1_over_flow(args.init)
        if why is not None:
            raise ValueError(
                f"--stage 1 --init {args.init}: that checkpoint holds a trained latent flow "
                f"({why}); stage 1 retrains the autoencoder under it, so the flow's latents no "
                "longer match and stage 2 has to be trained again. Start stage 1 from a stage-1 "
                "checkpoint, or pass --allow-stage1-over-flow if that is what you mean"
            )
    plan = main_only(lambda: _prepare_out(args), env)
    resume_from = plan.resume_from
    init_config = load_config(args.init) if args.init is not None else None
    per_step = env.world_size * args.grad_accum
    if args.batch_size % per_step:
        raise ValueError(
            f"--batch-size {args.batch_size} (global) must be divisible by processes x "
            f"--grad-accum = {env.world_size} x {args.grad_accum}"
        )
    if init_config is None and resume_from is None:
        # validate --preset/--set/--max-len before a tokenizer is trained and written
        early = preset(
            str(args.preset), **{k: v for k, v in args.overrides.items() if k != "vocab_size"}
        )
        if args.max_len is not None and args.max_len > early.max_len:
            raise ValueError(
                f"--max-len {args.max_len} exceeds the model's max_len={early.max_len}"
            )
    saved = None
    if resume_from is not None:
        saved = read_state(resume_from)
        tok = YanTokenizer.load(resume_from)
    elif args.init is not None:
        if not (args.init / META_FILE).is_file():
            raise FileNotFoundError(f"--init {args.init} has no tokenizer files ({META_FILE})")
        tok = YanTokenizer.load(args.init)
        if args.tokenizer is not None and args.tokenizer not in (tok.name, tok.source):
            raise ValueError(
                f"--init reuses the checkpoint's tokenizer ({tok.name}); drop --tokenizer "
                f"{args.tokenizer}"
            )
    else:
        tok = fresh_tokenizer(args, env, streamed_sources(args) is not None)
    config = resolve_config(args.preset, args.overrides, tok, init_config)
    config = start_for_task(config, task_of(args), explicit="flow_start" in args.overrides)
    max_len = args.max_len or config.max_len
    if max_len > config.max_len:
        raise ValueError(f"--max-len {max_len} exceeds the model's max_len={config.max_len}")
    lr = args.lr if args.lr is not None else PRETRAIN_LR
    if args.lr is None and args.stage == "finetune":
        lr = FINETUNE_LR
    run = _run_settings(args, env, max_len, lr, tok.fingerprint)
    if saved is not None:
        assert resume_from is not None
        check_resume(saved, run, load_config(resume_from).to_dict(), config.to_dict())
    if args.stage == "2" and args.init is None and saved is None and config.freeze_autoencoder:
        warnings.warn(
            "stage 2 without --init trains the flow on a randomly initialised, frozen "
            "autoencoder; pass --init DIR with a stage-1 output",
            stacklevel=3,
        )
    micro = args.batch_size // per_step
    return _Setup(tok, config, max_len, lr, micro, run, resume_from, saved, plan)


class Trainer:
    """One stage's optimisation loop: model, DDP objective, AdamW + warm-up, RNG, data, logs."""

    def __init__(self, args: TrainArgs, env: DistEnv, setup: _Setup, data: RunData) -> None:
        self.args, self.env, self.setup, self.data = args, env, setup, data
        self.stage = loss_stage(args.stage)
        if args.threads is not None:
            torch.set_num_threads(pick_threads(args.threads))
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)  # the same initial weights on every rank
        self.model = YAN(setup.config)
        source = setup.resume_from or args.init
        if source is not None:  # a resumed checkpoint was verified when it was picked
            loaded = load_pretrained(source, verify=setup.resume_from is None)
            self.model.load_state_dict(loaded.state_dict())
        self.params = trainable_parameters(self.model, self.stage)
        self.model.to(env.device).train()
        if self.stage == 2 and self.model.flow.centres is not None and setup.saved is None:
            # fitted once per run: at the start of stage 2, and again when a fine-tune brings
            # a new task whose targets (e.g. labels) lie elsewhere; a resumed run keeps its own
            if self.model.flow.needs_centres or args.stage == "finetune":
                self._fit_centres()
        self.optimizer = build_optimizer(self.params, setup.lr, weight_decay=args.weight_decay)
        self.scheduler = warmup_constant(self.optimizer, args.warmup)
        seed = rank_seed(args.seed, env.rank)
        self.generator = torch.Generator(device=env.device).manual_seed(seed)
        torch.manual_seed(seed)  # dropout masks differ across ranks
        self.step, self.elapsed, self.tokens = 0, 0.0, 0
        self.last_saved = -1
        if setup.saved is not None:
            self._restore(setup.saved)
        self.objective: nn.Module = StageObjective(self.model, self.stage)
        if env.distributed:
            self.objective = DistributedDataParallel(
                self.objective,
                find_unused_parameters=needs_unused_search(setup.config, self.stage),
                **_no_buffer_sync(),
            )
        self.bf16 = args.precision == "bf16" or (
            args.precision == "auto" and env.device.type == "cuda"
        )
        self.log = MetricsLog(args.out / METRICS_FILE, env.is_main)
        self.dump: dict[str, list[Any]] = {"local_loss": [], "data_sum": []}

    def _fit_centres(self) -> None:
        """``expert_assignment = "cluster"``: k-means of the target latents of the first
        training batches (:meth:`YAN.fit_expert_clusters`) on rank 0, sent to every rank. The
        data position is rewound, so training still starts with those batches."""
        centres = None
        if self.env.is_main:
            source = self.data.train
            position = copy.deepcopy(source.state_dict())
            first = islice(iter(source), CLUSTER_FIT_BATCHES)
            centres = self.model.fit_expert_clusters(first, seed=self.args.seed).cpu()
            source.load_state_dict(position)
        centres = broadcast_object(centres, self.env)
        self.model.flow.centres.copy_(centres.to(self.model.flow.centres))

    def _restore(self, saved: dict[str, Any]) -> None:
        """Optimiser, scheduler, this rank's RNG states and data position from a checkpoint."""
        folder = self.setup.resume_from
        assert folder is not None
        path = folder / OPTIMIZER_FILE
        try:
            state = torch.load(path, map_location=self.env.device, weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
            # torch's own message suggests weights_only=False, which is no fix for a bad file
            raise ValueError(
                f"{path} cannot be read: the file is damaged or cut short "
                f"({type(err).__name__}); a checkpoint with checksums.json is verified first"
            ) from None
        self.optimizer.load_state_dict(state)
        self.scheduler.load_state_dict(saved["scheduler"])
        mine = saved["ranks"][self.env.rank]
        set_rng_state(mine["rng"], self.generator, self.env.device)
        self.data.train.load_state_dict(mine["data"])
        self.step, self.elapsed = int(saved["step"]), float(saved["elapsed"])
        self.tokens, self.last_saved = int(saved["tokens"]), self.step
        if self.args.threads is None and saved.get("threads"):
            # CPU reductions split work by thread: the same count continues bit-identically
            torch.set_num_threads(int(saved["threads"]))

    def autocast(self) -> Any:
        """bf16 autocast on CUDA (App. B.3 runs on H200s); full precision on CPU by default."""
        if not self.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.env.device.type, dtype=torch.bfloat16)

    def _start_files(self) -> None:
        """Rank 0: carry out the ``--out`` plan (delete an overwritten run, set damaged
        checkpoints aside), clean crash leftovers, cut the log back to the checkpoint, describe
        the run. Done here, after every check has passed, so a refused run changes nothing."""
        args, out = self.args, self.args.out
        if self.env.is_main:
            out.mkdir(parents=True, exist_ok=True)
            plan = self.setup.plan
            if plan.clear:
                removed = ", ".join(clear_run(out))
                if removed:
                    warnings.warn(f"--overwrite: deleted {removed} from {out}", stacklevel=2)
            for folder, _ in plan.damaged:
                set_aside(folder)
            clean_staging(out)
            self.log.truncate_after(self.step)
            if self.setup.saved is None:  # the export folder describes the run from the start
                config_json = json.dumps(self.setup.config.to_dict(), indent=2) + "\n"
                atomic_write_text(out / CONFIG_NAME, config_json)
                _save_tokenizer_atomic(self.setup.tok, out)
            atomic_write_text(out / RUN_FILE, json.dumps(_jsonable(args), indent=2) + "\n")
        barrier(self.env)

    def _banner(self) -> None:
        if not self.env.is_main:
            return
        a, s, cfg = self.args, self.setup, self.setup.config
        n_params = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.params)
        where = f"resumed at step {self.step}" if s.saved is not None else "new run"
        print(
            f"yan train: stage {a.stage} | {cfg.arch} d={cfg.d_model} {n_params / 1e6:.2f}M "
            f"params ({n_train / 1e6:.2f}M trainable) | data {self.data.description} | "
            f"tokenizer {s.tok.name} ({s.tok.vocab_size} ids) | {self.env.world_size} x "
            f"{self.env.device.type}, batch {s.micro} x accum {a.grad_accum} x "
            f"{self.env.world_size} = {a.batch_size} | lr {s.lr:g}, warm-up {a.warmup} | "
            f"{torch.get_num_threads()} CPU threads | {where}",
            flush=True,
        )

    def ce_steps(self) -> int | None:
        """This optimiser step's Euler steps for the stage-2 CE unroll (``config.ce_steps``):
        drawn from the run seed and the step, so every rank and micro-batch unrolls the same
        T (DDP waits for the slowest rank) and a resumed run draws what it would have."""
        choices = self.setup.config.ce_steps
        if self.stage != 2 or not choices:
            return None
        return int(np.random.default_rng([self.args.seed, self.step]).choice(choices))

    def train_step(self, batches: Iterator[Seq2SeqBatch]) -> tuple[dict[str, float], int]:
        """One optimiser step over ``--grad-accum`` micro-batches; the loss parts averaged over
        micro-batches and ranks, and the tokens processed by all ranks."""
        args, env = self.args, self.env
        self.optimizer.zero_grad(set_to_none=True)
        total: torch.Tensor | None = None
        names: list[str] = []
        tokens = data_sum = 0
        ce_steps = self.ce_steps()
        for micro in range(args.grad_accum):
            batch = next(batches, None)
            if batch is None:
                raise ValueError("the training data ran out (an empty or finite stream)")
            batch = batch.to(env.device)
            # stage 1 encodes only the target; stage 2 encodes source and target
            tokens += int(batch.tgt_mask.sum())
            tokens += int(batch.src_mask.sum()) if self.stage == 2 else 0
            data_sum += int(batch.tgt[batch.tgt_mask].sum())
            last = micro == args.grad_accum - 1
            # gradients are all-reduced once per step, on the last micro-batch
            sync = nullcontext() if last or not env.distributed else self.objective.no_sync()
            with sync:
                with self.autocast():
                    parts = self.objective(batch, self.generator, ce_steps)
                (parts["loss"] / args.grad_accum).backward()
            names = list(parts)
            values = torch.stack([parts[k].detach().float() for k in names])
            total = values if total is None else total + values
        assert total is not None
        # the norm before clipping, logged: clipping that rescales every step by ~1000x is
        # a hidden learning-rate change (the same on every rank after the all-reduce)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, args.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        local = total / args.grad_accum
        reduced = torch.cat([local, local.new_tensor([float(tokens)])])
        all_reduce_sum(reduced, env)
        means = dict(zip(names, (reduced[:-1] / env.world_size).tolist()))
        means["grad_norm"] = float(grad_norm)
        if not math.isfinite(means["loss"]):
            raise FloatingPointError(
                f"non-finite loss {means['loss']} at step {self.step + 1}; lower --lr or check "
                "the data"
            )
        if args.debug_rank_dump is not None:
            self.dump["local_loss"].append(float(local[0]))
            self.dump["data_sum"].append(data_sum)
        return means, int(reduced[-1].item())

    def evaluate(self) -> dict[str, Any]:
        """Validation metrics at the current step, logged (empty without validation data)."""
        if not self.data.val:
            return {}
        mask_id = self.setup.tok.mask_id if task_of(self.args) == "infill" else None
        metrics = evaluate(
            self.model,
            self.data.val,
            self.stage,
            self.env,
            mask_id=mask_id,
            steps=self.args.eval_steps,
            seed=self.args.seed,
            autocast=self.autocast,
        )
        record = {"kind": "val", "step": self.step, "stage": self.args.stage, **metrics}
        self.log.write(record)
        return record

    def save(self) -> None:
        """A resumable checkpoint of the current step; every rank contributes its RNG and data
        position, rank 0 writes."""
        self.last_saved = self.step
        mine = {"rng": rng_state(self.generator, self.env.device)}
        mine["data"] = self.data.train.state_dict()
        ranks = all_gather_objects(mine, self.env)
        if self.env.is_main:
            state = {
                "format": STATE_FORMAT,
                "step": self.step,
                "elapsed": self.elapsed,
                "tokens": self.tokens,
                "threads": torch.get_num_threads(),
                "run": self.setup.run,
                "scheduler": self.scheduler.state_dict(),
                "ranks": ranks,
            }
            save_checkpoint(
                self.args.out,
                self.step,
                self.model,
                self.setup.tok,
                self.optimizer,
                state,
                keep=self.args.keep_checkpoints,
            )
        barrier(self.env)

    def run(self) -> TrainResult:
        args = self.args
        self._start_files()
        self._banner()
        start = self.step
        batches = iter(self.data.train)
        last_train: dict[str, Any] = {}
        last_val: dict[str, Any] = {}
        bar = tqdm(
            total=args.max_steps,
            initial=min(start, args.max_steps),
            desc=f"stage {args.stage}",
            disable=not (self.env.is_main and args.progress),
            dynamic_ncols=True,
        )
        interval_tokens, interval_start = 0, time.perf_counter()
        try:
            while self.step < args.max_steps:
                t0 = time.perf_counter()
                lr = self.optimizer.param_groups[0]["lr"]
                means, tokens = self.train_step(batches)
                self.step += 1
                self.tokens += tokens
                interval_tokens += tokens
                self.elapsed += time.perf_counter() - t0
                if args.log_every and (
                    self.step % args.log_every == 0 or self.step == args.max_steps
                ):
                    now = time.perf_counter()
                    tps = interval_tokens / max(now - interval_start, 1e-9)
                    interval_tokens, interval_start = 0, now
                    last_train = {"kind": "train", "step": self.step, "stage": args.stage}
                    last_train.update(means, lr=lr, tokens_per_s=tps, tokens=self.tokens)
                    last_train["elapsed"] = self.elapsed
                    self.log.write(last_train)
                    bar.set_postfix(loss=f"{means['loss']:.4f}", tok_s=f"{tps:,.0f}", refresh=False)
                bar.update(1)
                if (
                    args.eval_every
                    and self.step % args.eval_every == 0
                    and self.step < args.max_steps  # the final evaluation follows the loop
                ):
                    last_val = self.evaluate()
                if args.save_every and self.step % args.save_every == 0:
                    self.save()
        finally:
            bar.close()
        if self.step != self.last_saved:
            self.save()
        if self.step > start:  # a rerun of a finished run changes nothing and logs nothing
            last_val = self.evaluate()
        if self.env.is_main and last_val:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in last_val.items() if k.startswith("val_"))
            print(f"yan train: step {self.step}: {shown}", flush=True)
        if args.debug_rank_dump is not None:
            args.debug_rank_dump.mkdir(parents=True, exist_ok=True)
            record = {"rank": self.env.rank, "checksum": _weights_checksum(self.model)}
            record.update(self.dump)
            (args.debug_rank_dump / f"rank{self.env.rank}.json").write_text(json.dumps(record))
        return TrainResult(args.out, self.step, last_train, last_val, self.elapsed)


def _jsonable(args: TrainArgs) -> dict[str, Any]:
    out = dataclasses.asdict(args)
    return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


# ---- command line ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="yan train",
        description="Train YAN: stage 1 (autoencoder, eq. 8), stage 2 (MoE-FM latent flow, "
        "eq. 11) or fine-tuning; runs as one process or under torchrun (DDP).",
    )
    p.add_argument("--preset", choices=list(PRESETS), help="model preset (see yan info)")
    p.add_argument(
        "--data",
        required=True,
        help="offline corpus (wiki-mini, movie-reviews, chatterbot-qa, lee-news), hub corpus "
        "(finewiki,fineweb-edu streamed; squad, ag-news, ...), a local file/folder or hub id",
    )
    p.add_argument("--stage", choices=STAGES, default="1")
    p.add_argument(
        "--task",
        choices=list(yan_data.TASKS),
        help="framing of the data (default: pretrain for stage 1, infill for stage 2)",
    )
    p.add_argument("--max-steps", type=int, default=1000, help="optimiser steps in total")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--init", type=Path, help="start from this checkpoint (weights, tokenizer)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest checkpoint that verifies",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="allow starting from step 0 in an --out that holds a run: its checkpoints, "
        "metrics and exported weights are deleted first (with --resume: only when there is "
        "no usable checkpoint)",
    )
    p.add_argument(
        "--allow-stage1-over-flow",
        action="store_true",
        help="allow --stage 1 --init from a checkpoint whose latent flow is trained (stage 2 "
        "then has to be retrained: the autoencoder's latents change under it)",
    )
    p.add_argument(
        "--batch-size", type=int, default=32, help="global batch: sequences per optimiser step"
    )
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step and rank")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-4; finetune 1e-5)")
    p.add_argument("--warmup", type=int, default=WARMUP_STEPS, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=WEIGHT_DECAY)
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clipping")
    p.add_argument("--max-len", type=int, help="tokens per sequence (default: the config's)")
    p.add_argument(
        "--tokenizer",
        help="llama3, gpt2, bpe (trained on the corpus), a tokenizer folder or hub id "
        "(default: the preset's; --init reuses the checkpoint's)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=500, help="validate every N steps (0: end)")
    p.add_argument("--eval-batches", type=int, default=20, help="validation batches")
    p.add_argument("--eval-steps", type=int, default=4, help="Euler steps when validating")
    p.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps")
    p.add_argument("--log-every", type=int, default=10, help="log train metrics every N steps")
    p.add_argument(
        "--keep-checkpoints",
        type=int,
        default=2,
        help="checkpoints kept (default 2: one to fall back on if the newest is damaged)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a YANConfig field (JSON value), e.g. --set K=4 --set alpha_ce=0.5",
    )
    p.add_argument(
        "--paper-literal",
        action="store_true",
        help="the paper's text where our defaults deviate (noise start, summed NLL, no memory "
        "positions, no stage-1 masks, unscaled MMD; see yan.config.PAPER_LITERAL); "
        "--set still overrides",
    )
    p.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="map a canonical field to a column of the data, e.g. --column text=review",
    )
    p.add_argument(
        "--sample-by",
        choices=("line", "paragraph", "document"),
        default="line",
        help="records of a .txt file",
    )
    p.add_argument(
        "--stream", action="store_true", help="stream --data (comma-separated) as pretraining text"
    )
    p.add_argument("--strict", action="store_true", help="error on texts longer than --max-len")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: the cores idle at the start, see yan.threads; "
        "OMP_NUM_THREADS wins when set)",
    )
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--cache-dir", help="data cache folder (default $YAN_DATA_CACHE)")
    p.add_argument(
        "--debug-rank-dump",
        type=Path,
        help="write rankN.json (weight checksum, local losses, data checksums) to this folder",
    )
    return p


def args_from_cli(ns: argparse.Namespace) -> TrainArgs:
    overrides = dict(parse_override(s) for s in ns.set)
    columns: dict[str, str] = {}
    for item in ns.column:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--column expects FIELD=COLUMN, got {item!r}")
        columns[key] = value
    return TrainArgs(
        out=ns.out,
        data=ns.data,
        stage=ns.stage,
        preset=ns.preset,
        task=ns.task,
        max_steps=ns.max_steps,
        init=ns.init,
        resume=ns.resume,
        batch_size=ns.batch_size,
        grad_accum=ns.grad_accum,
        lr=ns.lr,
        warmup=ns.warmup,
        weight_decay=ns.weight_decay,
        grad_clip=ns.grad_clip,
        max_len=ns.max_len,
        tokenizer=ns.tokenizer,
        seed=ns.seed,
        eval_every=ns.eval_every,
        eval_batches=ns.eval_batches,
        eval_steps=ns.eval_steps,
        save_every=ns.save_every,
        log_every=ns.log_every,
        keep_checkpoints=ns.keep_checkpoints,
        overrides={**PAPER_LITERAL, **overrides} if ns.paper_literal else overrides,
        columns=columns,
        sample_by=ns.sample_by,
        stream=ns.stream,
        strict=ns.strict,
        device=ns.device,
        precision=ns.precision,
        threads=ns.threads,
        progress=not ns.no_progress,
        cache_dir=ns.cache_dir,
        debug_rank_dump=ns.debug_rank_dump,
        overwrite=ns.overwrite,
        allow_stage1_over_flow=ns.allow_stage1_over_flow,
    )


def main(argv: list[str] | None = None) -> TrainResult:
    """``yan train ...`` / ``python -m yan.train ...``: bad input exits with a one-line error."""
    parser = build_parser()
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    before = torch.get_num_threads()
    try:
        apply_threads(ns.threads)
        return train(args_from_cli(ns))
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        exit_with_error(parser.prog, err)
    finally:  # a caller in the same process (a test, a notebook) keeps its own setting
        torch.set_num_threads(before)


if __name__ == "__main__":
    main()
