"""Train YAN: stage 1 (eq. 8), stage 2 (eq. 11) and fine-tuning, on one process or under torchrun.

::

    yan train --preset small --data wiki-mini --stage 1 --max-steps 2000 --out runs/s1
    yan train --preset small --data wiki-mini --stage 2 --init runs/s1 --max-steps 2000 --out runs/s2
    yan train --stage finetune --task qa --data squad --init runs/s2 --max-steps 5000 --out runs/ft
    torchrun --nproc_per_node=8 -m yan.train --preset paper-trf --data finewiki,fineweb-edu ...
    yan train --model gpt2 --preset small --data wiki-mini --stage 2 --max-steps 2000 --out runs/gpt2

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
        ema.safetensors       with --ema-decay: the moving average of the weights (also
                              exported to DIR; YAN.from_pretrained(DIR, weights="ema"))
        optimizer.pt          AdamW state (plain tensors; torch.load(weights_only=True))
        trainer_state.json    step, scheduler, run settings, per-rank RNG states, data position
        checksums.json        sha256 and size of every file above, verified on load and resume
    DIR/metrics.jsonl         one JSON object per logged step (train) and per validation
    DIR/tensorboard/          the same scalars as TensorBoard events (--report-to tensorboard)
    DIR/run.json              the arguments of the last invocation (``yan train --config
                              DIR/run.json`` repeats them)
    DIR/.train.lock           while a run is training: its pid, host and start time

One run owns ``DIR`` at a time: a second ``yan train`` on it stops with an error naming the
owner; a lock left by a killed run on this host is taken over with a warning. A checkpoint
folder appears only complete (written under a hidden name, then renamed), so a crash during a
save leaves the previous one in place; ``--resume`` picks the newest one whose checksums verify,
setting newer damaged ones aside as ``checkpoints/damaged-step-N`` with a warning (two are kept
by default, so there is one to fall back on). A run never starts again from step 0 over an
existing metrics history unless ``--overwrite`` says so. ``SIGTERM`` / ``SIGUSR1`` stop a run
at the next step boundary with a checkpoint and exit code 75 (:mod:`yan.preemption`); a resume
may run on another number of processes with the same global batch (:mod:`yan.elastic`). See
docs/reliability.md.

This module holds the loop; beside it live the arguments (:mod:`yan.train_args`, the CLI flags
derived from them in :mod:`yan.train_cli`), what is trained (:mod:`yan.train_objectives`: YAN's
stage objective, or a baseline's loss with ``--model gpt2|bart|masked-diffusion``), the config
and task resolution
(:mod:`yan.resolve`), what a run settles before its first step (:mod:`yan.train_setup`), the
data of a run (:mod:`yan.data.training`) and the validation pass (:mod:`yan.eval.validate`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import pickle
import random
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
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
from yan.config import parse_override
from yan.data.training import (
    RunData,
    build_data,
    global_position,
    mask_batch,
    save_tokenizer_atomic,
)
from yan.distributed import (
    DistEnv,
    all_gather_objects,
    barrier,
    init_distributed,
    main_only,
    shutdown,
)
from yan.elastic import restore_rank_state
from yan.ema import start_ema
from yan.eval.validate import ValidationSettings
from yan.logs import configure_logging, ensure_logging
from yan.optim import build_optimizer, warmup_constant
from yan.preemption import PREEMPTED_EXIT_CODE, PreemptionGuard
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
)
from yan.threads import apply_threads, pick_threads
from yan.tracking import TrackedLog, parse_report_to
from yan.train_args import TrainArgs, check_args
from yan.train_cli import MissingArguments, args_from_cli, build_parser
from yan.train_metrics import StepMetrics
from yan.train_objectives import (
    CLUSTER_FIT_BATCHES,
    StageObjective,
    TrainObjective,
    build_objective,
    needs_unused_search,
    trainable_parameters,
)
from yan.train_setup import RunSetup, setup_run
from yan.train_speed import apply_speed_options

# by name, not __name__: under `python -m yan.train` the module is __main__, outside "yan"
logger = logging.getLogger("yan.train")


@dataclass
class TrainResult:
    """What :func:`train` returns: the output folder, the final step, the last train and val
    metrics of this invocation, and the training-loop seconds of the whole run (all resumes)."""

    out: Path
    step: int
    train: dict[str, Any]
    val: dict[str, Any]
    elapsed: float
    preempted: str | None = None  # the signal that stopped the run early (yan.preemption)


# ---- the objective under DDP (yan.train_objectives) ---------------------------------------------
def _no_buffer_sync() -> dict[str, bool]:
    """DDP keyword that skips the per-step buffer broadcast (YAN's buffers are fixed
    sinusoidal positions and the cluster centres, sent to every rank once before training;
    the baselines' are fixed too);
    its name changed in torch 2.13."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return {key: False}


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
    ensure_logging(args.log_level)
    env = init_distributed(args.device)
    preemption = PreemptionGuard(env).start()  # SIGTERM / SIGUSR1: save at the next step
    locks: list[RunLock] = []
    try:
        if not env.is_main:
            warnings.filterwarnings("ignore")  # data warnings are reported once, by rank 0
        # one run per folder, for the whole run: rank 0 holds the lock, every rank gets its error
        main_only(lambda: locks.append(RunLock.acquire(args.out)), env)
        setup = setup_run(args, env)
        if setup.grad_accum != args.grad_accum:  # a resume on another number of processes
            args = dataclasses.replace(args, grad_accum=setup.grad_accum)
        # data before the model: bad data fails before anything is written
        run_data = build_data(args, setup.tok, env, setup.micro, setup.max_len)
        return Trainer(args, env, setup, run_data, preemption).run()
    finally:
        for lock in locks:
            lock.release()
        shutdown(env)
        preemption.stop()


class Trainer:
    """One stage's optimisation loop: model, DDP objective, AdamW + warm-up, RNG, data, logs.

    The model and its loss are the run's :class:`~yan.train_objectives.TrainObjective`: YAN's
    stage objective, or a baseline's own loss (``--model``).
    """

    def __init__(
        self,
        args: TrainArgs,
        env: DistEnv,
        setup: RunSetup,
        data: RunData,
        preemption: PreemptionGuard | None = None,
    ) -> None:
        self.args, self.env, self.setup, self.data = args, env, setup, data
        self.preemption = preemption or PreemptionGuard(env)
        self.stage = loss_stage(args.stage)
        if args.threads is not None:
            torch.set_num_threads(pick_threads(args.threads))
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)  # the same initial weights on every rank
        self.core: TrainObjective = build_objective(args, setup)
        self.model = self.core.model
        self.params = self.core.trainable_parameters()
        self.core.to(env.device).train()
        self.speed = apply_speed_options(self.model, self.params, args)
        if setup.saved is None:
            self.core.start(self.data.train, env, seed=args.seed, new_task=args.stage == "finetune")
        self.optimizer = build_optimizer(
            self.params, setup.lr, weight_decay=args.weight_decay, fused=self.speed.fused_adamw
        )
        self.scheduler = warmup_constant(self.optimizer, args.warmup)
        seed = rank_seed(args.seed, env.rank)
        self.generator = torch.Generator(device=env.device).manual_seed(seed)
        torch.manual_seed(seed)  # dropout masks differ across ranks
        self.step, self.elapsed, self.tokens = 0, 0.0, 0
        self.last_saved = -1
        if setup.saved is not None:
            self._restore(setup.saved)
        resumed = setup.resume_from if setup.saved is not None else None
        self.ema = start_ema(self.model, args.ema_decay, resumed)  # --ema-decay, yan.ema
        self.objective: nn.Module = self.core
        if env.distributed:
            self.objective = DistributedDataParallel(
                self.objective,
                find_unused_parameters=self.core.find_unused_parameters,
                **_no_buffer_sync(),
            )
        self.bf16 = args.precision == "bf16" or (
            args.precision == "auto" and env.device.type == "cuda"
        )
        self.log = TrackedLog(
            MetricsLog(args.out / METRICS_FILE, env.is_main),
            parse_report_to(args.report_to),
            args.out,
            args.to_dict(),
        )
        self.dump: dict[str, list[Any]] = {"local_loss": [], "data_sum": []}
        self.metrics = StepMetrics(env, first_step=self.step + 1)

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
        # this rank's RNG and data position; on another number of processes: yan.elastic
        restore_rank_state(saved, self.env, self.generator, self.data.train, self.args.seed)
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
        a, s = self.args, self.setup
        where = f"resumed at step {self.step}" if s.saved is not None else "new run"
        logger.info(
            f"yan train: stage {a.stage} | {self.core.describe()} | data {self.data.description} | "
            f"tokenizer {s.tok.name} ({s.tok.vocab_size} ids) | {self.env.world_size} x "
            f"{self.env.device.type}, batch {s.micro} x accum {a.grad_accum} x "
            f"{self.env.world_size} = {a.batch_size} | lr {s.lr:g}, warm-up {a.warmup} | "
            f"{torch.get_num_threads()} CPU threads | {self.speed.describe()} | {where}",
        )

    def ce_steps(self) -> int | None:
        """This optimiser step's Euler steps for the stage-2 CE unroll (``config.ce_steps``),
        the same on every rank (:meth:`StageObjective.ce_steps`); ``None`` without one."""
        return self.core.ce_steps(self.args.seed, self.step)

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
        settings = ValidationSettings(mask_id, self.args.eval_steps, self.args.seed, self.autocast)
        metrics = self.core.validate(self.data.val, self.env, settings)
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
                write_model=self.core.checkpoint_writer(self.setup.tok),
                extra=self.ema.save if self.ema is not None else None,
            )
        barrier(self.env)

    def run(self) -> TrainResult:
        """Train to ``--max-steps``; on SIGTERM / SIGUSR1 save at the next step boundary and
        stop early (``TrainResult.preempted``, :mod:`yan.preemption`)."""
        if self.preemption.active:
            return self._run()
        with self.preemption:
            return self._run()

    def _run(self) -> TrainResult:
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
        preempted = None
        try:
            while self.step < args.max_steps:
                t0 = time.perf_counter()
                lr = self.optimizer.param_groups[0]["lr"]
                self.train_step(batches)
                if self.ema is not None:
                    self.ema.update(self.model)
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
                    if self.env.device.type == "cuda":  # this process's peak so far
                        peak = torch.cuda.max_memory_allocated(self.env.device)
                        last_train["peak_mem_mb"] = peak / 2**20
                    self.log.write(last_train)
                    logger.debug(
                        "yan train: step %d: loss %.4f, %.0f tokens/s",
                        self.step,
                        means["loss"],
                        tps,
                    )
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
                # a stop signal (all ranks agree) ends the run at this step boundary; at the
                # last step the run simply ends, with its final validation
                if self.step < args.max_steps and self.preemption.requested():
                    preempted = self.preemption.signal_name
                    break
        finally:
            bar.close()
        if self.step != self.last_saved:
            self.save()
        if self.step > start and preempted is None:  # a rerun of a finished run logs nothing
            last_val = self.validate()
        if preempted is not None:
            self._report_preemption(preempted)
        if self.env.is_main and last_val:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in last_val.items() if k.startswith("val_"))
            logger.info(f"yan train: step {self.step}: {shown}")
        if args.debug_rank_dump is not None:
            args.debug_rank_dump.mkdir(parents=True, exist_ok=True)
            record = {"rank": self.env.rank, "checksum": _weights_checksum(self.model)}
            record.update(self.dump)
            (args.debug_rank_dump / f"rank{self.env.rank}.json").write_text(json.dumps(record))
        self.log.close()
        return TrainResult(args.out, self.step, last_train, last_val, self.elapsed, preempted)

    def _report_preemption(self, signal_name: str) -> None:
        if self.env.is_main:
            logger.info(
                f"yan train: stopped by {signal_name} at step {self.step}; checkpoint saved in "
                f"{self.args.out / 'checkpoints'}. Run the same command with --resume to "
                f"continue (exit code {PREEMPTED_EXIT_CODE})"
            )


