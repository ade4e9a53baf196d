"""A compact, deterministic trainer for 2D / low-dimensional data.

VFM, OT-CFM and MoE-FM differ in one place each: the coupling of noise and data (independent
or minibatch optimal transport) and the head/loss (K = 1 with eq. 2, or K experts with eq. 5).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from ._checks import check_choice, check_finite, check_positive_int, check_sigma
from .losses import moefm_nll, vfm_loss
from .models import FlowModel
from .paths import linear_path

METHODS = ("vfm", "ot-cfm", "moefm")


@dataclass
class TrainConfig:
    """Settings of one 2D training run; defaults follow the paper where it gives them (K=6, sigma=0.1).

    ``method``: ``vfm`` (K=1, independent coupling), ``ot-cfm`` (K=1, minibatch OT coupling,
    Tong et al.) or ``moefm`` (K experts, eq. 5).
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
        check_choice("method", self.method, METHODS)
        check_positive_int("K", self.K)
        check_sigma(self.sigma)
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("hidden", self.hidden)
        check_positive_int("depth", self.depth)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @property
    def experts(self) -> int:
        """Number of experts actually used: 1 for the VFM and OT-CFM baselines."""
        return self.K if self.method == "moefm" else 1

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
    model: FlowModel, z1: torch.Tensor, cfg: TrainConfig, g: torch.Generator
) -> torch.Tensor:
    """One minibatch loss: sample noise and times, couple, evaluate eq. (2) or eq. (5)."""
    z0 = torch.randn(z1.shape, generator=g)
    if cfg.method == "ot-cfm":
        z0 = ot_coupling(z0, z1)
    t = torch.rand(z1.shape[0], generator=g)
    z_t, u = linear_path(z0, z1, t)
    out = model(z_t, t)
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

    Deterministic given ``cfg.seed``. ``progress(step, loss)`` is called every 1% of the run
    (the Streamlit app drives its progress bar with it); ``show_progress`` shows a tqdm bar.
    """
    cfg = cfg or TrainConfig()
    if data.dim() != 2 or data.shape[0] < 2:
        raise ValueError(f"data must have shape (n, m) with n >= 2, got {tuple(data.shape)}")
    check_finite("data", data)
    torch.manual_seed(cfg.seed)  # model initialisation
    g = torch.Generator().manual_seed(cfg.seed)
    model = FlowModel.mlp(data.shape[1], K=cfg.experts, hidden=cfg.hidden, depth=cfg.depth)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.05)
    data = data.float()
    losses: list[float] = []
    every = max(1, cfg.steps // 100)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc=f"{cfg.method} K={cfg.experts}", leave=False)
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
        loss = flow_loss(model, data[idx], cfg, g)
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
