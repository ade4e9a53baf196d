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
        trainer_state.json    step, scheduler, run settings, per-rank RNG states, data position
        checksums.json        sha256 and size of every file above, verified on load and resume
    DIR/metrics.jsonl         one JSON object per logged step (train) and per validation
    DIR/run.json              the arguments of the last invocation (``yan train --config
                              DIR/run.json`` repeats them)
    DIR/.train.lock           while a run is training: its pid, host and start time

One run owns ``DIR`` at a time: a second ``yan train`` on it stops with an error naming the
owner; a lock left by a killed run on this host is taken over with a warning. A checkpoint
folder appears only complete (written under a hidden name, then renamed), so a crash during a
save leaves the previous one in place; ``--resume`` picks the newest one whose checksums verify,
setting newer damaged ones aside as ``checkpoints/damaged-step-N`` with a warning (two are kept
by default, so there is one to fall back on). A run never starts again from step 0 over an
existing metrics history unless ``--overwrite`` says so. See docs/reliability.md.

This module holds the loop; beside it live the arguments (:mod:`yan.train_args`, the CLI flags
derived from them in :mod:`yan.train_cli`), the config and task resolution
(:mod:`yan.resolve`), what a run settles before its first step (:mod:`yan.train_setup`), the
data of a run (:mod:`yan.data.training`) and the validation pass (:mod:`yan.eval.validate`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import pickle
import random
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from yan.batch import Seq2SeqBatch
from yan.checkpoint import CONFIG_NAME
from yan.cli import exit_with_error
from yan.config import YANConfig, parse_override
from yan.data.training import (
    RunData,
    build_data,
    global_position,
    mask_batch,
    restore_position,
    save_tokenizer_atomic,
)
from yan.distributed import (
    DistEnv,
    all_gather_objects,
    barrier,
    broadcast_object,
    init_distributed,
    main_only,
    shutdown,
)
from yan.eval.validate import validate
from yan.model import YAN
from yan.optim import build_optimizer, warmup_constant
from yan.resolve import (
    ALIGNED_TASKS,
    TRAINING_FIELDS,
    loss_stage,
    resolve_config,
    start_for_task,
    task_of,
)
from yan.run_state import (
    METRICS_FILE,
    OPTIMIZER_FILE,
    RUN_FILE,
    STATE_FORMAT,
    MetricsLog,
    RunLock,
    atomic_write_text,
    clean_staging,
    clear_run,
    rank_seed,
    rng_state,
    save_checkpoint,
    set_aside,
    set_rng_state,
)
from yan.threads import apply_threads, pick_threads
from yan.train_args import TrainArgs, check_args
from yan.train_cli import MissingArguments, args_from_cli, build_parser
from yan.train_metrics import StepMetrics
from yan.train_setup import RunSetup, setup_run

# expert_assignment = "cluster": k-means runs on the target latents of this many first
# training batches (fit_expert_clusters then keeps at most 16,384 tokens of them)
CLUSTER_FIT_BATCHES = 64


@dataclass
class TrainResult:
    """What :func:`train` returns: the output folder, the final step, the last train and val
    metrics of this invocation, and the training-loop seconds of the whole run (all resumes)."""

    out: Path
    step: int
    train: dict[str, Any]
    val: dict[str, Any]
    elapsed: float


# ---- the objective under DDP --------------------------------------------------------------------
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


# ---- the run ------------------------------------------------------------------------------------
def _weights_checksum(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def train(args: TrainArgs) -> TrainResult:
    """Run (or resume) one training stage; see the module docstring. Raises ``ValueError`` /
    ``FileNotFoundError`` with a message naming the argument for every bad input."""
    check_args(args)
    env = init_distributed(args.device)
    locks: list[RunLock] = []
    try:
        if not env.is_main:
            warnings.filterwarnings("ignore")  # data warnings are reported once, by rank 0
        # one run per folder, for the whole run: rank 0 holds the lock, every rank gets its error
        main_only(lambda: locks.append(RunLock.acquire(args.out)), env)
        setup = setup_run(args, env)
        # data before the model: bad data fails before anything is written
        run_data = build_data(args, setup.tok, env, setup.micro, setup.max_len)
        return Trainer(args, env, setup, run_data).run()
    finally:
        for lock in locks:
            lock.release()
        shutdown(env)


class Trainer:
    """One stage's optimisation loop: model, DDP objective, AdamW + warm-up, RNG, data, logs."""

    def __init__(self, args: TrainArgs, env: DistEnv, setup: RunSetup, data: RunData) -> None:
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
            loaded = YAN.from_pretrained(source, verify=setup.resume_from is None)
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
        self.metrics = StepMetrics(env, first_step=self.step + 1)

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
        restore_position(self.data.train, saved, self.env)
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
                save_tokenizer_atomic(self.setup.tok, out)
            atomic_write_text(out / RUN_FILE, json.dumps(args.to_dict(), indent=2) + "\n")
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

    def train_step(self, batches: Iterator[Seq2SeqBatch]) -> None:
        """One optimiser step over ``--grad-accum`` micro-batches. Its loss parts (averaged over
        micro-batches) stay on the device in :attr:`metrics` until a log step reads them out;
        the tokens are counted on the host batches, so the step never waits for the device."""
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
            # stage 1 encodes only the target; stage 2 encodes source and target. Counted on
            # the host batch with numpy, which raises rather than wait for a device tensor.
            tokens += int(batch.tgt_mask.numpy().sum())
            tokens += int(batch.src_mask.numpy().sum()) if self.stage == 2 else 0
            if args.debug_rank_dump is not None:
                data_sum += int(batch.tgt[batch.tgt_mask].sum())
            batch = batch.to(env.device)
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
        self.metrics.add(names, local, grad_norm, tokens)
        if args.debug_rank_dump is not None:
            self.dump["local_loss"].append(float(local[0]))
            self.dump["data_sum"].append(data_sum)

    def validate(self) -> dict[str, Any]:
        """Validation metrics at the current step (:func:`yan.eval.validate.validate`), logged
        (empty without validation data)."""
        if not self.data.val:
            return {}
        mask_id = self.setup.tok.mask_id if task_of(self.args) == "infill" else None
        metrics = validate(
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
        self.tokens += self.metrics.flush(self.step)  # the token count the checkpoint records
        mine = {"rng": rng_state(self.generator, self.env.device)}
        mine["data"] = self.data.train.state_dict()
        ranks = all_gather_objects(mine, self.env)
        data = global_position(self.data.train, [r["data"] for r in ranks])
        if data is not None:  # one position for all ranks: resumable on any number of them
            ranks = [{k: v for k, v in r.items() if k != "data"} for r in ranks]
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
            if data is not None:
                state["data"] = data
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
        interval_start = time.perf_counter()
        try:
            while self.step < args.max_steps:
                t0 = time.perf_counter()
                lr = self.optimizer.param_groups[0]["lr"]
                self.train_step(batches)
                self.step += 1
                self.elapsed += time.perf_counter() - t0
                if args.log_every and (
                    self.step % args.log_every == 0 or self.step == args.max_steps
                ):
                    means, tokens = self.metrics.reduce(self.step)  # the one read-out
                    self.tokens += tokens
                    now = time.perf_counter()
                    tps = self.metrics.interval_tokens / max(now - interval_start, 1e-9)
                    self.metrics.interval_tokens, interval_start = 0, now
                    last_train = {"kind": "train", "step": self.step, "stage": args.stage}
                    last_train.update(means, lr=lr, tokens_per_s=tps, tokens=self.tokens)
                    last_train["elapsed"] = self.elapsed
                    self.log.write(last_train)
                    bar.set_postfix(loss=f"{means['loss']:.4f}", tok_s=f"{tps:,.0f}", refresh=False)
                bar.update(1)
                if (
                    args.eval_every
                    and self.step % args.eval_every == 0
                    and self.step < args.max_steps  # the final validation follows the loop
                ):
                    last_val = self.validate()
                if args.save_every and self.step % args.save_every == 0:
                    self.save()
        finally:
            bar.close()
        if self.step != self.last_saved:
            self.save()
        if self.step > start:  # a rerun of a finished run changes nothing and logs nothing
            last_val = self.validate()
        if self.env.is_main and last_val:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in last_val.items() if k.startswith("val_"))
            print(f"yan train: step {self.step}: {shown}", flush=True)
        if args.debug_rank_dump is not None:
            args.debug_rank_dump.mkdir(parents=True, exist_ok=True)
            record = {"rank": self.env.rank, "checksum": _weights_checksum(self.model)}
            record.update(self.dump)
            (args.debug_rank_dump / f"rank{self.env.rank}.json").write_text(json.dumps(record))
        return TrainResult(args.out, self.step, last_train, last_val, self.elapsed)


# ---- command line (flags: yan.train_cli) --------------------------------------------------------
def main(argv: list[str] | None = None) -> TrainResult:
    """``yan train ...`` / ``python -m yan.train ...``: bad input exits with a one-line error."""
    parser = build_parser()
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    before = torch.get_num_threads()
    try:
        args = args_from_cli(ns)
        apply_threads(args.threads)
        return train(args)
    except MissingArguments as err:  # as argparse reports a missing required flag
        parser.error(str(err))
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        exit_with_error(parser.prog, err)
    finally:  # a caller in the same process (a test, a notebook) keeps its own setting
        torch.set_num_threads(before)


# the public names of this module: those at home elsewhere stay importable from here, where
# yan.demo, yan.bench and user code have always found them
__all__ = [
    "ALIGNED_TASKS",
    "TRAINING_FIELDS",
    "StageObjective",
    "TrainArgs",
    "TrainResult",
    "Trainer",
    "args_from_cli",
    "build_parser",
    "main",
    "mask_batch",
    "parse_override",
    "resolve_config",
    "start_for_task",
    "train",
]


if __name__ == "__main__":
    main()
