"""Autoencoder: padding isolation, per-token decoding (eq. 7), the stage-1 loss (eq. 8-10)."""

import pytest
import torch

from moefm.losses import PAPER_BANDWIDTHS, mmd2
from yan.autoencoder import (
    Decoder,
    Encoder,
    mask_inputs,
    masked_weight,
    mmd_bandwidths,
    regularized_ae_loss,
    weighted_ce,
)
from yan.config import preset


def right_mask(lengths, width):
    return torch.arange(width) < torch.tensor(lengths).unsqueeze(1)


@pytest.mark.parametrize("arch", ["transformer", "mamba"])
def test_encoder_shapes_and_padding_isolation(arch):
    cfg = preset("tiny", arch=arch, latent_dim=24)
    enc = Encoder(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (3, 9))
    mask = right_mask([9, 6, 2], 9)
    z = enc(ids, mask)
    assert z.shape == (3, 9, 24)
    ids2 = ids.clone()
    ids2[~mask] = torch.randint(0, cfg.vocab_size, (int((~mask).sum()),))
    ids2[0, -1] = ids2[0, -1]  # row 0 has no padding
    torch.testing.assert_close(enc(ids2, mask)[mask], z[mask])
    ids3 = ids.masked_fill(~mask, -7)  # any value may sit in the padding
    torch.testing.assert_close(enc(ids3, mask)[mask], z[mask])
    # a padded row equals the same row encoded alone without padding
    torch.testing.assert_close(z[2, :2], enc(ids[2:, :2])[0], atol=1e-5, rtol=1e-4)


def test_decoder_is_per_token():
    cfg = preset("tiny")
    dec = Decoder(cfg)
    z = torch.randn(2, 5, cfg.latent_dim)
    logits = dec(z)
    assert logits.shape == (2, 5, cfg.vocab_size)
    z2 = z.clone()
    z2[0, 3] += 1.0
    changed = (dec(z2) - logits).abs().amax(-1) > 0
    assert changed.nonzero().tolist() == [[0, 3]]  # eq. (7): y_l depends on z_l only


def test_decode_chunks_equal_argmax_and_sampling_is_seeded():
    dec = Decoder(preset("tiny"))
    z = torch.randn(50, 32)
    torch.testing.assert_close(dec.decode(z, chunk_tokens=7), dec(z).argmax(-1))
    draw = lambda seed: dec.decode(  # noqa: E731
        z, temperature=1.0, generator=torch.Generator().manual_seed(seed)
    )
    torch.testing.assert_close(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))
    sharp = dec.decode(z, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sharp, dec(z).argmax(-1))  # T -> 0 is greedy


def test_stage1_loss_terms():
    cfg = preset("tiny", lambda_ce=0.5, lambda_mmd=2.0, lambda_scale=0.3, mmd_max_tokens=1000)
    enc, dec = Encoder(cfg), Decoder(cfg)
    ids = torch.randint(0, cfg.vocab_size, (3, 8))
    mask = right_mask([8, 5, 3], 8)
    out = regularized_ae_loss(enc, dec, ids, mask, cfg, noise=False)
    z = enc(ids, mask)[mask]
    torch.testing.assert_close(out.scale, z.pow(2).sum(-1).mean() / cfg.latent_dim)
    logits = dec(enc(ids, mask))[mask]
    torch.testing.assert_close(out.ce, torch.nn.functional.cross_entropy(logits, ids[mask]))
    torch.testing.assert_close(out.loss, 0.5 * out.ce + 2.0 * out.mmd + 0.3 * out.scale)
    # the MMD term is the unbiased estimator against a Gaussian sample of the same size
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    seeded = regularized_ae_loss(enc, dec, ids, mask, cfg, noise=False, generator=g1)
    torch.randn(z.shape, generator=g2)  # nothing else is drawn before the reference sample
    g2 = torch.Generator().manual_seed(5)
    widths = mmd_bandwidths(cfg)
    torch.testing.assert_close(seeded.mmd, mmd2(z, torch.randn(z.shape, generator=g2), widths))


