"""Blocks: padding masks (no leak, no NaN), adaLN-Zero identity at init, cross-attention."""

import pytest
import torch

from yan.blocks import Block, CrossAttention, Padding, SelfAttention, sinusoidal_positions
from yan.config import preset


def right_mask(lengths, width):
    return torch.arange(width) < torch.tensor(lengths).unsqueeze(1)


def test_sinusoidal_positions_closed_form():
    pos = sinusoidal_positions(50, 8)
    assert pos.shape == (50, 8)
    torch.testing.assert_close(pos[0, 0::2], torch.zeros(4))
    torch.testing.assert_close(pos[0, 1::2], torch.ones(4))
    torch.testing.assert_close(pos[:, 0], torch.sin(torch.arange(50.0)))  # fastest frequency is 1


def test_padding_from_mask():
    assert Padding.from_mask(None).attn is None
    assert Padding.from_mask(torch.ones(2, 3, dtype=torch.bool)).mask is None  # nothing padded
    pad = Padding.from_mask(right_mask([3, 0], 3))
    assert pad.attn.shape == (2, 1, 1, 3)
    assert pad.keep.flatten().tolist() == [1.0, 0.0]


def test_self_attention_padding_equals_unpadded_sequence():
    attn = SelfAttention(16, 4).eval()
    x = torch.randn(2, 6, 16)
    mask = right_mask([6, 4], 6)
    out = attn(x, Padding.from_mask(mask))
    alone = attn(x[1:, :4], Padding.from_mask(None))
    torch.testing.assert_close(out[1, :4], alone[0])


def test_conv_mixer_is_local_depthwise_and_ignores_padding():
    """``conv_kernel = 3``: with attention silenced, token l only sees tokens l-1..l+1, each
    channel only itself; padding changes nothing and a padded row equals the unpadded one."""
    attn = SelfAttention(16, 4, conv_kernel=3).eval()
    torch.nn.init.zeros_(attn.out.weight)
    torch.nn.init.zeros_(attn.out.bias)
    x = torch.randn(1, 6, 16)
    x2 = x.clone()
    x2[0, 0, 5] += 1.0
    delta = attn(x2, Padding.from_mask(None)) - attn(x, Padding.from_mask(None))
    changed = delta.abs() > 0
    assert changed[0, :2, 5].all() and not changed[0, 2:].any()
    assert not changed[0, :, [c for c in range(16) if c != 5]].any()
    attn = SelfAttention(16, 4, conv_kernel=3).eval()
    mask = right_mask([6, 4], 6)
    noisy = x.expand(2, 6, 16).clone()
    noisy[1, 4:] = 1e3
    out = attn(noisy, Padding.from_mask(mask))
    torch.testing.assert_close(out[1, :4], attn(x[:, :4], Padding.from_mask(None))[0])


def test_fully_masked_row_gives_zeros_not_nan():
    attn = SelfAttention(16, 4)
    out = attn(torch.randn(2, 5, 16), Padding.from_mask(right_mask([5, 0], 5)))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], attn.out.bias.expand(5, 16))  # zero attention -> bias


@pytest.mark.parametrize("arch", ["transformer", "mamba"])
@pytest.mark.parametrize("time_cond", [False, True])
def test_block_padding_never_leaks(arch, time_cond):
    cfg = preset("tiny", arch=arch)
    block = Block(cfg, time_cond=time_cond, cross_attn=True).eval()
    if time_cond:  # leave adaLN-Zero so every branch is active
        torch.nn.init.normal_(block.ada[1].weight, std=0.1)
    cross = block.cross
    mask, src_mask = right_mask([7, 3], 7), right_mask([5, 2], 5)
    x, mem, c = (
        torch.randn(2, 7, cfg.d_model),
        torch.randn(2, 5, cfg.latent_dim),
        torch.randn(2, 32),
    )
    pad = Padding.from_mask(mask)

    def run(x, mem):
        memory = cross.memory(mem, Padding.from_mask(src_mask))
        return block(x, pad, c if time_cond else None, memory)

    out = run(x, mem)
    x2, mem2 = x.clone(), mem.clone()
    x2[~mask] = 1e3 * torch.randn(int((~mask).sum()), cfg.d_model)
    mem2[~src_mask] = 1e3 * torch.randn(int((~src_mask).sum()), cfg.latent_dim)
    out2 = run(x2, mem2)
    torch.testing.assert_close(out[mask], out2[mask])


@pytest.mark.parametrize("arch", ["transformer", "mamba"])
def test_adaln_zero_block_starts_as_identity(arch):
    block = Block(preset("tiny", arch=arch), time_cond=True)
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(block(x, Padding.from_mask(None), torch.randn(2, 32)), x)


def test_time_conditioning_changes_the_output():
    block = Block(preset("tiny"), time_cond=True)
    torch.nn.init.normal_(block.ada[1].weight, std=0.1)
    x, pad = torch.randn(1, 5, 32), Padding.from_mask(None)
    assert not torch.allclose(block(x, pad, torch.zeros(1, 32)), block(x, pad, torch.ones(1, 32)))


def test_missing_time_or_memory_is_a_clear_error():
    block = Block(preset("tiny"), time_cond=True, cross_attn=True)
    with pytest.raises(ValueError, match="time embedding"):
        block(torch.randn(1, 3, 32), Padding.from_mask(None))
    with pytest.raises(ValueError, match="memory"):
        block(torch.randn(1, 3, 32), Padding.from_mask(None), torch.randn(1, 32))


def test_cross_attention_without_source_contributes_nothing():
    cross = CrossAttention(16, 8, 4)
    x = torch.randn(2, 3, 16)
    empty = cross.memory(torch.randn(2, 0, 8), Padding.from_mask(None))
    torch.testing.assert_close(cross(x, empty), torch.zeros(2, 3, 16))
    masked = cross.memory(torch.randn(2, 4, 8), Padding.from_mask(right_mask([4, 0], 4)))
    out = cross(x, masked)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], cross.out.bias.expand(3, 16))  # zero attention -> bias
