"""The equal-budget baselines of the learn bench: train one (infill, then classification)
and score it on every task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yan.bench.learn.config import LearnConfig
from yan.bench.learn.data import TaskData
from yan.bench.learn.scoring import _log, classify_scores, metric_records, score_task


# ---- baselines ----------------------------------------------------------------------------------
def train_baseline_run(
    cfg: LearnConfig, name: str, tokenizer: Path, task: str, data: str, steps: int,
    init: Path | None,
) -> tuple[Path, float]:  # fmt: skip
    """Train (or reuse) one baseline on ``task`` with YAN's trainer (:func:`yan.train.train`,
    ``--model name``): the optimiser, warm-up, clipping, data order and checkpoints of the YAN
    runs it is compared with. ``tokenizer`` is the folder of YAN's stage 1 (one tokenizer for
    every model); ``init`` the infilling run a classification fine-tune starts from. Returns
    the run's folder and its training seconds; a rerun skips a finished run."""
    from yan.train import train
    from yan.train_args import resumable_run

    folder = cfg.work / name / task
    if init is None:  # a new model of the preset's size, reading data of max_len
        spec = dict(stage="2", preset=cfg.preset, tokenizer=str(tokenizer))
    else:  # model, tokenizer and positions are the checkpoint's
        spec = dict(stage="finetune", init=init)
    args = resumable_run(
        folder,
        cfg,
        model=name,
        data=data,
        task=task,
        max_steps=steps,
        save_every=250,
        log_every=50,
        device=cfg.device_name(),
        progress=cfg.progress,
        **spec,
    )
    return folder, train(args).elapsed


def baseline_records(
    cfg: LearnConfig, name: str, tokenizer: Path, data: TaskData
) -> list[dict[str, Any]]:
    """Train one baseline (infill, then classification from it) and score it on every task
    (``tokenizer``: the folder of YAN's stage 1, see :func:`train_baseline_run`)."""
    from yan.evaluate import generate_ids, load_checkpoint

    infill, s_infill = train_baseline_run(
        cfg, name, tokenizer, "infill", cfg.data, cfg.pretrain_steps, None
    )
    classify, s_cls = train_baseline_run(
        cfg, name, tokenizer, "classify", cfg.classify_data, cfg.finetune_steps, infill
    )
    device = cfg.device_name()
    records: list[dict[str, Any]] = []
    for folder, tasks, steps, seconds in (
        (infill, ("copy", "infill", "last-word"), cfg.pretrain_steps, s_infill),
        (classify, ("classify",), cfg.pretrain_steps + cfg.finetune_steps, s_infill + s_cls),
    ):
        ckpt = load_checkpoint(folder, baseline=name, device=device)
        tok = ckpt.tokenizer
        settings = cfg.diffusion_T if ckpt.uses_steps else (None,)
        for task in tasks:
            for T in settings:
                examples = data.examples[task]
                if task == "classify":
                    scores = classify_scores(ckpt, examples, data.label_choices, tok, steps=T)
                else:
                    gens = generate_ids(ckpt, examples, steps=T)
                    scores = score_task(task, examples, gens.ids, tok)
                records += metric_records(task, name, scores, steps, seconds, T=T)
                _log(task, name, scores, T, None)
    return records