def test_stage1_noise_and_subsampling_are_seeded():
    cfg = preset("tiny", mmd_max_tokens=4, latent_noise_std=0.5)
    enc, dec = Encoder(cfg), Decoder(cfg)
    ids, mask = torch.randint(0, 64, (2, 10)), right_mask([10, 7], 10)
    a = regularized_ae_loss(enc, dec, ids, mask, cfg, generator=torch.Generator().manual_seed(1))
    b = regularized_ae_loss(enc, dec, ids, mask, cfg, generator=torch.Generator().manual_seed(1))
    c = regularized_ae_loss(enc, dec, ids, mask, cfg, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a.loss, b.loss)
    assert not torch.allclose(a.ce, c.ce)  # different latent noise
    clean = regularized_ae_loss(enc, dec, ids, mask, cfg, noise=False)
    assert not torch.allclose(clean.ce, a.ce)


def test_stage1_loss_decreases_when_overfitting():
    cfg = preset("tiny")
    enc, dec = Encoder(cfg), Decoder(cfg)
    ids, mask = torch.randint(0, 64, (4, 12)), right_mask([12, 10, 7, 4], 12)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    first = None
    for _ in range(40):
        out = regularized_ae_loss(enc, dec, ids, mask, cfg, generator=gen)
        first = first if first is not None else out.ce.item()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.ce.item() < 0.5 * first
    assert out.accuracy.item() > 0.5


def test_greedy_decode_equals_argmax_of_full_logits_across_vocab_slices():
    torch.manual_seed(0)
    dec = Decoder(preset("tiny", vocab_size=1000)).eval()
    z = torch.randn(37, dec.lm_head.in_features)
    with torch.no_grad():
        expected = dec(z).argmax(-1)
        for vocab_slice in (7, 64, 1000, 4096):
            assert torch.equal(dec.decode(z, vocab_slice=vocab_slice), expected)
        # ties go to the lowest id, like argmax: duplicate an output row across slices
        dec.lm_head.weight[900] = dec.lm_head.weight[expected[0]]
        assert dec.decode(z[:1], vocab_slice=64).item() == expected[0].item()


def test_mmd_bandwidths_scale_with_the_latent_size():
    cfg = preset("tiny", latent_dim=64)
    assert mmd_bandwidths(cfg) == pytest.approx(tuple(8.0 * s for s in PAPER_BANDWIDTHS))
    assert mmd_bandwidths(cfg.replace(mmd_scale_bandwidths=False)) == PAPER_BANDWIDTHS
    # why: N(0, I) pairs in m = 256 dims are ~sqrt(2 m) apart, so the paper's kernels vanish
    # for every pair of distinct points and MMD^2 between two Gaussian samples is noise only
    x, y = torch.randn(200, 256), torch.randn(200, 256) * 1.5
    far = mmd2(x, y, PAPER_BANDWIDTHS)
    scaled = mmd2(x, y, tuple(16.0 * s for s in PAPER_BANDWIDTHS))
    assert abs(far) < 1e-3 < scaled


