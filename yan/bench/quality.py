"""Quality versus sampling steps, and quality versus diversity (Fig. 4 top, 5, 6; App. C.1).

On the ``small`` models and the infilling task (App. B.2: 5-10% of the tokens masked in spans
of 1-3, the full text as target, ROUGE against the original), both trained on the same data,
tokenizer and number of optimiser steps:

- YAN-TRF: the demo checkpoint (``outputs/yan-demo/stage2``, ``python -m yan.demo``) when it
  exists, else stage 1 + stage 2 trained here with the trainer (``yan.train.train``);
- masked diffusion (LLaDA-style): trained here by the same trainer (``--model
  masked-diffusion``) on the same infilling training split, for as many steps as YAN's two
  stages together.

Each is evaluated on the same held-out test examples at several T (YAN: Euler steps, frozen
routing, several noise seeds; masked diffusion: denoising steps, greedy, deterministic, and
``T = L``, one token per step). Per (model, T, seed): ROUGE-1/2/L, the token accuracy at the
masked positions, Dist-2, Self-BLEU and SemDist of the generations (sec. 5.4), tokens/s.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yan.bench.budget import RunBudget
from yan.bench.report import (
    QUICK_WORK,
    announce,
    markdown_table,
    new_figure,
    quick_note,
    save_figure,
    write_outputs,
)
from yan.config import replace_given
from yan.evaluate import (
    Checkpoint,
    generate_ids,
    load_checkpoint,
    masked_token_accuracy,
    references,
    score,
    split_examples,
)

DEMO_CHECKPOINT = Path("outputs/yan-demo/stage2")


@dataclass
class QualityConfig(RunBudget):
    """Settings of the quality benchmark.

    The shared budget (:class:`~yan.bench.budget.RunBudget`) is that of the models trained
    here (YAN and masked diffusion; preset ``small``, or ``tiny`` in tests), with the demo's
    settings; evaluation uses the checkpoint's recorded data / length / seed.

    Attributes:
        checkpoint: a YAN infilling checkpoint; ``None``: the demo's if present, else train.
        work: folder for the models trained here (reused on the next run).
        yan_steps: Euler steps T for YAN.
        diffusion_steps: denoising steps for masked diffusion (``T = L`` is always added).
        seeds: YAN noise seeds per T (masked diffusion is deterministic: one run).
        limit: test examples evaluated.
        stage1_steps, stage2_steps: YAN's training steps here (the demo's).
        diffusion_steps_budget: optimiser steps of masked diffusion; ``None`` = YAN's total.
        quick_run: a smoke run (:meth:`quick`): its report and metadata say so.
    """

    checkpoint: Path | None = None
    work: Path = Path("outputs/bench")
    yan_steps: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12)
    diffusion_steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    seeds: tuple[int, ...] = (0, 1, 2)
    limit: int = 256
    stage1_steps: int = 1500
    stage2_steps: int = 600
    warmup: int = 100  # the demo's
    diffusion_steps_budget: int | None = None
    quick_run: bool = False

    @classmethod
    def quick(cls) -> QualityConfig:
        """A few-minute smoke run of every step of the full one, on a 2-core CPU.

        Its own budgets throughout: masked diffusion gets a fixed 100 steps even when the demo
        checkpoint (1,200 + 300 steps) stands in for YAN, so the budgets are not equal and the
        numbers are not the benchmark's. Its models go to their own ``work`` folder, so a quick
        run never overwrites, or is reused by, a full run.
        """
        return cls(
            work=QUICK_WORK,
            yan_steps=(1, 2, 4, 8),
            diffusion_steps=(1, 4),
            seeds=(0, 1),
            limit=32,
            stage1_steps=100,
            stage2_steps=30,
            warmup=20,
            diffusion_steps_budget=100,
            quick_run=True,
        )

    def with_options(
        self,
        *,
        steps: Sequence[int] | None = None,
        checkpoint: Path | None = None,
        work: Path | None = None,
        device: str | None = None,
    ) -> QualityConfig:
        """A copy with the command-line options applied (``None`` keeps the setting)."""
        yan_steps = tuple(steps) if steps else None
        return replace_given(
            self, yan_steps=yan_steps, checkpoint=checkpoint, work=work, device=device
        )


# ---- models -------------------------------------------------------------------------------------
def yan_checkpoint(cfg: QualityConfig) -> Path:
    """The YAN infilling checkpoint: given, the demo's, or trained here (stage 1 + stage 2)."""
    if cfg.checkpoint is not None:
        if not Path(cfg.checkpoint).is_dir():
            raise FileNotFoundError(f"--checkpoint folder not found: {cfg.checkpoint}")
        return Path(cfg.checkpoint)
    if cfg.preset == "small" and (DEMO_CHECKPOINT / "model.safetensors").is_file():
        return DEMO_CHECKPOINT
    from yan.train import train
    from yan.train_args import resumable_run

    s1, s2 = cfg.work / f"yan-{cfg.preset}-stage1", cfg.work / f"yan-{cfg.preset}-stage2"
    common = dict(data=cfg.data, preset=cfg.preset, save_every=100, device=cfg.device_name())
    train(resumable_run(s1, cfg, stage="1", task="pretrain", max_steps=cfg.stage1_steps, **common))
    train(
        resumable_run(
            s2, cfg, stage="2", task="infill", init=s1, max_steps=cfg.stage2_steps, **common
        )
    )
    return s2


