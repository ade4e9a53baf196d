"""Path-consistent experts in YAN (``expert_assignment = "cluster"``): k-means centres of the
target latents, the known-assignment NLL, the CE unrolled along the pair's own expert, loading
checkpoints without centres, and the trainer fitting them at the start of stage 2."""

import math

import pytest
import torch
from safetensors.torch import load_file

from moefm.sampling import sample
from yan import train as yan_train
from yan.autoencoder import Decoder
from yan.config import PAPER_LITERAL, YANConfig, preset
from yan.flow import LatentFlow, latent_flow_loss
from yan.model import YAN


def clustered(**overrides):
    torch.manual_seed(0)
    cfg = preset("tiny", expert_assignment="cluster", **overrides)
    return cfg, LatentFlow(cfg)


def blobs(cfg, per=40):
    """K well separated groups of latents; the k-means partition is known."""
    centres = 6.0 * torch.eye(cfg.K, cfg.latent_dim)
    points = centres.repeat_interleave(per, 0) + 0.1 * torch.randn(cfg.K * per, cfg.latent_dim)
    return points, torch.arange(cfg.K).repeat_interleave(per)


def test_the_paper_assigns_by_responsibility_and_bad_values_are_refused():
    assert YANConfig().expert_assignment == "responsibility"
    assert PAPER_LITERAL["expert_assignment"] == "responsibility"
    assert YANConfig.from_dict({"K": 3}).expert_assignment == "responsibility"  # old configs
    with pytest.raises(ValueError, match="expert_assignment must be one of"):
        preset("tiny", expert_assignment="gate")


def test_a_clustered_flow_starts_without_centres_and_refuses_to_assign():
    cfg, flow = clustered()
    assert flow.needs_centres and flow.centres.shape == (cfg.K, cfg.latent_dim)
    with pytest.raises(ValueError, match="no centres yet: fit them"):
        flow.cluster_of(torch.randn(2, 3, cfg.latent_dim))
    plain = LatentFlow(preset("tiny"))
    assert plain.centres is None and not plain.needs_centres
    with pytest.raises(ValueError, match='needs expert_assignment = "cluster"'):
        plain.fit_centres(torch.randn(10, cfg.latent_dim))


def test_fitted_centres_recover_the_groups_and_assign_the_nearest():
    cfg, flow = clustered(K=3)
    points, groups = blobs(cfg)
    flow.fit_centres(points)
    assert not flow.needs_centres
    labels = flow.cluster_of(points)
    # one cluster per group, whatever the numbering
    assert all(len(set(labels[groups == g].tolist())) == 1 for g in range(cfg.K))
    assert len(set(labels.tolist())) == cfg.K
    z = torch.randn(2, 5, cfg.latent_dim)
    brute = torch.cdist(z.reshape(-1, cfg.latent_dim), flow.centres).argmin(-1).view(2, 5)
    assert torch.equal(flow.cluster_of(z), brute)
    with pytest.raises(ValueError, match="NaN or inf"):
        flow.fit_centres(torch.full((10, cfg.latent_dim), float("nan")))
    with pytest.raises(ValueError, match="latents must have shape"):
        flow.fit_centres(torch.randn(10, cfg.latent_dim + 1))


def test_the_nll_is_eq5_with_the_cluster_known_and_teaches_only_that_expert():
    cfg, flow = clustered(K=3, alpha_ce=0.0, alpha_length=0.0, flow_start="noise")
    points, _ = blobs(cfg)
    flow.fit_centres(points)
    z1 = points[[0, 45, 90, 5, 50, 95]].view(2, 3, cfg.latent_dim)  # clusters of groups 0, 1, 2
    labels = flow.cluster_of(z1)
    z_src, tgt_mask = torch.randn(2, 4, cfg.latent_dim), torch.ones(2, 3, dtype=torch.bool)
    tgt = torch.zeros(2, 3, dtype=torch.long)
    cond = flow.condition(z_src, None, tgt_mask)
    dec = Decoder(cfg).requires_grad_(False)
    out = latent_flow_loss(
        flow, dec, z1, cond, tgt, tgt_mask, cfg, generator=torch.Generator().manual_seed(1)
    )
    g = torch.Generator().manual_seed(1)  # t, then z0: the draws of latent_flow_loss
    t = torch.rand(2, generator=g)
    z0 = torch.randn(z1.shape, generator=g)
    z_t = t.view(-1, 1, 1) * z1 + (1 - t.view(-1, 1, 1)) * z0
    feats = flow.features(z_t, t, cond)
    u_c = flow.fields(feats).gather(2, labels[..., None, None].expand(2, 3, 1, cfg.latent_dim))
    log_pi_c = flow.log_pi(feats).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    sq = (u_c.squeeze(2) - (z1 - z0)).pow(2).sum(-1)
    sigma2 = cfg.sigma**2 * cfg.latent_dim  # nll_reduction "dim": sigma per dimension
    torch.testing.assert_close(out.moefm, (sq / (2 * sigma2) - log_pi_c).mean())
    out.loss.backward()
    used = set(labels.flatten().tolist())
    for k in range(cfg.K):
        grad = flow.head.weight.grad[k]
        assert (grad.abs().sum() > 0) == (k in used)


