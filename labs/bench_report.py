"""Read our own 2D benchmark (``reports/moefm_bench.json``, written by ``python -m moefm.bench``)
and turn it into the figure and the statements of notebook 03.

Every sentence notebook 03 says about the benchmark is one entry of :func:`claims`, computed
from the JSON; the notebook asserts them and so does the test suite. If a new benchmark run
changes the picture, the notebook fails instead of telling an old story.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

REPORT = Path(__file__).resolve().parents[1] / "reports" / "moefm_bench.json"
PAPER_SIGMA = 0.1


@dataclass(frozen=True)
class Curve:
    """One line of the W2-vs-T plot: a method, and for MoE-FM a routing at the paper's sigma."""

    label: str
    method: str
    routing: str = "none"
    sigma: float | None = None

    def matches(self, row: dict[str, Any]) -> bool:
        return (
            row["method"] == self.method
            and row["routing"] == self.routing
            and (self.sigma is None or row.get("sigma") == self.sigma)
        )


VFM = Curve("VFM", "vfm")
OT = Curve("OT-CFM", "ot-cfm")
FROZEN = Curve("MoE-FM, frozen routing", "moefm", "frozen", PAPER_SIGMA)
RESAMPLE = Curve("MoE-FM, re-sampled routing", "moefm", "resample", PAPER_SIGMA)
MEAN = Curve("MoE-FM, mixture mean", "moefm", "mean", PAPER_SIGMA)
CORE = (VFM, OT, FROZEN, RESAMPLE)
# path-consistent MoE-FM (moefm.clusters): frozen routing, independent and OT pairs
CLUSTER = Curve("path-consistent MoE-FM, frozen", "moefm-cluster", "frozen")
CLUSTER_OT = Curve("path-consistent MoE-FM (OT pairs), frozen", "moefm-cluster-ot", "frozen")
CLUSTER_OT_MEAN = Curve("path-consistent MoE-FM (OT pairs), mean", "moefm-cluster-ot", "mean")
# the data sets notebook 03 discusses ("on both"); the report may hold more
NOTEBOOK_DATASETS = ("grid", "half-moons")


def load(path: Path | str = REPORT) -> list[dict[str, Any]]:
    """The aggregated records (mean over seeds) with a finite W2; diverged ones are dropped."""
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path} holds no benchmark records")
    return [r for r in rows if r.get("w2") is not None and not r.get("diverged")]


