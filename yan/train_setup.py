"""What a training run settles before its first step (rank 0 decides where it must, every rank
gets the answer): whether ``--out`` may be used and which checkpoint to resume
(:func:`plan_out`), the tokenizer, the resolved config, the learning rate and batch sizes, and
the run settings a ``--resume`` must share with its checkpoint (:func:`setup_run`).

Nothing here writes into ``--out`` (except a BPE trained for a new run): the plan is carried
out by the trainer once every check has passed, so a refused run leaves the folder as it was.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yan.baselines.common import BaselineConfig
from yan.checkpoint import CONFIG_NAME
from yan.config import YANConfig
from yan.data.training import fresh_tokenizer, streamed_sources
from yan.distributed import DistEnv, main_only
from yan.elastic import BatchLayout, batch_layout
from yan.optim import FINETUNE_LR, PRETRAIN_LR
from yan.resolve import task_of
from yan.run_state import (
    DAMAGED_PREFIX,
    RUN_FILE,
    STATE_FILE,
    check_resume,
    checkpoint_dirs,
    latest_checkpoint,
    metrics_history,
    read_state,
    resumable_checkpoint,
)
from yan.tokenizer import BPE_FILE, HF_CONFIG_FILE, META_FILE, YanTokenizer
from yan.train_args import TrainArgs
from yan.train_objectives import check_model_args, load_model_config, resolve_model_config


def run_settings(
    args: TrainArgs,
    env: DistEnv,
    max_len: int,
    lr: float,
    tokenizer_fingerprint: str,
    layout: BatchLayout | None = None,
) -> dict[str, Any]:
    """The settings recorded in every checkpoint (``run`` in ``trainer_state.json``); a
    ``--resume`` must agree with its checkpoint on those in :data:`yan.run_state.RESUME_KEYS`
    to continue the same loss curve. ``world_size`` and ``grad_accum`` are the layout this
    invocation trains with (a resume may change them, :func:`yan.elastic.batch_layout`);
    ``grad_accum_requested`` is the ``--grad-accum`` it was given."""
    if layout is None:
        layout = BatchLayout(env.world_size, args.grad_accum, 0)
    data = args.data
    if Path(data).expanduser().exists():
        data = str(Path(data).expanduser().resolve())
    return {
        "model": args.model,
        "stage": args.stage,
        "task": task_of(args),
        "data": data,
        "columns": dict(sorted(args.columns.items())),
        "sample_by": args.sample_by,
        "stream": streamed_sources(args) is not None,
        # the mix of a streamed run: another one part-way would change the stream it resumes
        "data_weights": args.data_weights,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "grad_accum": layout.grad_accum,
        "grad_accum_requested": args.grad_accum,
        "world_size": layout.world_size,
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
    """What :func:`plan_out` decided for ``--out``; carried out only when training starts
    (:meth:`yan.train.Trainer._start_files`), so a run refused later (a resume with other arguments, bad
    data) leaves the folder as it was."""

    resume_from: Path | None = None
    damaged: list[tuple[Path, str]] = field(default_factory=list)  # newer than resume_from
    clear: bool = False  # --overwrite: delete the previous run's files first


def plan_out(args: TrainArgs) -> OutPlan:
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
    startup = {META_FILE, BPE_FILE, HF_CONFIG_FILE, CONFIG_NAME, RUN_FILE}
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


@dataclass
class RunSetup:
    """Resolved inputs of a run: tokenizer, config, sizes, and the checkpoint to resume."""

    tok: YanTokenizer
    config: YANConfig | BaselineConfig
    max_len: int
    lr: float
    micro: int
    run: dict[str, Any]
    resume_from: Path | None
    saved: dict[str, Any] | None
    plan: OutPlan = field(default_factory=OutPlan)
    grad_accum: int = 1  # micro-batches per step and rank: --grad-accum, or a resume's layout


def setup_run(args: TrainArgs, env: DistEnv) -> RunSetup:
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
    plan = main_only(lambda: plan_out(args), env)
    resume_from = plan.resume_from
    init_config = load_model_config(args.init, args.model) if args.init is not None else None
    saved = read_state(resume_from) if resume_from is not None else None
    # the global batch is kept on a resume; its split over processes may change (yan.elastic)
    layout, layout_note = batch_layout(
        args.batch_size, env.world_size, args.grad_accum, saved["run"] if saved else None
    )
    if init_config is None and resume_from is None:
        # validate --preset/--set/--max-len before a tokenizer is trained and written
        check_model_args(args)
    if resume_from is not None:
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
    config, max_len = resolve_model_config(args, tok, init_config)
    lr = args.lr if args.lr is not None else PRETRAIN_LR
    if args.lr is None and args.stage == "finetune":
        lr = FINETUNE_LR
    run = run_settings(args, env, max_len, lr, tok.fingerprint, layout)
    if saved is not None:
        assert resume_from is not None
        saved_config = load_model_config(resume_from, args.model)
        check_resume(saved, run, saved_config.to_dict(), config.to_dict())
    frozen = isinstance(config, YANConfig) and config.freeze_autoencoder
    if args.stage == "2" and args.init is None and saved is None and frozen:
        warnings.warn(
            "stage 2 without --init trains the flow on a randomly initialised, frozen "
            "autoencoder; pass --init DIR with a stage-1 output",
            stacklevel=3,
        )
    if layout_note is not None and env.is_main:
        warnings.warn(layout_note, stacklevel=3)
    return RunSetup(
        tok, config, max_len, lr, layout.micro, run, resume_from, saved, plan, layout.grad_accum
    )


__all__ = ["OutPlan", "RunSetup", "plan_out", "run_settings", "setup_run", "stage1_over_flow"]
