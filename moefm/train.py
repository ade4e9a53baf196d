"""A compact, deterministic trainer for 2D / low-dimensional data.

VFM, OT-CFM and MoE-FM differ in one place each: the coupling of noise and data (independent
or minibatch optimal transport) and the head/loss (K = 1 with eq. 2, or K experts with eq. 5).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from ._checks import (
    check_choice,
    check_finite,
    check_number,
    check_positive_int,
    check_seed,
    check_sigma,
)
from .clusters import cluster_moefm_loss, kmeans_labels
from .losses import MIN_SIGMA, moefm_nll, vfm_loss
from .models import FlowModel
from .paths import linear_path

METHODS = ("vfm", "ot-cfm", "moefm", "moefm-cluster", "moefm-cluster-ot")
CLUSTER_METHODS = ("moefm-cluster", "moefm-cluster-ot")


@dataclass
class TrainConfig:
    """Settings of one 2D training run; defaults follow the paper where it gives them (K=6, sigma=0.1).

    ``method``: ``vfm`` (K=1, independent coupling), ``ot-cfm`` (K=1, minibatch OT coupling,
    Tong et al.), ``moefm`` (K experts, eq. 5), or path-consistent MoE-FM (not in the paper,
    :mod:`moefm.clusters`): ``moefm-cluster`` (K experts, each the flow of one k-means cluster
    of the data, a gate trained to predict the cluster; independent coupling) and
    ``moefm-cluster-ot`` (the same on minibatch-OT pairs). ``sigma`` only matters for ``moefm``.
    """

    method: str = "moefm"
    K: int = 6
    sigma: float = 0.1
    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    hidden: int = 128
    depth: int = 3
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        # checked here, not at the first step: a bad value must not cost a training run
        check_choice("method", self.method, METHODS)
        check_positive_int("K", self.K)
        check_sigma(self.sigma, MIN_SIGMA)
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("hidden", self.hidden)
        check_positive_int("depth", self.depth)
        check_number("lr", self.lr, positive=True)
        check_number("weight_decay", self.weight_decay, minimum=0.0)
        check_seed(self.seed)

    @property
    def experts(self) -> int:
        """Number of experts actually used: 1 for the VFM and OT-CFM baselines."""
        return self.K if self.method.startswith("moefm") else 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: FlowModel
    config: TrainConfig
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def ot_coupling(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """Re-order ``z0`` so that ``(z0[i], z1[i])`` follow the exact minibatch OT plan (squared
    Euclidean cost; equal batch sizes make it a permutation)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(z0, z1).pow(2).cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    perm = torch.empty(len(cols), dtype=torch.long)
    perm[torch.as_tensor(cols)] = torch.as_tensor(rows)
    return z0[perm]


def flow_loss(
    model: FlowModel,
    z1: torch.Tensor,
    cfg: TrainConfig,
    g: torch.Generator,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """One minibatch loss: sample noise and times, couple, evaluate eq. (2), eq. (5) or the
    path-consistent loss (:func:`moefm.clusters.cluster_moefm_loss`, which needs the cluster
    ``labels`` of ``z1``)."""
    z0 = torch.randn(z1.shape, generator=g)
    if cfg.method in ("ot-cfm", "moefm-cluster-ot"):
        z0 = ot_coupling(z0, z1)
    t = torch.rand(z1.shape[0], generator=g)
    z_t, u = linear_path(z0, z1, t)
    out = model(z_t, t)
    if cfg.method in CLUSTER_METHODS:
        if labels is None:
            raise ValueError(f"method {cfg.method!r} needs the cluster labels of z1")
        return cluster_moefm_loss(out.u, out.log_pi, u, labels)
    if model.K == 1:
        return vfm_loss(out.u[..., 0, :], u)
    return moefm_nll(out.u, out.log_pi, u, cfg.sigma)


def train(
    data: torch.Tensor,
    cfg: TrainConfig | None = None,
    *,
    progress: Callable[[int, float], None] | None = None,
    show_progress: bool = False,
) -> TrainResult:
    """Train a flow on a fixed set of points ``data (n, m)`` (minibatches drawn with replacement).

    ``data`` of any real dtype is cast to float32 (the model's precision). Deterministic given
    ``cfg.seed``. ``progress(step, loss)`` is called every 1% of the run
    (the Streamlit app drives its progress bar with it); ``show_progress`` shows a tqdm bar.
    """
    cfg = cfg or TrainConfig()
    if data.dim() != 2 or data.shape[0] < 2:
        raise ValueError(f"data must have shape (n, m) with n >= 2, got {tuple(data.shape)}")
    check_finite("data", data)
    torch.manual_seed(cfg.seed)  # model initialisation
    g = torch.Generator().manual_seed(cfg.seed)
    model = FlowModel.mlp(data.shape[1], K=cfg.experts, hidden=cfg.hidden, depth=cfg.depth)
    start = time.perf_counter()  # k-means is part of the cluster methods' training time
    labels = None
    if cfg.method in CLUSTER_METHODS:
        labels = kmeans_labels(data.float(), cfg.K, cfg.seed)[0].to(data.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.05)
    data = data.float()
    losses: list[float] = []
    every = max(1, cfg.steps // 100)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc=f"{cfg.method} K={cfg.experts}", leave=False)
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
        loss = flow_loss(model, data[idx], cfg, g, None if labels is None else labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % every == 0 or step == cfg.steps:
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged at step {step} (loss {loss.item()})")
            if progress is not None:
                progress(step, losses[-1])
            if bar is not None:
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    return TrainResult(model, cfg, losses, time.perf_counter() - start)