def trained_steps(folder: Path) -> int:
    """Optimiser steps behind a YAN checkpoint: its run plus the runs it was initialised from."""
    total, seen = 0, set()
    while folder is not None and folder.is_dir() and folder.resolve() not in seen:
        seen.add(folder.resolve())
        states = sorted((folder / "checkpoints").glob("step-*/trainer_state.json"))
        if states:
            total += int(json.loads(states[-1].read_text()).get("step", 0))
        run = folder / "run.json"
        init = json.loads(run.read_text()).get("init") if run.is_file() else None
        folder = Path(init) if init else None
    return total


def diffusion_checkpoint(cfg: QualityConfig, yan: Checkpoint, steps: int) -> Path:
    """Masked diffusion trained for ``steps`` optimiser steps with YAN's trainer (``yan train
    --model masked-diffusion``: the optimiser, warm-up, clipping and data order of a YAN run)
    on the data, sequence length, seed and tokenizer of the YAN checkpoint, infilling task.

    A rerun resumes or reuses the run in ``work/masked-diffusion-<preset>``.
    """
    from yan.train import train
    from yan.train_args import resumable_run

    info = yan.info
    budget = dataclasses.replace(
        cfg,
        max_len=info.max_len or cfg.max_len,
        seed=info.seed if info.seed is not None else cfg.seed,
    )
    folder = cfg.work / f"masked-diffusion-{cfg.preset}"
    print(f"masked diffusion ({cfg.preset}): {steps} steps on {info.data or cfg.data} (infill)")
    args = resumable_run(
        folder,
        budget,
        model="masked-diffusion",
        data=info.data or cfg.data,
        stage="2",
        task="infill",
        preset=cfg.preset,
        tokenizer=str(yan.path),
        max_steps=steps,
        save_every=250,
        device=cfg.device_name(),
    )
    train(args)
    return folder


# ---- evaluation ---------------------------------------------------------------------------------
def diversity(predictions: Sequence[str]) -> dict[str, float]:
    """Dist-2, Self-BLEU and SemDist of a set of generations (sec. 5.4).

    Dist-2 is undefined (NaN) when no generation has two words, as from an undertrained model.
    """
    from yan.eval import dist2, self_bleu, sem_dist

    try:
        d2 = dist2(predictions)
    except ValueError:
        d2 = float("nan")
    return {"dist2": d2, "self_bleu": self_bleu(predictions), "semdist": sem_dist(predictions)}


