"""The training budget that every model one benchmark trains shares (:class:`RunBudget`).

The learn, quality and isotropy benchmarks each train models and compare them at equal
budget; their configs extend :class:`RunBudget`, so the shared fields, their defaults and the
device rule are written once, and :func:`yan.train_args.resumable_run` reads its fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunBudget:
    """What the runs of one benchmark share.

    Attributes:
        preset: YAN size preset (the baselines use their preset of the same name).
        data: the training corpus (a registry name or a local file).
        max_len: source / target length in tokens.
        batch_size, lr, warmup: the optimiser budget of every run.
        seed: data split, initialisation and sampling seed.
        device: ``cpu``, ``cuda`` or ``None`` (CUDA when available).
    """

    preset: str = "small"
    data: str = "wiki-mini"
    max_len: int = 64
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 50
    seed: int = 0
    device: str | None = None

    def device_name(self) -> str:
        """``device``, or CUDA when it is ``None`` and a GPU is there, else the CPU."""
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")


__all__ = ["RunBudget"]