def test_mask_inputs_rates_padding_and_seeding():
    ids = torch.randint(0, 50, (400, 32))
    mask = right_mask([32] * 200 + [10] * 200, 32)
    g = torch.Generator().manual_seed(0)
    out = mask_inputs(ids, mask, 0.5, 63, g)
    hit = out == 63
    assert not hit[~mask].any(), "padding is never masked"
    assert torch.equal(out[~hit], ids[~hit]), "unmasked tokens are unchanged"
    rate = hit[:200].float().mean()
    assert 0.2 < rate < 0.3, "per-row rates ~ U(0, 0.5): a quarter of the tokens on average"
    again = mask_inputs(ids, mask, 0.5, 63, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_stage1_masking_reads_masks_but_reconstructs_clean_text():
    # equal CE weights here; masked_ce_weight has its own test below
    cfg = preset("tiny", stage1_mask_rate=0.9, latent_noise_std=0.0, masked_ce_weight=1.0)
    enc, dec = Encoder(cfg), Decoder(cfg)
    ids = torch.randint(0, cfg.vocab_size - 2, (4, 12))
    mask = right_mask([12, 12, 7, 3], 12)
    g = torch.Generator().manual_seed(3)
    out = regularized_ae_loss(enc, dec, ids, mask, cfg, generator=g)
    g = torch.Generator().manual_seed(3)
    corrupted = mask_inputs(ids, mask, 0.9, cfg.mask_id, g, cfg.stage1_mask_span)
    assert (corrupted == cfg.mask_id).any()
    logits = dec(enc(corrupted, mask))[mask]
    torch.testing.assert_close(out.ce, torch.nn.functional.cross_entropy(logits, ids[mask]))
    # evaluation (noise=False) and the paper-literal rate 0 read the clean text
    clean = regularized_ae_loss(enc, dec, ids, mask, cfg, noise=False)
    logits = dec(enc(ids, mask))[mask]
    torch.testing.assert_close(clean.ce, torch.nn.functional.cross_entropy(logits, ids[mask]))


def test_mask_inputs_spans_mask_runs_at_about_the_same_rate():
    ids = torch.randint(0, 50, (2000, 40))
    mask = torch.ones_like(ids, dtype=torch.bool)
    single = mask_inputs(ids, mask, 0.4, 63, torch.Generator().manual_seed(0)) == 63
    spans = mask_inputs(ids, mask, 0.4, 63, torch.Generator().manual_seed(0), max_span=3) == 63
    # U(0, 0.4) per row: 20% of the tokens on average; spans land a little lower (overlaps)
    assert 0.18 < single.float().mean() < 0.22
    assert 0.15 < spans.float().mean() < 0.22

    # a masked token's right neighbour is masked far more often with spans (runs of 1-3)
    def both(hit):
        return (hit[:, :-1] & hit[:, 1:]).float().sum() / hit[:, :-1].float().sum()

    assert both(spans) > 2 * both(single)
    with pytest.raises(ValueError, match="max_span"):
        mask_inputs(ids, mask, 0.4, 63, max_span=0)


def test_masked_ce_weight_reweights_the_masked_positions():
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    mask = right_mask([5, 3], 5)
    hidden = torch.zeros(2, 5, dtype=torch.bool)
    hidden[0, 1] = hidden[1, 2] = True
    ce = torch.nn.functional.cross_entropy(logits[mask], ids[mask], reduction="none")
    plain = weighted_ce(logits, ids, mask, masked_weight(hidden, 1.0))
    torch.testing.assert_close(plain, ce.mean())
    w = 1.0 + 3.0 * hidden[mask].float()
    torch.testing.assert_close(
        weighted_ce(logits, ids, mask, masked_weight(hidden, 4.0)), (ce * w).sum() / w.sum()
    )
    assert masked_weight(hidden, 1.0) is None
    empty = weighted_ce(logits, ids, torch.zeros_like(mask), None)
    assert empty.item() == 0.0 and empty.requires_grad is logits.requires_grad


def test_stage1_masked_ce_weight_changes_only_the_weighting():
    cfg = preset("tiny", stage1_mask_rate=0.6, stage1_mask_span=3, latent_noise_std=0.0)
    enc, dec = Encoder(cfg), Decoder(cfg)
    ids = torch.randint(0, cfg.vocab_size - 2, (4, 12))
    mask = right_mask([12, 12, 7, 3], 12)
    out = {}
    for w in (1.0, 5.0):
        g = torch.Generator().manual_seed(3)
        out[w] = regularized_ae_loss(
            enc, dec, ids, mask, cfg.replace(masked_ce_weight=w), generator=g
        )
    g = torch.Generator().manual_seed(3)
    corrupted = mask_inputs(ids, mask, 0.6, cfg.mask_id, g, 3)
    hidden = corrupted == cfg.mask_id
    ce = torch.nn.functional.cross_entropy(
        dec(enc(corrupted, mask))[mask], ids[mask], reduction="none"
    )
    w = 1.0 + 4.0 * hidden[mask].float()
    torch.testing.assert_close(out[5.0].ce, (ce * w).sum() / w.sum())
    torch.testing.assert_close(out[1.0].ce, ce.mean())
