"""The learn bench's markdown report and figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yan.bench.learn.config import ARCH_NAMES, TASKS
from yan.bench.report import markdown_table

# ---- report -------------------------------------------------------------------------------------
HEADLINE = {  # the metric that says whether a model learnt the task
    "copy": "token_acc",
    "infill": "masked_acc",
    "last-word": "exact_match",
    "classify": "label_acc",
}
TASK_METRICS = {
    "copy": ("token_acc", "rouge1", "rougeL", "agreement"),
    "infill": ("masked_acc", "token_acc", "rouge1", "rougeL", "agreement"),
    "last-word": ("exact_match", "masked_acc", "token_acc", "rougeL", "agreement"),
    "classify": ("label_acc", "label_share", "label_acc_free"),
}
PAPER_SETTING = (3, "frozen")  # T = 3 Euler steps, frozen routing (sec. 5.3)


def _rows(records: Sequence[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """One row per (model, T, routing) of ``task`` with its metrics as columns."""
    rows: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if r["task"] != task or r["metric"] == "expert_share":
            continue
        key = (r["model"], r["T"], r["routing"])
        row = rows.setdefault(
            key,
            {
                "model": r["model"],
                "T": "-" if r["T"] is None else r["T"],
                "routing": r["routing"] or "-",
                "steps": r["steps"],
                "train s": r["train_seconds"],
            },
        )
        value = r["value"]
        row[r["metric"]] = value if r["metric"].startswith("rouge") else 100 * value
    return list(rows.values())


def headline_rows(records: Sequence[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """YAN at the paper's setting (T = 3, frozen routing), every other model as scored."""
    keep = []
    for row in _rows(records, task):
        is_yan = row["model"] in ARCH_NAMES.values()
        if not is_yan or (row["T"], row["routing"]) == PAPER_SETTING:
            keep.append(row)
    return keep


def markdown_report(records: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The benchmark as markdown: headline per task, YAN's T x routing grid, gate usage."""
    cfg = meta["config"]
    lines = [
        "# Does YAN learn? Equal-budget comparison (`yan bench learn`)\n",
        f"Preset `{cfg['preset']}`, data `{cfg['data']}` / `{cfg['classify_data']}`, max_len "
        f"{cfg['max_len']}, batch {cfg['batch_size']}, lr {cfg['lr']:g} (warm-up "
        f"{cfg['warmup']}). YAN: {cfg['stage1_steps']} stage-1 + {cfg['stage2_steps']} "
        f"stage-2 steps"
        + (
            f" (YAN-M: {cfg['mamba_stage2_steps']} stage-2 steps, see the `steps` column)"
            if cfg.get("mamba_stage2_steps") is not None
            else ""
        )
        + f"; every baseline: {cfg['stage1_steps'] + cfg['stage2_steps']} steps; "
        f"classification: + {cfg['finetune_steps']} fine-tuning steps for every model. "
        f"Held-out examples: {meta['examples']}; unigram token {meta['unigram_token']!r}; "
        f"{meta['threads']} threads; whole run {meta['seconds']:.0f} s.\n",
        "Accuracies in percent, ROUGE F1 in [0, 100]. `*-no-flow` decodes the encoded source "
        "with the stage-1 decoder and no flow; `*-keep-visible` is the same YAN decoding with "
        "the visible source tokens kept (clamped infilling), as the baselines decode copy and "
        "infilling (`keep_source`). YAN rows: T = 3 Euler steps, frozen routing "
        "(the paper's setting); the grid below has every T and routing. Classification: "
        "`label_acc` is rank classification over the training label set"
        + (f" ({', '.join(map(repr, meta['label_choices']))})" if meta.get("label_choices") else "")
        + ", the closed set TF-IDF + LR and majority choose from; `label_share` is the share of "
        "its choices that are the most frequent one (100: the same label for every review, "
        "whatever `label_acc` says); `label_acc_free` is free greedy generation + exact "
        "match. `bag-of-embeddings` (a fastText-style classifier trained from scratch) and "
        "`tfidf-logreg-budget` see only the reviews one fine-tune sees "
        f"({cfg['finetune_steps']} steps x {cfg['batch_size']}); the bag of embeddings with the "
        "same optimiser and steps.\n",
    ]
    for task in TASKS:
        rows = headline_rows(records, task)
        if rows:
            cols = ["model", "T", "routing", *TASK_METRICS[task], "steps", "train s"]
            lines += [f"## {task}\n", markdown_table(rows, cols, digits=1)]
    grid = [
        {**row, "task": task}
        for task in TASKS
        for row in _rows(records, task)
        if row["model"] in ARCH_NAMES.values()
    ]
    if grid:
        lines += [
            "## YAN: Euler steps T x routing\n",
            markdown_table(
                grid,
                [
                    "task",
                    "model",
                    "T",
                    "routing",
                    "masked_acc",
                    "token_acc",
                    "exact_match",
                    "label_acc",
                    "label_share",
                    "label_acc_free",
                ],
                digits=1,
            ),
        ]
    usage: dict[tuple[str, float], dict[str, Any]] = {}
    for r in records:
        if r["metric"] == "expert_share":
            row = usage.setdefault((r["model"], r["t"]), {"model": r["model"], "t": r["t"]})
            row[f"expert {r['expert']}"] = 100 * r["value"]
    if usage:
        k = max(r.get("expert", 0) for r in records if r["metric"] == "expert_share") + 1
        lines += [
            "## Gate: mean expert probability (%) on infilling targets\n",
            markdown_table(
                list(usage.values()), ["model", "t", *[f"expert {i}" for i in range(k)]], digits=1
            ),
        ]
    return "\n".join(lines)


def plot(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """One panel per task: the headline metric of every model (YAN at the paper's setting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.8))
    for ax, task in zip(axes, TASKS):
        metric = HEADLINE[task]
        rows = [r for r in headline_rows(records, task) if metric in r]
        labels = [r["model"] + ("" if r["T"] in ("-", 3) else f" T={r['T']}") for r in rows]
        values = [r[metric] for r in rows]
        colors = ["tab:blue" if r["model"].startswith("yan") else "tab:gray" for r in rows]
        ax.barh(labels, values, color=colors)
        ax.invert_yaxis()
        ax.set_title(f"{task}: {metric} (%)")
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
