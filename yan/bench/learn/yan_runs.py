"""YAN in the learn bench: train the three runs (stage 1, stage 2, classification) and
score them (every T and routing, no flow, kept visible tokens, gate usage, low precision)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from yan.bench.learn.config import ARCH_NAMES, LearnConfig
from yan.bench.learn.data import TaskData
from yan.bench.learn.report import PAPER_SETTING
from yan.bench.learn.scoring import _log, classify_scores, metric_records, score_task
from yan.data.tasks import Example


# ---- YAN ----------------------------------------------------------------------------------------
@dataclass
class YanRun:
    """The three checkpoints of one YAN variant and their training seconds."""

    stage1: Path
    stage2: Path
    classify: Path
    seconds: dict[str, float]


def train_yan(cfg: LearnConfig, arch: str, tokenizer: Path | None) -> YanRun:
    """Stage 1 (pretrain), stage 2 (infill), classification fine-tune; reruns skip finished ones.

    Classification starts the flow from noise: its target (a label) is not aligned with the
    source, and the trainer switches unaligned tasks to ``flow_start = "noise"``
    (:func:`yan.resolve.start_for_task`).
    """
    from yan.resolve import TRAINING_FIELDS
    from yan.train import train
    from yan.train_args import resumable_run

    root = cfg.work / ARCH_NAMES[arch]
    common = dict(save_every=250, log_every=50, device=cfg.device_name(), progress=cfg.progress)
    later = {k: v for k, v in cfg.overrides.items() if k in TRAINING_FIELDS}
    stages = {  # folder: what differs between the three runs
        "stage1": dict(
            data=cfg.data,
            stage="1",
            task="pretrain",
            preset=cfg.preset,
            tokenizer=str(tokenizer) if tokenizer else None,
            max_steps=cfg.stage1_steps,
            overrides={**cfg.overrides, "arch": arch},
        ),
        "stage2": dict(
            data=cfg.data,
            stage="2",
            task="infill",
            init=root / "stage1",
            max_steps=cfg.stage2_for(arch),
            overrides=later,
        ),
        "classify": dict(
            data=cfg.classify_data,
            stage="finetune",
            task="classify",
            init=root / "stage2",
            max_steps=cfg.finetune_steps,
            overrides=later,
        ),
    }
    seconds = {
        name: train(resumable_run(root / name, cfg, **spec, **common)).elapsed
        for name, spec in stages.items()
    }
    return YanRun(root / "stage1", root / "stage2", root / "classify", seconds)


@torch.inference_mode()
def decode_source(model: Any, examples: Sequence[Example], pad_id: int) -> list[list[int]]:
    """Decode the encoded source with the stage-1 decoder and no flow: ``argmax p(y | E(x))``
    per position, cut to the target length (the ``*-no-flow`` reference)."""
    from yan.data import collate

    out: list[list[int]] = []
    for first in range(0, len(examples), 64):
        part = examples[first : first + 64]
        b = collate(part, pad_id).to(model.device)
        ids = model.decoder(model.encode(b.src, b.src_mask)).argmax(-1).cpu()
        out += [row[: len(e.tgt_ids)].tolist() for row, e in zip(ids, part)]
    return out


@torch.inference_mode()
def gate_usage(model: Any, examples: Sequence[Example], pad_id: int) -> dict[float, list[float]]:
    """Mean gate probability of each expert over target tokens at t = 0 (on z0, where frozen
    routing draws) and t = 0.5 (on the model's own 2-step Euler path, frozen routing)."""
    from moefm.sampling import sample
    from yan.data import collate

    flow = model.flow
    sums = {0.0: torch.zeros(flow.K), 0.5: torch.zeros(flow.K)}
    tokens = 0
    gen = torch.Generator().manual_seed(0)
    for first in range(0, len(examples), 64):
        b = collate(examples[first : first + 64], pad_id).to(model.device)
        z_src = model.encoder(b.src, b.src_mask)
        cond = flow.condition(z_src, b.src_mask, b.tgt_mask)
        z0 = flow.start(cond, (*b.tgt.shape, model.config.latent_dim), z_src, gen)
        traj = sample(flow, z0, 2, cond=cond, generator=gen, return_trajectory=True).trajectory
        for t, z in ((0.0, traj[0]), (0.5, traj[1])):
            tt = torch.full((z.shape[0],), t, dtype=z.dtype, device=z.device)
            pi = flow.log_pi(flow.features(z, tt, cond)).exp()
            sums[t] += pi[b.tgt_mask].sum(0).float().cpu()
        tokens += int(b.tgt_mask.sum())
    return {t: (s / max(tokens, 1)).tolist() for t, s in sums.items()}


def yan_records(cfg: LearnConfig, run: YanRun, arch: str, data: TaskData) -> list[dict[str, Any]]:
    """Score one YAN variant on every task, T and routing, plus its no-flow reference."""
    from yan.evaluate import generate_ids, load_checkpoint

    name = ARCH_NAMES[arch]
    device = cfg.device_name()
    ckpt = load_checkpoint(run.stage2, device=device)
    tok = ckpt.tokenizer
    steps = cfg.stage1_steps + cfg.stage2_for(arch)
    seconds = run.seconds["stage1"] + run.seconds["stage2"]
    records: list[dict[str, Any]] = []
    for task in ("copy", "infill", "last-word"):
        examples = data.examples[task]
        generated = decode_source(ckpt.model, examples, tok.pad_id)
        scores = score_task(task, examples, generated, tok)
        records += metric_records(
            task, f"{name}-no-flow", scores, cfg.stage1_steps, run.seconds["stage1"]
        )
        paper_ids: list[list[int]] = []
        for T in cfg.T:
            for routing in cfg.routings:
                gens = generate_ids(ckpt, examples, steps=T, routing=routing, seed=cfg.seed)
                scores = score_task(task, examples, gens.ids, tok)
                records += metric_records(task, name, scores, steps, seconds, T=T, routing=routing)
                _log(task, name, scores, T, routing)
                if (T, routing) == PAPER_SETTING:
                    paper_ids = gens.ids
        if paper_ids and cfg.low_precision:
            records += low_precision_records(
                task, name, ckpt, examples, paper_ids, cfg, steps, seconds
            )
        # Clamped infilling, as the baselines decode aligned tasks (`keep_source`): the same
        # flow, with the visible source tokens output as they are (paper's T, frozen routing).
        gens = generate_ids(ckpt, examples, steps=3, seed=cfg.seed, keep_visible=True)
        scores = score_task(task, examples, gens.ids, tok)
        records += metric_records(
            task, f"{name}-keep-visible", scores, steps, seconds, T=3, routing="frozen"
        )
    if ckpt.model.config.K > 1:
        usage = gate_usage(ckpt.model, data.examples["infill"], tok.pad_id)
        for t, shares in usage.items():
            for k, share in enumerate(shares):
                rec = metric_records("infill", name, {"expert_share": share}, steps, seconds)[0]
                records.append({**rec, "t": t, "expert": k})
    ft = load_checkpoint(run.classify, device=device)
    examples = data.examples["classify"]
    for T in cfg.T:
        scores = classify_scores(ft, examples, data.label_choices, tok, steps=T, seed=cfg.seed)
        records += metric_records(
            "classify",
            name,
            scores,
            steps + cfg.finetune_steps,
            seconds + run.seconds["classify"],
            T=T,
            routing="frozen",
        )
        _log("classify", name, scores, T, "frozen")
    return records


def identical_fraction(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> float:
    """The fraction of target positions where two generations hold the same token."""
    same = total = 0
    for x, y in zip(a, b, strict=True):
        same += sum(p == q for p, q in zip(x, y))
        total += max(len(x), len(y))
    return same / max(total, 1)


def low_precision_records(
    task: str,
    name: str,
    ckpt: Any,
    examples: Sequence[Example],
    reference_ids: list[list[int]],
    cfg: LearnConfig,
    steps: int,
    seconds: float,
) -> list[dict[str, Any]]:
    """YAN at the paper's setting with its weights in ``cfg.low_precision`` (a copy: the
    float32 model stays as it is): the task's scores, and ``agreement``, the fraction of
    tokens identical to the float32 generation (same seed, same noise)."""
    from yan.evaluate import generate_ids
    from yan.precision import resolve_dtype

    low = dataclasses.replace(
        ckpt, model=copy.deepcopy(ckpt.model).to(resolve_dtype(cfg.low_precision))
    )
    T, routing = PAPER_SETTING
    gens = generate_ids(low, examples, steps=T, routing=routing, seed=cfg.seed)
    scores = score_task(task, examples, gens.ids, ckpt.tokenizer)
    scores["agreement"] = identical_fraction(reference_ids, gens.ids)
    label = f"{name}-{cfg.low_precision}"
    _log(task, label, scores, T, routing)
    return metric_records(task, label, scores, steps, seconds, T=T, routing=routing)
