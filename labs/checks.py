"""Checks for the notebooks' "your turn" exercises: each compares the student's function with the
library and, when they differ, says what is wrong.

A notebook exercise is a function the student writes in a cell marked ``@exercise``; the next
cell calls its check, e.g. ``check_linear_path(linear_path)``. A check prints one line starting
with ``passed:`` or raises an ``AssertionError`` whose message names the mistake: it computes
the usual wrong answers (swapped ``t`` and ``1 - t``, a missing gate, ``exp`` instead of
``logsumexp`` ...) and reports the one the student's output matches, or the size of the
difference and a hint otherwise.

Every check builds its own small inputs (and, in notebook 05, its own small random model), so it
runs in a fraction of a second and does not depend on what the notebook trained.

With ``MOEFM_LAB_SOLUTIONS=1`` in the environment, :func:`exercise` swaps every exercise for the
reference answer in :mod:`labs.solutions`; the test suite runs the notebooks that way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

import moefm
import moefm.train
from labs.check_tools import (  # noqa: F401  (SOLUTIONS_ENV, exercise: the notebooks' API)
    SOLUTIONS_ENV,
    as_tensor_of,
    call_student,
    compare,
    exercise,
    fn_name,
    passed,
    seeded,
    solutions_enabled,
)
from moefm import toy
from moefm.theory import GaussianMixture, moefm_optimum

# ---- notebook 01 ----------------------------------------------------------------------------


def check_linear_path(fn: Callable[..., Any]) -> None:
    """``fn(z0, z1, t) -> (z_t, u_star)`` with ``t`` of shape ``(B,)`` is eq. (2)."""
    g = seeded(0)
    z0, z1 = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    broadcast = "t has shape (B,) and z0 (B, m): give t a trailing axis, t[:, None]"
    for t in (torch.rand(5, generator=g), torch.zeros(5), torch.ones(5)):
        out = call_student(fn, z0, z1, t, hint=broadcast)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise AssertionError("linear_path must return a pair (z_t, u_star)")
        ref = moefm.linear_path(z0, z1, t)
        tt = t[:, None]
        compare(
            out[0],
            ref.z_t,
            f"z_t (t = {t.tolist()[0]:.2f}, ...)",
            mistakes=[
                (
                    "you swapped t and 1 - t: z_t must be the noise z0 at t = 0 and the "
                    "data z1 at t = 1",
                    (1 - tt) * z1 + tt * z0,
                )
            ],
            hint=broadcast,
        )
        compare(
            out[1],
            ref.u_target,
            "u_star",
            mistakes=[
                ("wrong sign: u* = dz_t/dt = z1 - z0", z0 - z1),
                ("u* is the velocity z1 - z0, not the position z_t", ref.z_t),
            ],
        )
    passed("linear_path matches moefm.linear_path at random t, t = 0 and t = 1")


def check_vfm_loss(fn: Callable[..., Any]) -> None:
    """``fn(v, u_star) -> scalar``: eq. (2), ``mean_b ||v_b - u*_b||^2``, with a gradient."""
    g = seeded(1)
    v = torch.randn(7, 2, generator=g, requires_grad=True)
    u = torch.randn(7, 2, generator=g)
    mine = call_student(fn, v, u)
    ref = moefm.vfm_loss(v, u)
    sq = (v - u).pow(2).sum(-1)
    compare(
        mine,
        ref,
        "the loss",
        mistakes=[
            (
                "you averaged over the coordinates too (that is F.mse_loss): eq. (2) sums "
                "the m squared coordinates and averages over the batch only",
                sq.mean() / 2,
            ),
            ("you summed over the batch: average it", sq.sum()),
            ("you averaged ||v - u*||: square the norm", sq.sqrt().mean()),
        ],
    )
    if not isinstance(mine, torch.Tensor) or mine.dim() != 0:
        raise AssertionError("the loss must be a 0-d tensor (a scalar), not a batch of values")
    if not mine.requires_grad:
        raise AssertionError(
            "the loss has no gradient: keep it a tensor (no .item(), no torch.no_grad())"
        )
    (grad,) = torch.autograd.grad(mine, v)
    compare(grad, 2 * (v - u).detach() / len(v), "the gradient d loss / d v")
    passed("vfm_loss matches moefm.vfm_loss, value and gradient")


def check_marginal_field(fn: Callable[..., Any]) -> None:
    """``fn(z, t, data) -> (n, m)``: the exact marginal field ``E[(z1 - z)/(1 - t) | z_t = z]``
    for the empirical distribution of ``data``."""
    data = toy.half_moons(60, seed=3)
    # the empirical measure is the Gaussian mixture with (vanishing) width around each point
    dirac = GaussianMixture(data.double(), 1e-6)
    z = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-1.2, 0.8], [3.0, 3.0]])
    stable = (
        "the weights exp(-||z - t z1||^2 / (2 (1 - t)^2)) underflow for t near 1: compute their "
        "logs and normalise with torch.softmax over the data points"
    )
    for t in (0.0, 0.4, 0.9):
        mine = call_student(fn, z, t, data, hint=stable)
        ref = dirac.vfm_optimum(z.double(), t)
        d = z[:, None] - data[None]  # wrong: compares z with z1 instead of t z1
        wrong_center = (torch.softmax(-d.pow(2).sum(-1) / (2 * (1 - t) ** 2), -1) @ data - z) / (
            1 - t
        )
        dt = z[:, None] - t * data[None]
        w_var = torch.softmax(-dt.pow(2).sum(-1) / (2 * (1 - t)), -1)
        mistakes = [
            (
                "p(z_t = z | z1) is N(t z1, (1 - t)^2 I): compare z with t z1, not with z1",
                wrong_center,
            ),
            (
                "the variance of z_t given z1 is (1 - t)^2, not 1 - t",
                (w_var @ data - z) / (1 - t),
            ),
            (
                "you averaged the conditional fields with equal weights: weight data point i "
                "by its posterior p(z1_i | z_t = z)",
                (data.mean(0) - z) / (1 - t),
            ),
        ]
        if t > 0:
            w = torch.softmax(-dt.pow(2).sum(-1) / (2 * (1 - t) ** 2), -1)
            mistakes.append(
                ("the conditional field is (z1 - z)/(1 - t): divide by 1 - t", w @ data - z)
            )
        compare(mine, ref, f"the field at t = {t}", mistakes=mistakes, hint=stable, rtol=1e-3)
    passed(
        "marginal_field matches moefm.theory's VFM optimum of the empirical data at t = 0, 0.4, 0.9"
    )


# ---- notebook 02 ----------------------------------------------------------------------------


def _lopsided_mixture() -> GaussianMixture:
    """Unequal weights and widths, so that every term of the posterior matters."""
    means = torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]])
    return GaussianMixture(means, torch.tensor([0.1, 0.4, 0.8]), torch.tensor([0.5, 0.3, 0.2]))


def _query_points() -> torch.Tensor:
    return torch.tensor([[0.3, 0.2], [-1.0, 0.1], [0.8, 0.5], [0.1, -1.2], [2.5, -2.5]])


def check_mode_posterior(fn: Callable[..., Any]) -> None:
    """``fn(z_t, t, gm) -> (n, J)``: ``p(j | z_t)`` for a Gaussian mixture ``gm``."""
    gm = _lopsided_mixture()
    z = _query_points().double()
    for t in (0.3, 0.7):
        mine = call_student(fn, z, t, gm)
        ref = gm.velocity_posterior(z, t)[0]
        s2, mu, w = gm.stds**2, gm.means, gm.weights
        v = t**2 * s2 + (1 - t) ** 2
        d2 = (z[:, None] - t * mu).pow(2).sum(-1)

        def post(log_w: torch.Tensor) -> torch.Tensor:
            return torch.softmax(log_w, -1)

        mistakes = [
            (
                "z_t given mode j is centred at t mu_j, not mu_j",
                post(w.log() - 0.5 * (z[:, None] - mu).pow(2).sum(-1) / v - torch.log(v)),
            ),
            (
                "the components have different variances v_j, so the Gaussian normaliser "
                "-(m/2) log(2 pi v_j) does not cancel: keep it",
                post(w.log() - 0.5 * d2 / v),
            ),
            ("you left out the prior weights w_j", post(-0.5 * d2 / v - torch.log(v))),
            (
                "the variance of z_t given mode j is v_j = t^2 s_j^2 + (1 - t)^2",
                post(w.log() - 0.5 * d2 / (s2 + (1 - t) ** 2) - torch.log(s2 + (1 - t) ** 2)),
            ),
        ]
        compare(mine, ref, f"p(j | z_t) at t = {t}", mistakes=mistakes)
    passed("mode_posterior matches GaussianMixture.velocity_posterior's weights")


def check_vfm_optimum(fn: Callable[..., Any]) -> None:
    """``fn(z_t, t, gm) -> (n, m)``: the VFM optimum ``E[z1 - z0 | z_t, t]`` (Prop. 3.1)."""
    gm = _lopsided_mixture()
    z = _query_points().double()
    for t in (0.0, 0.3, 0.7):
        mine = call_student(fn, z, t, gm)
        ref = gm.vfm_optimum(z, t)
        w = gm.velocity_posterior(z, t)[0]
        mistakes = [
            (
                "E[z1 | z_t, j] is not mu_j: within a component z_t still says where z1 lies, "
                "E[u* | z_t, j] = mu_j + (c_j / v_j)(z_t - t mu_j)",
                (w @ gm.means - z) / (1 - t) if t > 0 else w @ gm.means - z,
            ),
            ("you forgot the posterior weights p(j | z_t)", gm.velocity_posterior(z, t)[1].mean(1)),
        ]
        compare(mine, ref, f"E[u* | z_t, t = {t}]", mistakes=mistakes)
    passed("vfm_optimum matches GaussianMixture.vfm_optimum (Prop. 3.1)")


# ---- notebook 03 ----------------------------------------------------------------------------


def _moe_batch(sigma_far: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = seeded(4)
    u = torch.randn(6, 3, 2, generator=g)
    log_pi = torch.log_softmax(torch.randn(6, 3, generator=g), -1)
    target = torch.randn(6, 2, generator=g) * (3.0 if sigma_far else 1.0)
    return u, log_pi, target


def check_moefm_nll(fn: Callable[..., Any]) -> None:
    """``fn(u_experts, log_pi, u_target, sigma) -> scalar``: eq. (5) without the normaliser."""
    for sigma, far in ((0.5, False), (0.1, False), (0.01, True)):
        u, log_pi, target = _moe_batch(far)
        u.requires_grad_(True)
        stable = (
            f"at sigma = {sigma} exp(-||u_k - u*||^2 / (2 sigma^2)) underflows to 0 and its log "
            "is -inf: compute log pi_k - ||u_k - u*||^2 / (2 sigma^2) and take torch.logsumexp "
            "over k"
        )
        mine = call_student(fn, u, log_pi, target, sigma, hint=stable)
        ref = moefm.moefm_nll(u, log_pi, target, sigma)
        sq = (u - target[:, None]).pow(2).sum(-1).detach()

        def nll(logits: torch.Tensor) -> torch.Tensor:
            return -torch.logsumexp(logits, -1)

        m = target.shape[-1]
        mistakes = [
            (
                "yours includes the Gaussian normaliser (m/2) log(2 pi sigma^2); eq. (5) as the "
                "library computes it leaves it out (it does not change the gradients)",
                ref + 0.5 * m * math.log(2 * math.pi * sigma**2),
            ),
            (
                "you ignored the gate: weight expert k by pi_k (add log_pi inside the logsumexp)",
                nll(-sq / (2 * sigma**2)).mean(),
            ),
            (
                "the exponent is -||u_k - u*||^2 / (2 sigma^2): check the factor 2",
                nll(log_pi - sq / sigma**2).mean(),
            ),
            (
                "divide by sigma squared, not by sigma",
                nll(log_pi - sq / (2 * sigma)).mean(),
            ),
            ("you summed over the batch: average it", nll(log_pi - sq / (2 * sigma**2)).sum()),
        ]
        compare(mine, ref, f"the NLL at sigma = {sigma}", mistakes=mistakes, hint=stable)
        if not isinstance(mine, torch.Tensor) or not mine.requires_grad:
            raise AssertionError("the NLL has no gradient: keep it a tensor (no .item())")
        (g_mine,) = torch.autograd.grad(mine, u)
        (g_ref,) = torch.autograd.grad(ref, u)
        compare(g_mine, g_ref, f"the gradient of your NLL at sigma = {sigma}", hint=stable)
    passed("moefm_nll matches moefm.moefm_nll (value and gradient) at sigma = 0.5, 0.1, 0.01")


def check_nll_gradient(fn: Callable[..., Any]) -> None:
    """``fn(u_experts, log_pi, u_target, sigma) -> (B, K, m)``: the gradient of each sample's NLL
    with respect to its experts, ``gamma_k (u_k - u*) / sigma^2``, checked against autograd."""
    for sigma in (0.5, 0.1):
        u, log_pi, target = _moe_batch()
        u.requires_grad_(True)
        loss = moefm.moefm_nll(u, log_pi, target, sigma) * len(u)  # sum over samples
        (auto,) = torch.autograd.grad(loss, u)
        mine = call_student(fn, u.detach(), log_pi, target, sigma)
        ud = u.detach()
        res = ud - target[:, None]
        gamma = moefm.responsibilities(ud, log_pi, target, sigma).unsqueeze(-1)
        pi = log_pi.exp().unsqueeze(-1)
        mistakes = [
            (
                "(u_k - u*) / sigma^2 alone is the gradient of expert k's own squared error; "
                "in the mixture it is weighted by the responsibility gamma_k",
                res / sigma**2,
            ),
            (
                "you weighted by the gate pi_k; the weight is the posterior gamma_k (eq. 12), "
                "which also depends on u*",
                pi * res / sigma**2,
            ),
            (
                "wrong sign: the loss grows as u_k moves away from u*, so its gradient is "
                "gamma_k (u_k - u*) / sigma^2",
                -gamma * res / sigma**2,
            ),
            ("divide the residual by sigma^2", gamma * res),
        ]
        compare(mine, auto, f"the gradient at sigma = {sigma}", mistakes=mistakes)
    passed("nll_gradient equals autograd of moefm.moefm_nll: gamma_k (u_k - u*) / sigma^2")


def _pairing_cost(z0: torch.Tensor, z1: torch.Tensor) -> float:
    return float((z0 - z1).pow(2).sum())


def check_ot_pair(fn: Callable[..., Any]) -> None:
    """``fn(z0, z1) -> z0 re-ordered``: the minibatch OT pairing of OT-CFM."""
    from scipy.optimize import linear_sum_assignment

    g = seeded(5)
    z1 = toy.grid(48, seed=5)
    z0 = torch.randn(48, 2, generator=g)
    mine = as_tensor_of(call_student(fn, z0, z1), "the re-ordered z0")
    if tuple(mine.shape) != tuple(z0.shape):
        raise AssertionError(f"return z0 re-ordered, shape {tuple(z0.shape)}; got {mine.shape}")
    as_rows = {tuple(r) for r in z0.tolist()}
    if {tuple(r) for r in mine.tolist()} != as_rows:
        raise AssertionError("return the rows of z0 in a new order (a permutation), not new points")
    ref = moefm.train.ot_coupling(z0, z1)
    best, yours = _pairing_cost(ref, z1), _pairing_cost(mine, z1)
    if yours <= best + 1e-4:
        passed(
            f"ot_pair finds the optimal pairing: cost {yours:.2f}, the same as "
            f"moefm.train.ot_coupling, vs {_pairing_cost(z0, z1):.2f} for the random one"
        )
        return
    _, cols = linear_sum_assignment(torch.cdist(z0, z1).pow(2).numpy())
    _, cols_abs = linear_sum_assignment(torch.cdist(z0, z1).numpy())
    inv = torch.empty(len(cols_abs), dtype=torch.long)
    inv[torch.as_tensor(cols_abs)] = torch.arange(len(cols_abs))
    known = [
        ("you returned z0 unchanged: that is the independent (random) pairing", z0),
        (
            "linear_sum_assignment pairs z0[rows[i]] with z1[cols[i]]; to line z0 up with z1 "
            "you need the inverse permutation, perm[cols] = rows",
            z0[torch.as_tensor(cols)],
        ),
        (
            "you minimised the sum of distances; W2 and OT-CFM use squared distances",
            z0[inv],
        ),
    ]
    for message, wrong in known:
        if torch.equal(mine, wrong):
            raise AssertionError(f"the pairing is wrong: {message}")
    raise AssertionError(
        f"your pairing costs {yours:.3f}, the optimal one {best:.3f}: minimise the total "
        "squared distance sum_i ||z0[perm[i]] - z1[i]||^2 with scipy's linear_sum_assignment"
    )


# ---- notebook 04 ----------------------------------------------------------------------------


def check_responsibilities(fn: Callable[..., Any]) -> None:
    """``fn(u_experts, log_pi, u_target, sigma) -> (B, K)``: eq. (12)."""
    for sigma, far in ((1.0, False), (0.3, False), (0.01, True)):
        u, log_pi, target = _moe_batch(far)
        stable = (
            f"at sigma = {sigma} every exp(-||u_k - u*||^2 / (2 sigma^2)) can underflow to 0 and "
            "0 / 0 is NaN: take torch.softmax over k of log pi_k - ||u_k - u*||^2 / (2 sigma^2)"
        )
        mine = call_student(fn, u, log_pi, target, sigma, hint=stable)
        ref = moefm.responsibilities(u, log_pi, target, sigma)
        sq = (u - target[:, None]).pow(2).sum(-1)
        mistakes = [
            (
                "you ignored the gate: gamma_k is proportional to pi_k N(u*; u_k, sigma^2 I)",
                torch.softmax(-sq / (2 * sigma**2), -1),
            ),
            (
                "the responsibilities of one target sum to 1 over the experts: normalise over "
                "k (the last axis), not over the batch",
                torch.softmax(log_pi - sq / (2 * sigma**2), 0),
            ),
            (
                "the exponent is -||u_k - u*||^2 / (2 sigma^2): check the factor 2",
                torch.softmax(log_pi - sq / sigma**2, -1),
            ),
            (
                "divide by sigma squared, not by sigma",
                torch.softmax(log_pi - sq / (2 * sigma), -1),
            ),
        ]
        compare(mine, ref, f"gamma at sigma = {sigma}", mistakes=mistakes, hint=stable)
    passed("responsibilities matches moefm.responsibilities at sigma = 1, 0.3, 0.01")


def check_em_step(fn: Callable[..., Any]) -> None:
    """``fn(points, weights, u, log_pi, sigma) -> (pi, u_new)``: one fixed-point (EM) update of
    Thm 3.2 on a weighted quadrature of ``q(u* | z_t, t)``."""
    gm = toy.grid_mixture()
    z, t, K, sigma = torch.tensor([[0.45, 0.3]], dtype=torch.float64), 0.5, 4, 0.3
    pts, wts = gm.velocity_quadrature(z, t, nodes=4)
    pts, wts = pts[0], wts[0]
    g = seeded(6)
    u = pts[torch.randperm(len(pts), generator=g)[:K]] + 0.1
    for log_pi in (
        torch.full((K,), -math.log(K), dtype=torch.float64),
        torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1),
    ):
        out = call_student(fn, pts, wts, u, log_pi, sigma)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise AssertionError("em_step must return a pair (pi, u_new)")
        gamma = moefm.responsibilities(
            u.expand(len(pts), -1, -1), log_pi.expand(len(pts), -1), pts, sigma
        )
        mass = (wts[:, None] * gamma).sum(0)
        ref_u = (wts[:, None, None] * gamma[..., None] * pts[:, None]).sum(0) / mass[:, None]
        flat = torch.ones_like(wts) / len(wts)
        g_uniform = moefm.responsibilities(
            u.expand(len(pts), -1, -1), torch.zeros(len(pts), K, dtype=torch.float64), pts, sigma
        )
        mf = (flat[:, None] * gamma).sum(0)
        mu = (wts[:, None] * g_uniform).sum(0)
        compare(
            out[0],
            mass,
            "pi",
            mistakes=[
                ("each point carries a quadrature weight w_n: pi_k = sum_n w_n gamma_nk", mf),
                ("the responsibilities use the current routing log_pi", mu),
            ],
        )
        compare(
            out[1],
            ref_u,
            "u_new",
            mistakes=[
                (
                    "u_k = E[gamma_k u*] / E[gamma_k]: divide by the expert's mass pi_k",
                    (wts[:, None, None] * gamma[..., None] * pts[:, None]).sum(0),
                ),
                (
                    "each point carries a quadrature weight w_n",
                    (flat[:, None, None] * gamma[..., None] * pts[:, None]).sum(0) / mf[:, None],
                ),
            ],
        )
    # the library's fixed-point iteration starts from uniform routing: one step must agree
    lib = moefm_optimum(gm, z, t, K, sigma, init=u[None], iters=1, nodes=4)
    pi1, u1 = call_student(
        fn, pts, wts, u, torch.full((K,), -math.log(K), dtype=torch.float64), sigma
    )
    compare(u1, lib.u[0], "u_new vs moefm.theory.moefm_optimum(iters=1)")
    compare(pi1, lib.pi[0], "pi vs moefm.theory.moefm_optimum(iters=1)")
    passed("em_step matches one iteration of moefm.theory.moefm_optimum (Thm 3.2)")


# ---- notebook 05 ----------------------------------------------------------------------------


class _Counting:
    """Wraps a :class:`moefm.MoEField` and counts its trunk evaluations."""

    def __init__(self, model: Any) -> None:
        self.model, self.calls = model, 0
        self.K = model.K

    def features(self, z: torch.Tensor, t: torch.Tensor, cond: Any = None) -> Any:
        self.calls += 1
        return self.model.features(z, t, cond)

    def log_pi(self, feats: Any) -> torch.Tensor:
        return self.model.log_pi(feats)

    def fields(self, feats: Any) -> torch.Tensor:
        return self.model.fields(feats)

    def field(self, feats: Any, idx: torch.Tensor) -> torch.Tensor:
        return self.model.field(feats, idx)


def _routing_model() -> moefm.FlowModel:
    torch.manual_seed(7)
    return moefm.FlowModel.mlp(2, K=4, hidden=32, depth=2).eval()


def check_frozen_euler(fn: Callable[..., Any]) -> None:
    """``fn(model, z0, steps, generator) -> z1``: frozen-routing Euler, as ``moefm.sample``."""
    model = _routing_model()
    z0 = torch.randn(64, 2, generator=seeded(8))
    for T in (1, 4):
        counted = _Counting(model)
        with torch.no_grad():
            mine = call_student(fn, counted, z0, T, seeded(9))
            ref = moefm.sample(model, z0, T, routing="frozen", generator=seeded(9)).z1
            others = {
                r: moefm.sample(model, z0, T, routing=r, generator=seeded(9)).z1
                for r in ("resample", "mean", "argmax")
            }
        mistakes = [
            (
                "your expert changes along the path: that is re-sampled routing; frozen routing "
                "draws e once at t = 0 and keeps it",
                others["resample"],
            ),
            ("you followed the mixture mean sum_k pi_k u_k, not one expert", others["mean"]),
            (
                "you took the most probable expert; frozen routing draws e ~ Cat(pi(z0, 0)) "
                "with sample_experts(log_pi, generator)",
                others["argmax"],
            ),
        ]
        compare(
            mine,
            ref,
            f"z1 after T = {T} steps",
            mistakes=mistakes,
            hint="the grid is t_i = i / T with steps dt = 1 / T; draw the experts with "
            "moefm.sampling.sample_experts(model.log_pi(feats), generator) from the features "
            "at (z0, t = 0), or your draws differ from the library's",
        )
        if counted.calls != T:
            raise AssertionError(
                f"you evaluated the trunk (model.features) {counted.calls} times for T = {T} "
                "steps: the routing at t = 0 reuses the first Euler step's features (T in all)"
            )
    passed("frozen_euler matches moefm.sample(routing='frozen') with T trunk evaluations")


def _chord_reference(traj: torch.Tensor) -> torch.Tensor:
    from labs.marginals import chord_deviation

    return torch.as_tensor(chord_deviation(traj))


def check_chord_deviation(fn: Callable[..., Any]) -> None:
    """``fn(trajectory (T + 1, B, m)) -> scalar``: the mean squared distance of the path from the
    straight constant-speed chord ``(1 - t) z_0 + t z_1``."""
    T = 16
    t = torch.linspace(0, 1, T + 1)[:, None, None]
    a, b = torch.randn(1, 3, 2, generator=seeded(10)), torch.randn(1, 3, 2, generator=seeded(11))
    line = (1 - t) * a + t * b
    mine = as_tensor_of(call_student(fn, line), "the deviation")
    if mine.numel() != 1 or abs(float(mine)) > 1e-8:
        raise AssertionError(
            f"a straight path at constant speed must give 0 (one number), got {mine.tolist()}"
        )
    # a bump z_t = (t, sin(pi t)) from (0, 0) to (1, 0): its deviation is mean_i sin^2(pi t_i)
    tt = t[..., 0].expand(-1, 3)
    bump = torch.stack([tt, torch.sin(math.pi * tt)], -1)
    wiggle = line.clone()
    wiggle[1:-1] += 0.3 * torch.randn(T - 1, 3, 2, generator=seeded(12))
    for traj in (bump, wiggle):
        mine = call_student(fn, traj)
        ref = _chord_reference(traj)
        chord = (1 - t) * traj[0] + t * traj[-1]
        dev = (traj - chord).pow(2).sum(-1)
        v = (traj[1:] - traj[:-1]) * T
        velocity = ((traj[-1] - traj[0]) - v).pow(2).sum(-1).mean()
        mistakes = [
            ("square the distances", (traj - chord).norm(dim=-1).mean()),
            (
                "average over all T + 1 grid times (the endpoints contribute 0)",
                dev[1:-1].mean(),
            ),
            (
                "that is the velocity-based straightness S: measure positions z_t against the "
                "chord, not velocities",
                velocity,
            ),
        ]
        mine = as_tensor_of(mine, "the deviation")
        if mine.numel() != 1:
            raise AssertionError(f"return one number (the mean), got shape {tuple(mine.shape)}")
        compare(mine.reshape(()), ref.reshape(()), "the deviation", mistakes=mistakes)
    exact = torch.sin(math.pi * torch.linspace(0, 1, T + 1)).pow(2).mean()
    compare(
        as_tensor_of(call_student(fn, bump), "the deviation").reshape(()),
        exact,
        "the bump's deviation",
    )
    passed("chord_deviation: 0 for straight lines, labs.marginals.chord_deviation on curves")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "linear_path": check_linear_path,
    "vfm_loss": check_vfm_loss,
    "marginal_field": check_marginal_field,
    "mode_posterior": check_mode_posterior,
    "vfm_optimum": check_vfm_optimum,
    "moefm_nll": check_moefm_nll,
    "nll_gradient": check_nll_gradient,
    "ot_pair": check_ot_pair,
    "responsibilities": check_responsibilities,
    "em_step": check_em_step,
    "frozen_euler": check_frozen_euler,
    "chord_deviation": check_chord_deviation,
}
"""Every exercise by name, with its check (the tests run each against labs.solutions)."""
