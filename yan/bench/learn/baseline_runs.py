"""The equal-budget baselines of the learn bench: train one (infill, then classification)
and score it on every task."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from yan.bench.learn.config import LearnConfig
from yan.bench.learn.data import TaskData
from yan.bench.learn.scoring import _log, classify_scores, metric_records, score_task
from yan.bench.report import write_json


# ---- baselines ----------------------------------------------------------------------------------
def train_baseline_run(
    cfg: LearnConfig, name: str, tok: Any, task: str, data: str, steps: int, init: Path | None
) -> tuple[Path, float]:
    """Train (or reuse) one baseline on ``task``; returns its folder and training seconds."""
    from yan import data as yan_data
    from yan.baselines import (
        baseline_class,
        build_baseline,
        load_baseline,
        save_baseline,
        train_baseline,
    )
    from yan.baselines.common import BaselineConfig
    from yan.resolve import ALIGNED_TASKS

    folder = cfg.work / name / task
    settings = {
        "preset": cfg.preset,
        "data": data,
        "task": task,
        "init": str(init) if init else None,
        "steps": steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "warmup": cfg.warmup,
        "max_len": cfg.max_len,
        "seed": cfg.seed,
        "tokenizer": tok.fingerprint,
        "aligned_positions": True,  # target positions restart at 0 (BaselineConfig)
        "conv_kernel": BaselineConfig.conv_kernel,  # the default every baseline is built with
        "keep_source": task in ALIGNED_TASKS,
    }
    stamp = folder / "bench_settings.json"
    if stamp.is_file():
        saved = json.loads(stamp.read_text())
        if saved.get("settings") == settings:
            return folder, float(saved["seconds"])
    torch.manual_seed(cfg.seed)
    splits = yan_data.prepare(data, task, tok, max_len=cfg.max_len, seed=cfg.seed)
    loaders = yan_data.make_loaders(
        {"train": splits["train"]}, task, tok, batch_size=cfg.batch_size, seed=cfg.seed
    )
    if init is not None:
        model = load_baseline(init, device=cfg.device_name())
    else:
        # the positions a source and a target of max_len take in the baseline's layout
        max_len = baseline_class(name).positions(cfg.max_len, cfg.max_len)
        model = build_baseline(
            name,
            cfg.preset,
            vocab_size=tok.vocab_size,
            pad_id=tok.pad_id,
            mask_id=tok.mask_id,
            max_len=max_len,
        ).to(cfg.device_name())
    # aligned tasks keep the visible source tokens, as YAN's source start does (per task, so
    # the classification fine-tune of an infilling model generates its whole target)
    model.config.keep_source = task in ALIGNED_TASKS
    start = time.perf_counter()
    train_baseline(
        model, loaders["train"], steps, lr=cfg.lr, warmup_steps=cfg.warmup, progress=cfg.progress
    )
    seconds = time.perf_counter() - start
    save_baseline(model, folder)
    tok.save(folder)
    write_json(stamp, {"settings": settings, "seconds": seconds})
    return folder, seconds


def baseline_records(cfg: LearnConfig, name: str, tok: Any, data: TaskData) -> list[dict[str, Any]]:
    """Train one baseline (infill, then classification from it) and score it on every task."""
    from yan.evaluate import generate_ids, load_checkpoint

    infill, s_infill = train_baseline_run(
        cfg, name, tok, "infill", cfg.data, cfg.pretrain_steps, None
    )
    classify, s_cls = train_baseline_run(
        cfg, name, tok, "classify", cfg.classify_data, cfg.finetune_steps, infill
    )
    device = cfg.device_name()
    records: list[dict[str, Any]] = []
    for folder, tasks, steps, seconds in (
        (infill, ("copy", "infill", "last-word"), cfg.pretrain_steps, s_infill),
        (classify, ("classify",), cfg.pretrain_steps + cfg.finetune_steps, s_infill + s_cls),
    ):
        ckpt = load_checkpoint(folder, baseline=name, device=device)
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