def evaluate_settings(
    ckpt: Checkpoint,
    examples: Sequence[Any],
    settings: Sequence[tuple[int | None, int]],
    name: str,
    preset: str = "small",
) -> list[dict[str, Any]]:
    """One record per (T, seed): infilling quality, diversity and speed on ``examples``."""
    tok = ckpt.tokenizer
    refs = references("infill", examples, tok)
    records = []
    for steps, seed in settings:
        gens = generate_ids(ckpt, examples, steps=steps, seed=seed)
        preds = [tok.decode(ids).strip() for ids in gens.ids]
        metrics = {**score("infill", preds, refs, bertscore=False), **diversity(preds)}
        rec = {
            "model": name,
            "preset": preset,
            "T": steps,
            "T_label": "L" if steps is None else str(steps),
            "seed": seed,
            **metrics,
            "masked_acc": masked_token_accuracy(examples, gens.ids, tok.mask_id),
            "examples": len(examples),
            "seconds": gens.seconds,
            "tokens_per_s": gens.tokens / max(gens.seconds, 1e-9),
        }
        records.append(rec)
        print(
            f"  {name:<17} T={rec['T_label']:<3} seed={seed}  ROUGE-L {rec['rougeL']:.1f}  "
            f"masked acc {rec['masked_acc']:.1f}%  Dist-2 {rec['dist2']:.3f}  "
            f"Self-BLEU {rec['self_bleu']:.1f}  SemDist {rec['semdist']:.3f}"
        )
    return records


