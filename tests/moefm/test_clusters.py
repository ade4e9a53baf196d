"""Path-consistent MoE-FM (``moefm.clusters``): the loss, its closed-form optimum, and why
frozen routing on that optimum samples exactly."""

import pytest
import torch

from moefm.clusters import (
    GaussianClusterField,
    cluster_moefm_loss,
    gaussian_cluster_optimum,
    kmeans_labels,
)
from moefm.sampling import sample
from moefm.theory import GaussianMixture

MIX = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), 0.3, torch.tensor([0.25, 0.75]))


def test_loss_is_the_chosen_experts_squared_error_plus_the_gate_cross_entropy():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(5, 3, 2, generator=g)
    log_pi = torch.randn(5, 3, generator=g).log_softmax(-1)
    target = torch.randn(5, 2, generator=g)
    labels = torch.tensor([0, 2, 1, 1, 0])
    by_hand = torch.stack(
        [(u[i, labels[i]] - target[i]).pow(2).sum() - log_pi[i, labels[i]] for i in range(5)]
    ).mean()
    assert torch.allclose(cluster_moefm_loss(u, log_pi, target, labels), by_hand)
    mask = torch.tensor([True, True, False, False, True])
    keep = [0, 1, 4]
    assert torch.allclose(
        cluster_moefm_loss(u, log_pi, target, labels, mask),
        cluster_moefm_loss(u[keep], log_pi[keep], target[keep], labels[keep]),
    )


def test_only_the_labelled_expert_gets_a_gradient():
    u = torch.zeros(4, 3, 2, requires_grad=True)
    log_pi = torch.full((4, 3), -torch.log(torch.tensor(3.0)))
    cluster_moefm_loss(u, log_pi, torch.ones(4, 2), torch.tensor([1, 1, 2, 1])).backward()
    touched = (u.grad.abs().sum(-1) > 0).float()
    assert touched.tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]]


def test_bad_labels_are_refused():
    u, log_pi, target = torch.zeros(2, 3, 2), torch.zeros(2, 3), torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, K=3\)"):
        cluster_moefm_loss(u, log_pi, target, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="long tensor of shape"):
        cluster_moefm_loss(u, log_pi, target, torch.tensor([0.0, 1.0]))


def test_closed_form_optimum_minimises_the_loss():
    """Monte-Carlo loss over pairs of the mixture: the closed form beats perturbed fields
    and a gate that ignores z_t."""
    g = torch.Generator().manual_seed(1)
    n, t = 40_000, 0.6
    comp = torch.multinomial(MIX.weights, n, replacement=True, generator=g)
    x1 = MIX.means[comp] + MIX.stds[comp, None] * torch.randn(
        n, 2, generator=g, dtype=torch.float64
    )
    z0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    zt, target = (1 - t) * z0 + t * x1, x1 - z0
    pi, u = gaussian_cluster_optimum(MIX, zt, t)
    best = cluster_moefm_loss(u, pi.log(), target, comp)
    for shift in (0.1, -0.1):
        assert cluster_moefm_loss(u + shift, pi.log(), target, comp) > best
    flat = MIX.weights.log().expand_as(pi)
    assert cluster_moefm_loss(u, flat, target, comp) > best


def test_mixture_mean_of_the_optimum_is_the_vfm_field():
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for t in (0.0, 0.3, 0.9):
        pi, u = gaussian_cluster_optimum(MIX, z, t)
        assert torch.allclose((pi.unsqueeze(-1) * u).sum(-2), MIX.vfm_optimum(z, t))


def test_frozen_routing_on_the_optimum_converges_to_the_data_as_t_grows():
    """The gate at t = 0 is the mixture weights; the frozen expert's flow carries the noise
    onto its component, so the sample's weights, means and spread approach the data's as the
    number of Euler steps grows (paper MoE-FM with frozen routing does not, see the module)."""
    z0 = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(3))
    field = GaussianClusterField(MIX)
    pi0, _ = gaussian_cluster_optimum(MIX, z0[:5].double(), 0.0)
    assert torch.allclose(pi0, MIX.weights.expand(5, 2), atol=1e-12)
    errors = []
    for steps in (1, 64):
        out = sample(field, z0, steps, routing="frozen", generator=torch.Generator().manual_seed(4))
        k = out.experts
        share = (k == 1).float().mean()
        assert share == pytest.approx(0.75, abs=0.01)
        x = out.z1.double()
        std_err = max(abs(float(x[k == j].std(0).mean()) - 0.3) for j in (0, 1))
        mean_err = max(float((x[k == j].mean(0) - MIX.means[j]).abs().max()) for j in (0, 1))
        errors.append((std_err, mean_err))
    (std1, mean1), (std64, mean64) = errors
    assert std1 > 0.25  # one Euler step lands every point on its component's mean
    assert std64 < 0.02 and mean64 < 0.02


def test_kmeans_labels_find_separated_components_and_check_k():
    x = MIX.sample(2000, torch.Generator().manual_seed(5))
    labels, centres = kmeans_labels(x, 2, seed=0)
    assert labels.shape == (2000,) and centres.shape == (2, 2)
    order = centres[:, 0].argsort()
    assert torch.allclose(centres[order], MIX.means.float(), atol=0.05)
    with pytest.raises(ValueError, match="at least K distinct points"):
        kmeans_labels(torch.zeros(10, 2), 2)


def test_trained_cluster_moefm_learns_the_weights_and_improves_with_steps():
    """Trained end to end: the gate at t = 0 learns the cluster weights (frozen routing draws
    them), and frozen routing gets closer to the data as T grows, not further."""
    from moefm.metrics import wasserstein2
    from moefm.train import TrainConfig, train

    data = MIX.sample(4000, torch.Generator().manual_seed(6))
    test = MIX.sample(1000, torch.Generator().manual_seed(7))
    res = train(data, TrainConfig(method="moefm-cluster", K=2, steps=600, seed=0))
    z0 = torch.randn(1000, 2, generator=torch.Generator().manual_seed(8))
    w2 = {}
    with torch.no_grad():
        for steps in (1, 16):
            out = sample(res.model, z0, steps, generator=torch.Generator().manual_seed(9))
            big = out.experts.bincount(minlength=2).max() / len(z0)
            assert float(big) == pytest.approx(0.75, abs=0.05)
            w2[steps] = wasserstein2(out.z1, test)
    assert w2[16] < w2[1]
    assert w2[16] < 0.2


def test_bench_runs_the_cluster_methods_and_keeps_k_apart_in_a_sweep():
    from moefm import bench

    methods = {tc.method for tc, _ in bench._runs(bench.BenchConfig())}
    assert {"moefm-cluster", "moefm-cluster-ot", "moefm", "vfm", "ot-cfm"} <= methods
    cfg = bench.BenchConfig(
        datasets=("grid",), seeds=1, train_steps=2, n_train=64, n_eval=32, straight_steps=4,
        k_sweep=(2, 3),
    )  # fmt: skip
    assert [(tc.method, tc.K) for tc, _ in bench._runs(cfg)] == [
        ("moefm", 2), ("moefm-cluster", 2), ("moefm", 3), ("moefm-cluster", 3),
    ]  # fmt: skip
    records, _ = bench.evaluate(cfg, progress=False)
    agg = bench.aggregate(records)
    assert {(r["method"], r["K"]) for r in agg} == {
        ("moefm", 2), ("moefm-cluster", 2), ("moefm", 3), ("moefm-cluster", 3),
    }  # fmt: skip
    assert len(agg) == 4 * len(bench.STEPS)
