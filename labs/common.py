"""What the notebooks and figure scripts share: budgets, training, evaluation, tables, the CLI.

Everything here is glue around the public :mod:`moefm` API; no equation of the paper is
implemented a second time. A *budget* fixes how much work a run does: :data:`FULL` for the
figures in the report, :data:`QUICK` for tests and for notebooks run with ``MOEFM_LAB_FAST=1``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from moefm import sample, toy
from moefm.metrics import Straightness, mode_coverage, straightness, wasserstein2
from moefm.theory import GaussianMixture
from moefm.train import TrainConfig, TrainResult, train

FAST_ENV = "MOEFM_LAB_FAST"
METHOD_LABELS = {"vfm": "VFM", "ot-cfm": "OT-CFM", "moefm": "MoE-FM"}

# Seed offsets keep the training set, the held-out reference, the second data sample of the W2
# floor and the evaluation noise independent of each other for any user seed.
_REF_SEED, _FLOOR_SEED, _NOISE_SEED, _ROUTE_SEED = 1000, 2000, 3000, 4000


def fast_mode() -> bool:
    """True when ``MOEFM_LAB_FAST`` is set to anything but ``""``, ``0``, ``false`` or ``no``."""
    return os.environ.get(FAST_ENV, "").strip().lower() not in ("", "0", "false", "no")


def setup(threads: int = 1, seed: int = 0) -> None:
    """One torch thread and a fixed seed.

    The lab models are MLPs of width 128 on batches of 256 points: a second thread buys almost
    nothing and, on a shared machine, makes every process slower.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Budget:
    """How much work one training-and-evaluation run does.

    Attributes:
        train_steps: optimiser steps per model.
        batch_size: minibatch size (also the size of each minibatch-OT problem of OT-CFM).
        lr: peak AdamW learning rate (cosine-annealed by :func:`moefm.train.train`).
        n_train: size of the fixed training set.
        n_eval: samples drawn per evaluation (and size of the held-out reference set).
        n_paths: trajectories used for the straightness integral.
        straightness_steps: Euler steps of the fine grid on which straightness is integrated.
    """

    train_steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    n_train: int = 4000
    n_eval: int = 1000
    n_paths: int = 500
    straightness_steps: int = 100

    def __post_init__(self) -> None:
        for name in (
            "train_steps",
            "batch_size",
            "n_train",
            "n_eval",
            "n_paths",
            "straightness_steps",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"Budget.{name} must be an integer >= 2, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"Budget.lr must be > 0, got {self.lr}")


FULL = Budget()
# A short run: fewer, smaller minibatches and a higher learning rate to compensate.
QUICK = Budget(
    train_steps=800,
    batch_size=128,
    lr=5e-3,
    n_train=2000,
    n_eval=500,
    n_paths=200,
    straightness_steps=50,
)


def budget(quick: bool | None = None) -> Budget:
    """:data:`QUICK` if ``quick`` (default: :func:`fast_mode`), else :data:`FULL`."""
    return QUICK if (fast_mode() if quick is None else quick) else FULL


def noise(n: int, seed: int = 0, dim: int = 2) -> torch.Tensor:
    """``n`` seeded draws of ``z0 ~ N(0, I)``."""
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def eval_noise(budget: Budget, seed: int = 0) -> torch.Tensor:
    """The noise every evaluation of a run starts from (``budget.n_eval`` points)."""
    return noise(budget.n_eval, seed + _NOISE_SEED)


def route_generator(seed: int = 0) -> torch.Generator:
    """The generator of the expert draws in evaluations (frozen / re-sampled routing)."""
    return generator(seed + _ROUTE_SEED)


def mode_anchors(dataset: str) -> tuple[torch.Tensor, float]:
    """Anchor points and radius for :func:`moefm.metrics.mode_coverage`.

    Gaussian mixtures use their means and three standard deviations (98.9% of a 2D Gaussian's
    mass). Half-moons has no modes in that sense; its anchors are 16 evenly spaced points per
    arc (noise-free ``make_moons``) with a radius that holds 99.9% of the data, so *coverage*
    reads as "share of arc segments reached" and *off-mode* as "share of samples off the moons".
    """
    gm = toy.mixture(dataset)
    if gm is not None:
        return gm.means.float(), 3.0 * float(gm.stds.max())
    if dataset == "half-moons":
        return toy.half_moons(32, noise=0.0), 0.4
    raise ValueError(
        f"no mode anchors for dataset {dataset!r}; use one of 'grid', '8-gaussians', 'half-moons'"
    )


def check_axes(
    datasets: Sequence[str],
    kind: str,
    values: Sequence[str],
    allowed: Sequence[str],
    steps: Sequence[int],
) -> None:
    """Validate a figure's data sets, its compared ``kind`` (method, routing) and step counts."""
    if not datasets or not values or not steps:
        raise ValueError(f"datasets, {kind}s and steps must each name at least one value")
    for d in datasets:
        mode_anchors(d)  # raises a ValueError naming the data set
    for v in values:
        if v not in allowed:
            raise ValueError(f"unknown {kind} {v!r}; expected one of {', '.join(allowed)}")
    if any(isinstance(T, bool) or not isinstance(T, int) or T < 1 for T in steps):
        raise ValueError(f"steps must be integers >= 1, got {tuple(steps)}")


@dataclass(frozen=True)
class Reference:
    """Held-out data to score samples against.

    ``w2_floor`` is the W2 between independent data samples of the same size (the mean over
    three draws): what a perfect sampler typically scores, so W2 numbers only mean something
    relative to it. On the grid it is large, because the exact W2 must move mass between modes
    whenever two samples put different counts in them.
    """

    dataset: str
    data: torch.Tensor
    w2_floor: float
    anchors: torch.Tensor
    radius: float


def reference(dataset: str, n: int, seed: int = 0) -> Reference:
    """``n`` held-out points of ``dataset``, their W2 floor and the mode anchors."""
    data = toy.make(dataset, n, seed=seed + _REF_SEED)
    floor = (
        sum(wasserstein2(toy.make(dataset, n, seed=seed + _FLOOR_SEED + i), data) for i in range(3))
        / 3
    )
    anchors, radius = mode_anchors(dataset)
    return Reference(dataset, data, floor, anchors, radius)


def train_flow(
    dataset: str,
    method: str,
    budget: Budget,
    *,
    K: int = 6,
    sigma: float = 0.1,
    seed: int = 0,
) -> TrainResult:
    """Train one flow with :func:`moefm.train.train` on ``budget.n_train`` points of ``dataset``.

    ``method`` is ``vfm`` (eq. 2), ``ot-cfm`` (eq. 2 on a minibatch-OT coupling) or ``moefm``
    (eq. 5 with K experts of width sigma; K = 6, sigma = 0.1 are the paper's values).
    """
    data = toy.make(dataset, budget.n_train, seed=seed)
    cfg = TrainConfig(
        method=method,
        K=K,
        sigma=sigma,
        steps=budget.train_steps,
        batch_size=budget.batch_size,
        lr=budget.lr,
        seed=seed,
    )
    return train(data, cfg)


@dataclass(frozen=True)
class Score:
    """Sample quality at ``T`` Euler steps: exact W2 to the reference, mode coverage and the
    share of samples off every mode (see :func:`mode_anchors`)."""

    T: int
    w2: float
    coverage: float
    off_mode: float


def score_samples(samples: torch.Tensor, ref: Reference, T: int) -> Score:
    stats = mode_coverage(samples, ref.anchors, ref.radius)
    return Score(T, wasserstein2(samples, ref.data), stats.coverage, stats.off_mode)


def evaluate(
    model: Any,
    ref: Reference,
    steps: Sequence[int],
    budget: Budget,
    *,
    routing: str = "frozen",
    seed: int = 0,
) -> tuple[list[Score], Straightness]:
    """Score ``model`` at every number of Euler steps in ``steps`` and measure its straightness.

    All step counts start from the same noise, so differences between them come from the
    solver alone. Straightness (:func:`moefm.metrics.straightness`) is a property of the
    continuous flow, integrated on a fine grid of ``budget.straightness_steps`` Euler steps.
    """
    z0 = eval_noise(budget, seed)
    scores = []
    with torch.inference_mode():
        for T in steps:
            out = sample(model, z0, T, routing=routing, generator=route_generator(seed))
            scores.append(score_samples(out.z1, ref, T))
    s = straightness(
        model,
        z0[: budget.n_paths],
        steps=budget.straightness_steps,
        routing=routing,
        generator=route_generator(seed),
    )
    return scores, s


class ExactVFMField:
    """The exact VFM optimum ``E[z1 - z0 | z_t, t]`` (Prop. 3.1) as a one-expert field.

    It implements :class:`moefm.models.MoEField`, so :func:`moefm.sample` and
    :func:`moefm.metrics.straightness` integrate the *ideal* VFM model exactly like a trained
    one: whatever it gets wrong, no amount of training can fix.

    Example:
        >>> field = ExactVFMField(toy.grid_mixture())
        >>> sample(field, torch.randn(100, 2), steps=4).z1.shape
        torch.Size([100, 2])
    """

    K = 1

    def __init__(self, mixture: GaussianMixture) -> None:
        if not isinstance(mixture, GaussianMixture):
            raise ValueError(
                f"mixture must be a moefm.theory.GaussianMixture, got {type(mixture).__name__}"
            )
        self.mixture = mixture

    def features(
        self, z: torch.Tensor, t: torch.Tensor, cond: Any = None
    ) -> tuple[torch.Tensor, float]:
        t = torch.as_tensor(t).reshape(-1)
        if t.numel() == 0 or not torch.all(t == t[0]):
            raise ValueError("ExactVFMField needs one time shared by the whole batch")
        return z, float(t[0])

    def log_pi(self, feats: tuple[torch.Tensor, float]) -> torch.Tensor:
        z, _ = feats
        return z.new_zeros(*z.shape[:-1], 1)

    def field(self, feats: tuple[torch.Tensor, float], idx: torch.Tensor | None) -> torch.Tensor:
        z, t = feats
        return self.mixture.vfm_optimum(z, t).to(z.dtype)

    def fields(self, feats: tuple[torch.Tensor, float]) -> torch.Tensor:
        return self.field(feats, None).unsqueeze(-2)


# ---- tables, files and the shared command line ----------------------------------------------


@dataclass
class FigureResult:
    """A figure, its table (one dict per row) and the column order of the table."""

    figure: Any
    rows: list[dict[str, Any]]
    columns: tuple[str, ...]


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], digits: int = 3) -> str:
    """A plain-text table with aligned columns (floats to ``digits`` decimals)."""
    cells = [list(columns)] + [[_cell(r[c], digits) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save_result(result: FigureResult, out: Path | str, name: str) -> tuple[Path, Path]:
    """Write ``<out>/<name>.png`` and ``<out>/<name>.csv``; return both paths."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out must be a directory, but {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    png, table = out / f"{name}.png", out / f"{name}.csv"
    result.figure.savefig(png, dpi=110)
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result.columns), extrasaction="ignore")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    return png, table


C = TypeVar("C")


def figure_main(
    name: str,
    description: str,
    configure: Callable[[bool, int], C],
    run: Callable[[C], FigureResult],
    argv: Sequence[str] | None = None,
) -> int:
    """The command line every figure module shares: ``--out DIR [--quick] [--seed N]``.

    ``configure(quick, seed)`` builds the module's config and ``run(config)`` the result, which
    is saved as ``<name>.png`` + ``<name>.csv`` and printed as a table.
    """
    parser = argparse.ArgumentParser(prog=f"python -m labs.{name}", description=description)
    parser.add_argument("--out", type=Path, required=True, help="directory for the PNG and CSV")
    parser.add_argument("--quick", action="store_true", help="small budget, well under a minute")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, models and noise")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():  # fail before minutes of training, not after
        parser.error(f"--out must be a directory, but {args.out} is a file")
    setup(seed=args.seed)
    start = time.perf_counter()
    result = run(configure(args.quick, args.seed))
    png, table = save_result(result, args.out, name)
    print(format_table(result.rows, result.columns))
    print(f"\nwrote {png} and {table} in {time.perf_counter() - start:.1f} s")
    return 0
