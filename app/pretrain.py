"""Regenerate the explorer's shipped checkpoints: ``python -m app.pretrain``.

By default it trains the default view's setting (grid data, K = 6, sigma = 0.1, training seed 0)
for VFM, OT-CFM and MoE-FM, the comparison of the paper's Fig. 2a, with the app's training
profile. Training runs on one thread and from fixed seeds, so a rerun on the same machine
writes the same bytes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from moefm.train import METHODS

from .state import DATASETS, Settings
from .store import CHECKPOINT_DIR, save_checkpoint, train_model

DEFAULT_DATASETS = ("grid",)


def pretrain(
    out_dir: Path | str = CHECKPOINT_DIR,
    datasets: Sequence[str] = DEFAULT_DATASETS,
    methods: Sequence[str] = METHODS,
    steps: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Train and save one checkpoint per (data set, method) at the default settings.

    Args:
        out_dir: where the ``.safetensors`` / ``.json`` pairs go.
        datasets: names from ``moefm.toy.DATASETS``.
        methods: names from ``moefm.train.METHODS``.
        steps: override the profile's training steps (a checkpoint trained with another
            number is not picked up by the app, which matches configs exactly).
        log: receives one line per checkpoint.

    Returns:
        The JSON paths written.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise-reproducible reductions, and polite on a shared machine
    try:
        paths = []
        for dataset in datasets:
            for method in methods:
                cfg = Settings(dataset=dataset, method=method).train_config()
                if steps is not None:
                    cfg = replace(cfg, steps=steps)
                entry = train_model(dataset, cfg)
                path = save_checkpoint(out_dir, entry.model, dataset, cfg, entry.final_loss)
                size = sum(p.stat().st_size for p in path.parent.glob(f"{path.stem}.*"))
                log(
                    f"{path.stem}: final loss {entry.final_loss:.4f}, "
                    f"{entry.seconds:.1f} s, {size / 1024:.0f} KB"
                )
                paths.append(path)
        return paths
    finally:
        torch.set_num_threads(threads)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR, help="output directory")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DEFAULT_DATASETS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--steps", type=int, default=None, help="override training steps")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    pretrain(args.out, args.datasets, args.methods, args.steps)


if __name__ == "__main__":
    main()
