"""Render the loss curves of a training run: ``yan plot-run DIR [--out PNG]``.

Reads ``DIR/metrics.jsonl`` (written by :mod:`yan.train`; a line cut short by a crash is skipped
with a warning) and draws, against the optimiser step:
the total training loss and each of its parts (stage 1: CE, MMD, scale of eq. 8; stage 2:
MoE-FM NLL, CE, length of eq. 11) with the validation loss on top, and the training / validation
token accuracies in a second panel. The default output is ``DIR/loss.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from yan.run_state import read_metrics

TRAIN_SKIP = {"kind", "step", "stage", "lr", "tokens_per_s", "tokens", "elapsed", "accuracy"}


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the PNG and return its path (``run_dir/loss.png`` unless ``out`` is given)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    if not train and not val:
        raise ValueError(f"{run_dir}/metrics.jsonl has no logged steps yet")
    out_path = Path(out) if out is not None else run_dir / "loss.png"
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    parts = [k for k in (train[0] if train else {}) if k not in TRAIN_SKIP]
    for key in parts:
        steps, values = _series(train, key)
        if values and any(v > 0 for v in values):
            ax_loss.plot(steps, values, label=f"train {key}", lw=1.5 if key == "loss" else 1.0)
    steps, values = _series(val, "val_loss")
    if values:
        ax_loss.plot(steps, values, "o-", label="val loss", color="black", ms=4)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_title(f"{run_dir.name}: loss (stage {_stage(records)})")
    ax_loss.legend(fontsize=8)
    acc_keys = [("accuracy", train, "train token acc")] + [
        (k, val, k.replace("_", " ")) for k in ("val_recon_acc", "val_token_acc", "val_masked_acc")
    ]
    for key, rows, label in acc_keys:
        steps, values = _series(rows, key)
        if values:
            ax_acc.plot(steps, values, "o-" if rows is val else "-", label=label, ms=4)
    ax_acc.set_ylim(0, 1)
    ax_acc.set_xlabel("step")
    ax_acc.set_title("token accuracy")
    ax_acc.legend(fontsize=8)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key``; records without a step or a number there are left out (a
    damaged line of ``metrics.jsonl`` is already skipped by ``read_metrics``, with a warning)."""
    pairs = [
        (r["step"], float(r[key]))
        for r in rows
        if isinstance(r.get(key), (int, float)) and isinstance(r.get("step"), int)
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _stage(records: list[dict[str, Any]]) -> str:
    return str(records[-1].get("stage", "?")) if records else "?"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="yan plot-run", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="training output folder (with metrics.jsonl)")
    parser.add_argument("--out", type=Path, help="PNG to write (default RUN_DIR/loss.png)")
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        path = plot_run(ns.run_dir, ns.out)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    print(path)
    return path


if __name__ == "__main__":
    main()