def run_quality(cfg: QualityConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train or load both models, evaluate every (model, T, seed); records and run metadata."""
    device = cfg.device_name()
    yan_dir = yan_checkpoint(cfg)
    yan = load_checkpoint(yan_dir, device=device)
    examples = split_examples(yan, "infill", limit=cfg.limit)
    yan_steps = trained_steps(yan_dir) or cfg.stage1_steps + cfg.stage2_steps
    md_budget = cfg.diffusion_steps_budget or yan_steps
    md_dir = diffusion_checkpoint(cfg, yan, md_budget)
    md = load_checkpoint(md_dir, baseline="masked-diffusion", device=device)
    print(f"quality on {len(examples)} test examples ({yan.info.data}, infill)")
    yan_settings: list[tuple[int | None, int]] = [(t, s) for t in cfg.yan_steps for s in cfg.seeds]
    records = evaluate_settings(yan, examples, yan_settings, "yan-trf", cfg.preset)
    md_settings: list[tuple[int | None, int]] = [(t, 0) for t in cfg.diffusion_steps]
    md_settings.append((None, 0))  # T = L: one token per step, masked diffusion's best
    records += evaluate_settings(md, examples, md_settings, "masked-diffusion", cfg.preset)
    meta = {
        "yan_checkpoint": str(yan_dir),
        "diffusion_checkpoint": str(md_dir),
        "data": yan.info.data,
        "max_len": yan.info.max_len,
        "examples": len(examples),
        "yan_training_steps": yan_steps,
        "diffusion_training_steps": md_budget,
        "device": device,
        "quick": cfg.quick_run,
    }
    return records, meta


# ---- report -------------------------------------------------------------------------------------
METRICS = ("rougeL", "rouge1", "masked_acc", "dist2", "self_bleu", "semdist", "tokens_per_s")


def summary(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and std over seeds for ROUGE-L) per (model, T)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["model"], r["T_label"]), []).append(r)
    rows = []
    for (model, label), rs in groups.items():
        row: dict[str, Any] = {"model": model, "T": label, "seeds": len(rs)}
        for m in METRICS:
            row[m] = statistics.fmean(r[m] for r in rs)
        row["rougeL_std"] = statistics.stdev(r["rougeL"] for r in rs) if len(rs) > 1 else 0.0
        rows.append(row)
    return rows


QUICK_NOTE = quick_note(
    "reduced budgets (training steps, test examples, T values, seeds); masked diffusion has "
    "its own fixed budget, not YAN's"
)


def markdown_report(records: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    rows = summary(records)
    cols = ["model", "T", "seeds", "rougeL", "rougeL_std", *METRICS[1:]]
    return "\n".join(
        [
            "# Infilling quality vs sampling steps T\n",
            *([QUICK_NOTE] if meta.get("quick") else []),
            f"YAN checkpoint `{meta['yan_checkpoint']}` ({meta['yan_training_steps']} optimiser "
            f"steps); masked diffusion `{meta['diffusion_checkpoint']}` "
            f"({meta['diffusion_training_steps']} steps, same data and tokenizer). "
            f"{meta['examples']} test examples of {meta['data']} (max_len {meta['max_len']}); "
            "oracle lengths, greedy decoding. ROUGE and masked-token accuracy in %; diversity "
            "(Dist-2 in [0, 1], Self-BLEU 0-100, SemDist in [0, 2]) over the set of "
            "generations; means over seeds.\n",
            markdown_table(rows, cols, 2),
        ]
    )


def plot(records: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``quality_vs_T.png`` (Fig. 4 top / 6) and ``quality_diversity.png`` (Fig. 5)."""
    rows = summary(records)
    fig, axes = new_figure(2)
    for model, style in (("yan-trf", "o-"), ("masked-diffusion", "s--")):
        pts = [(int(r["T"]), r) for r in rows if r["model"] == model and r["T"] != "L"]
        pts.sort(key=lambda p: p[0])
        full = [r for r in rows if r["model"] == model and r["T"] == "L"]
        for ax, metric in zip(axes, ("rougeL", "masked_acc")):
            line = ax.plot([t for t, _ in pts], [r[metric] for _, r in pts], style, label=model)
            if metric == "rougeL" and model == "yan-trf":
                ax.errorbar(
                    [t for t, _ in pts],
                    [r[metric] for _, r in pts],
                    yerr=[r["rougeL_std"] for _, r in pts],
                    fmt="none",
                    color=line[0].get_color(),
                )
            if full:
                ax.axhline(full[0][metric], ls=":", color=line[0].get_color(), label=f"{model} T=L")
    ticks = sorted({int(r["T"]) for r in rows if r["T"] != "L"})
    for ax, label in zip(axes, ("ROUGE-L (%)", "masked-token accuracy (%)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("sampling steps T")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    paths = [save_figure(fig, out_dir / "quality_vs_T.png")]

    fig, axes = new_figure(3)
    for ax, metric, label in zip(
        axes, ("dist2", "self_bleu", "semdist"), ("Dist-2", "Self-BLEU", "SemDist")
    ):
        for model, marker in (("yan-trf", "o"), ("masked-diffusion", "s")):
            rs = [r for r in records if r["model"] == model]
            ax.scatter(
                [r[metric] for r in rs], [r["rougeL"] for r in rs], marker=marker, label=model
            )
            for r in rs:
                ax.annotate(f"T={r['T_label']}", (r[metric], r["rougeL"]), fontsize=6)
        ax.set_xlabel(label + (" (lower = more diverse)" if metric == "self_bleu" else ""))
        ax.set_ylabel("ROUGE-L (%)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "quality_diversity.png"))
    return paths


def quality_main(cfg: QualityConfig, out_dir: str | Path) -> dict[str, Path]:
    """Run, print the table, write ``quality.json`` / ``.md`` and the two figures."""
    out_dir = Path(out_dir)
    records, meta = run_quality(cfg)
    report = markdown_report(records, meta)
    paths = write_outputs(out_dir / "quality", {"meta": meta, "records": records}, report)
    for path in plot(records, out_dir):
        paths[path.stem] = path
    return announce(report, paths)


__all__ = [
    "QualityConfig",
    "diffusion_checkpoint",
    "diversity",
    "evaluate_settings",
    "markdown_report",
    "quality_main",
    "run_quality",
    "summary",
    "trained_steps",
    "yan_checkpoint",
]