def test_the_ce_is_unrolled_along_each_pairs_own_expert(monkeypatch):
    cfg, flow = clustered(K=3, alpha_moefm=0.0, alpha_length=0.0)
    flow.fit_centres(blobs(cfg)[0])
    seen = {}

    def spy(*args, **kwargs):
        seen["experts"] = kwargs.get("experts")
        return sample(*args, **kwargs)

    monkeypatch.setattr("yan.flow.sample", spy)
    z1 = blobs(cfg)[0][[0, 45, 90]].view(1, 3, cfg.latent_dim)
    mask = torch.ones(1, 3, dtype=torch.bool)
    cond = flow.condition(torch.randn(1, 3, cfg.latent_dim), None, mask)
    tgt = torch.zeros(1, 3, dtype=torch.long)
    latent_flow_loss(flow, Decoder(cfg), z1, cond, tgt, mask, cfg)
    assert torch.equal(seen["experts"], flow.cluster_of(z1))


def test_sample_with_given_experts_is_frozen_routing_along_them():
    cfg, flow = clustered(K=3)
    mask = torch.ones(2, 4, dtype=torch.bool)
    cond = flow.condition(torch.randn(2, 4, cfg.latent_dim), None, mask)
    z0 = torch.randn(2, 4, cfg.latent_dim)
    for k in range(cfg.K):
        given = torch.full((2, 4), k, dtype=torch.long)
        out = sample(flow, z0, 3, cond=cond, experts=given)
        assert torch.equal(out.experts, given)
        z = z0
        for i in range(3):  # Euler along expert k alone
            t = torch.full((2,), i / 3)
            z = z + flow.field(flow.features(z, t, cond), given) / 3
        torch.testing.assert_close(out.z1, z)
    with pytest.raises(ValueError, match="frozen routing only"):
        sample(flow, z0, 3, cond=cond, routing="argmax", experts=given)
    with pytest.raises(ValueError, match="experts must be a long tensor of shape"):
        sample(flow, z0, 3, cond=cond, experts=given[:, :2])


def test_checkpoints_with_and_without_centres_load_both_ways(tmp_path):
    torch.manual_seed(0)
    plain = YAN(preset("tiny"))
    model = YAN(preset("tiny", expert_assignment="cluster"))
    model.load_state_dict(plain.state_dict())  # a stage-1 model: centres stay to be fitted
    assert model.flow.needs_centres
    model.flow.fit_centres(blobs(model.config)[0])
    plain.load_state_dict(model.state_dict())  # centres a responsibility flow does not use
    model.save_pretrained(tmp_path / "m")
    again = YAN.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(again.flow.centres, model.flow.centres)


def test_fit_expert_clusters_uses_the_real_target_tokens_only():
    torch.manual_seed(0)
    model = YAN(preset("tiny", expert_assignment="cluster", K=2))
    tgt = torch.randint(0, model.config.vocab_size - 2, (3, 6))
    mask = torch.arange(6) < torch.tensor([[6], [4], [2]])
    from yan.batch import Seq2SeqBatch

    batch = Seq2SeqBatch(tgt, mask, tgt, mask)
    centres = model.fit_expert_clusters([batch], max_tokens=100)
    z = model.encode(tgt, mask)[mask]
    # every real token latent is nearer its own centre than the other (k-means' fixed point)
    labels = model.flow.cluster_of(z)
    for k in range(2):
        torch.testing.assert_close(centres[k], z[labels == k].mean(0), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="max_tokens must be >= K"):
        model.fit_expert_clusters([batch], max_tokens=1)


def test_stage2_fits_the_centres_once_and_resumes_with_them(tmp_path, line_corpus, monkeypatch):
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path / "cache"))
    fast = ["--batch-size", "4", "--warmup", "2", "--no-progress", "--eval-every", "0"]
    common = ["--preset", "tiny", "--data", str(line_corpus), *fast]
    yan_train.main([*common, "--stage", "1", "--max-steps", "3", "--out", str(tmp_path / "s1")])
    s2 = [*common, "--stage", "2", "--init", str(tmp_path / "s1"), "--out", str(tmp_path / "s2")]
    s2 += ["--set", "expert_assignment=cluster", "--save-every", "2"]
    fits, trained = [], []
    fit, forward = YAN.fit_expert_clusters, yan_train.StageObjective.forward

    def spy_fit(self, batches, *args, **kwargs):
        batches = list(batches)
        fits.append(batches[0].tgt.clone())
        return fit(self, batches, *args, **kwargs)

    def spy_forward(self, batch, *args, **kwargs):
        trained.append(batch.tgt.clone())
        return forward(self, batch, *args, **kwargs)

    monkeypatch.setattr(YAN, "fit_expert_clusters", spy_fit)
    monkeypatch.setattr(yan_train.StageObjective, "forward", spy_forward)
    result = yan_train.main([*s2, "--max-steps", "2"])
    assert math.isfinite(result.train["loss"]) and len(fits) == 1
    assert torch.equal(fits[0], trained[0])  # the data position was rewound after the fit
    saved = load_file(str(tmp_path / "s2" / "model.safetensors"))["flow.centres"]
    assert torch.isfinite(saved).all()
    yan_train.main([*s2, "--max-steps", "4", "--resume"])
    assert len(fits) == 1  # the resumed run keeps the checkpoint's centres
    again = load_file(str(tmp_path / "s2" / "model.safetensors"))["flow.centres"]
    torch.testing.assert_close(again, saved)