def datasets(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({r["dataset"] for r in rows})


def shown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The data sets notebook 03 shows and discusses (:data:`NOTEBOOK_DATASETS`, those the
    report has; all of the report's when it has none of them)."""
    have = datasets(rows)
    return [d for d in NOTEBOOK_DATASETS if d in have] or have


def curves(rows: Sequence[dict[str, Any]]) -> list[Curve]:
    """:data:`CORE`, the mixture mean, and every other MoE-FM routing the report has at the paper's sigma (a new
    routing variant joins the plot without a code change)."""
    known = {c.routing for c in (*CORE, MEAN) if c.method == "moefm"}
    extra = sorted(
        {
            r["routing"]
            for r in rows
            if r["method"] == "moefm"
            and r.get("sigma") == PAPER_SIGMA
            and r["routing"] not in known
        }
    )
    has_mean = any(MEAN.matches(r) for r in rows)
    return [
        *CORE,
        *([MEAN] if has_mean else []),
        *(c for c in (CLUSTER, CLUSTER_OT) if any(c.matches(r) for r in rows)),
        *(Curve(f"MoE-FM, {r} routing", "moefm", r, PAPER_SIGMA) for r in extra),
    ]


def series(
    rows: Sequence[dict[str, Any]], dataset: str, curve: Curve
) -> tuple[list[int], list[float], list[float]]:
    """Steps T, mean W2 and its standard deviation over seeds (0 where the JSON has none)."""
    sel = sorted(
        (r for r in rows if r["dataset"] == dataset and curve.matches(r)), key=lambda r: r["steps"]
    )
    return (
        [r["steps"] for r in sel],
        [float(r["w2"]) for r in sel],
        [float(r.get("w2_std") or 0.0) for r in sel],
    )


def w2(rows: Sequence[dict[str, Any]], dataset: str, curve: Curve) -> dict[int, float]:
    """Mean W2 by T; ``KeyError`` if the report has no record of ``curve`` on ``dataset``."""
    T, mean, _ = series(rows, dataset, curve)
    if not T:
        raise KeyError(f"no W2 for {curve.label} on {dataset}")
    return dict(zip(T, mean))


def _std(rows: Sequence[dict[str, Any]], dataset: str, curve: Curve, T: int) -> float:
    steps, _, std = series(rows, dataset, curve)
    return dict(zip(steps, std))[T]


def straightness(rows: Sequence[dict[str, Any]], dataset: str, curve: Curve) -> float:
    """The flow's straightness (the same for every T of a run)."""
    for r in rows:
        if r["dataset"] == dataset and curve.matches(r) and r.get("straightness") is not None:
            return float(r["straightness"])
    raise KeyError(f"no straightness for {curve.label} on {dataset}")


def train_seconds(rows: Sequence[dict[str, Any]], dataset: str, curve: Curve) -> float:
    for r in rows:
        if r["dataset"] == dataset and curve.matches(r) and r.get("train_seconds") is not None:
            return float(r["train_seconds"])
    raise KeyError(f"no training time for {curve.label} on {dataset}")


def claims(rows: Sequence[dict[str, Any]]) -> dict[str, bool]:
    """The statements notebook 03 makes about the benchmark, each checked on ``rows``.

    A statement whose data the report lacks (a quick run without the sigma sweep, say) is
    ``False``: it cannot be supported.
    """
    ds = shown(rows)
    W = lambda d, c: w2(rows, d, c)  # noqa: E731
    S = lambda d, c: straightness(rows, d, c)  # noqa: E731
    both = lambda f: all(f(d) for d in ds)  # noqa: E731
    sigma_one = Curve("frozen, sigma = 1", "moefm", "frozen", 1.0)
    small = [Curve(f"frozen, sigma = {s}", "moefm", "frozen", s) for s in (0.03, 0.1, 0.3)]
    moons = "half-moons"

    def grows_from_2(d: str) -> bool:
        later = [W(d, FROZEN)[T] for T in sorted(W(d, FROZEN)) if T >= 2]
        return all(a < b for a, b in zip(later, later[1:]))

    statements = {
        "OT-CFM has a lower W2 than frozen MoE-FM at every T, on both data sets": lambda: both(
            lambda d: all(W(d, OT)[T] < w for T, w in W(d, FROZEN).items())
        ),
        "OT-CFM's flow is more than 10x straighter than frozen MoE-FM's, on both": lambda: both(
            lambda d: S(d, FROZEN) > 10 * S(d, OT)
        ),
        "on half-moons frozen MoE-FM's W2 grows with every T from T = 2 on": lambda: grows_from_2(
            moons
        ),
        "frozen MoE-FM's W2 at T = 32 is worse than at T = 8, on both": lambda: both(
            lambda d: W(d, FROZEN)[32] > W(d, FROZEN)[8]
        ),
        "frozen MoE-FM beats VFM at T <= 4, on both": lambda: both(
            lambda d: all(W(d, FROZEN)[T] < W(d, VFM)[T] for T in (1, 2, 3, 4))
        ),
        "VFM beats frozen MoE-FM at T >= 8, on both": lambda: both(
            lambda d: all(W(d, VFM)[T] < W(d, FROZEN)[T] for T in (8, 16, 32))
        ),
        "frozen MoE-FM's flow is straighter than VFM's, on both": lambda: both(
            lambda d: S(d, FROZEN) < S(d, VFM)
        ),
        "re-sampled routing has the best W2 of the three routings at T = 2..8, on both": lambda: (
            both(
                lambda d: all(
                    W(d, RESAMPLE)[T] < min(W(d, FROZEN)[T], W(d, MEAN)[T]) for T in (2, 3, 4, 8)
                )
            )
        ),
        "re-sampled routing beats frozen routing at every T >= 2, on both": lambda: both(
            lambda d: all(w < W(d, FROZEN)[T] for T, w in W(d, RESAMPLE).items() if T >= 2)
        ),
        "on half-moons re-sampled routing is below OT-CFM at T = 2..16": lambda: all(
            W(moons, RESAMPLE)[T] < W(moons, OT)[T] for T in (2, 3, 4, 8, 16)
        ),
        "on half-moons re-sampled routing is within a seed std of OT-CFM from T = 4 on": lambda: (
            all(
                abs(W(moons, RESAMPLE)[T] - W(moons, OT)[T])
                <= max(_std(rows, moons, RESAMPLE, T), _std(rows, moons, OT, T))
                for T in (4, 8, 16, 32)
            )
        ),
        "on the grid re-sampled routing never beats OT-CFM": lambda: all(
            W("grid", OT)[T] <= w for T, w in W("grid", RESAMPLE).items()
        ),
        "re-sampled routing's straightness is the worst of all, on both": lambda: both(
            lambda d: S(d, RESAMPLE) > max(S(d, c) for c in (VFM, OT, FROZEN, MEAN))
        ),
        "the mixture mean is within 0.1 of VFM's W2 at every T, on both": lambda: both(
            lambda d: all(abs(W(d, MEAN)[T] - w) < 0.1 for T, w in W(d, VFM).items())
        ),
        "on the grid frozen MoE-FM at sigma = 1 is worse than at sigma = 0.03-0.3 at every T": (
            lambda: all(
                w > max(W("grid", c)[T] for c in small) for T, w in W("grid", sigma_one).items()
            )
        ),
        "on half-moons sigma = 1 is worse than sigma = 0.1 at T <= 4 and better at T >= 8": (
            lambda: (
                all(W(moons, sigma_one)[T] > W(moons, FROZEN)[T] for T in (1, 2, 3, 4))
                and all(W(moons, sigma_one)[T] < W(moons, FROZEN)[T] for T in (8, 16, 32))
            )
        ),
        "OT-CFM trains more than 3x slower than VFM (exact assignment per batch)": lambda: both(
            lambda d: train_seconds(rows, d, OT) > 3 * train_seconds(rows, d, VFM)
        ),
        # path-consistent MoE-FM (notebook 05, moefm.clusters), on every data set of the report
        "path-consistent MoE-FM with OT pairs, frozen routing, does not get worse from T = 2 to "
        "T = 32 (within 2 seed stds), on every data set": lambda: all(
            W(d, CLUSTER_OT)[32] <= W(d, CLUSTER_OT)[2] + 2 * _std(rows, d, CLUSTER_OT, 2)
            for d in datasets(rows)
        ),
        "path-consistent MoE-FM with OT pairs and mixture-mean routing is below OT-CFM at T <= 2 "
        "on every data set": lambda: all(
            W(d, CLUSTER_OT_MEAN)[T] < W(d, OT)[T] for d in datasets(rows) for T in (1, 2)
        ),
        "path-consistent MoE-FM (independent pairs), frozen routing, is better at T = 32 than at "
        "T = 2, on both": lambda: both(lambda d: W(d, CLUSTER)[32] < W(d, CLUSTER)[2]),
    }
    out: dict[str, bool] = {}
    for text, holds in statements.items():
        try:
            out[text] = bool(holds())
        except KeyError:  # the report has no record for a curve or a T the statement needs
            out[text] = False
    return out


def summary(rows: Sequence[dict[str, Any]], steps: Sequence[int] = (1, 2, 4, 8, 32)) -> str:
    """A plain-text table: W2 per T (mean +- std over seeds), straightness, training seconds."""
    head = f"{'':>10}  {'method':<28}" + "".join(f"{'T=' + str(T):>15}" for T in steps)
    lines = [head + f"{'straightness':>14}{'train s':>9}"]
    for d in shown(rows):
        for c in curves(rows):
            T, mean, std = series(rows, d, c)
            if not T:
                continue
            cell = dict(zip(T, zip(mean, std)))
            vals = "".join(
                f"{cell[s][0]:>8.3f} +-{cell[s][1]:.2f}" if s in cell else f"{'-':>14}"
                for s in steps
            )
            lines.append(
                f"{d:>10}  {c.label:<28}{vals}{straightness(rows, d, c):>14.3f}"
                f"{train_seconds(rows, d, c):>9.1f}"
            )
    return "\n".join(lines)


def plot_w2(
    rows: Sequence[dict[str, Any]],
    floors: dict[str, float] | None = None,
    *,
    show: Sequence[Curve] | None = None,
) -> Figure:
    """W2 against T per data set, with +-1 std over seeds as error bars and the data floor,
    and the straightness of every flow (log scale) in a last panel."""
    sets = shown(rows)
    show = list(show) if show is not None else curves(rows)
    fig = Figure(figsize=(4.6 * len(sets) + 3.8, 3.8), layout="constrained")
    axes = fig.subplots(1, len(sets) + 1)
    colors = {"VFM": "#7f7f7f", "OT-CFM": "#2ca02c"}
    palette = iter(["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"])
    color = {c.label: colors.get(c.label) or next(palette) for c in show}
    for ax, d in zip(axes, sets):
        for c in show:
            T, mean, std = series(rows, d, c)
            if T:
                ax.errorbar(
                    T,
                    mean,
                    yerr=std,
                    marker="o",
                    ms=4,
                    capsize=3,
                    label=c.label,
                    c=color[c.label],
                    ls="--" if c == MEAN else "-",
                )
                ax.set_xticks(T, [str(s) for s in T])
        if floors and d in floors:
            ax.axhline(floors[d], c="k", ls="--", lw=1, label="data floor (two data samples)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("Euler steps T")
        ax.set_ylabel("exact W2 to held-out data (lower is better)")
        seeds = max(r.get("seeds", 1) for r in rows if r["dataset"] == d)
        ax.set_title(f"{d}: W2 vs T (mean +- std over {seeds} seeds)", fontsize=9)
        ax.legend(fontsize=6)
    ax = axes[-1]
    width = 0.8 / len(sets)
    for j, d in enumerate(sets):
        vals = [straightness(rows, d, c) for c in show]
        xs = [i + (j - (len(sets) - 1) / 2) * width for i in range(len(show))]
        ax.bar(xs, vals, width, label=d, color=["#9ecae1", "#fdae6b"][j % 2], edgecolor="k", lw=0.3)
    ax.set_yscale("log")
    ax.set_xticks(
        range(len(show)),
        [c.label.replace("MoE-FM, ", "MoE-FM\n") for c in show],
        fontsize=6,
        rotation=30,
    )
    ax.set_ylabel("straightness S (0 = straight)")
    ax.set_title("straightness of each flow (log scale)", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(
        "Our benchmark (reports/moefm_bench.json): VFM vs OT-CFM vs MoE-FM (K = 6, sigma = 0.1)",
        fontsize=10,
    )
    return fig