# ---- command line (flags: yan.train_cli) --------------------------------------------------------
def main(argv: list[str] | None = None) -> TrainResult:
    """``yan train ...`` / ``python -m yan.train ...``: bad input exits with a one-line error."""
    parser = build_parser()
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    before = torch.get_num_threads()
    try:
        args = args_from_cli(ns)
        configure_logging(args.log_level)
        apply_threads(args.threads)
        result = train(args)
    except MissingArguments as err:  # as argparse reports a missing required flag
        parser.error(str(err))
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        exit_with_error(parser.prog, err)
    finally:  # a caller in the same process (a test, a notebook) keeps its own setting
        torch.set_num_threads(before)
    if result.preempted is not None:  # saved and stopped early: a scheduler can requeue it
        sys.exit(PREEMPTED_EXIT_CODE)
    return result


# the public names of this module: those at home elsewhere stay importable from here, where
# yan.demo, yan.bench and user code have always found them
__all__ = [
    "ALIGNED_TASKS",
    "CLUSTER_FIT_BATCHES",
    "TRAINING_FIELDS",
    "StageObjective",
    "TrainArgs",
    "TrainObjective",
    "TrainResult",
    "Trainer",
    "args_from_cli",
    "build_parser",
    "main",
    "mask_batch",
    "needs_unused_search",
    "parse_override",
    "resolve_config",
    "start_for_task",
    "train",
    "trainable_parameters",
]


if __name__ == "__main__":
    main()
