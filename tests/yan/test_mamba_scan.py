"""The chunked selective scan against the sequential loop: outputs and gradients in float32 for
lengths around the chunk size, stability where the closed form would overflow, bad input."""

import pytest
import torch

from yan import mamba_scan
from yan.mamba_scan import MIN_CHUNKED_LENGTH, auto_chunk_size, default_chunk_size, selective_scan


def scan_inputs(length, b=2, d=6, n=4, seed=0, delta_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(b, length, d, generator=g),
        delta=torch.randn(b, length, d, generator=g) * delta_scale,
        A=-torch.rand(d, n, generator=g) * 2 - 0.1,
        B=torch.randn(b, length, n, generator=g),
        C=torch.randn(b, length, n, generator=g),
        D=torch.randn(d, generator=g),
        z=torch.randn(b, length, d, generator=g),
        delta_bias=torch.randn(d, generator=g) * 0.1,
    )


@pytest.mark.parametrize(
    ("length", "chunk"),
    [(1, None), (15, None), (16, None), (37, None), (64, None), (100, None), (37, 5), (40, 8)],
    # (b, d, n) = (2, 6, 4): a small state, so None is chunked on CPU too
)
def test_chunked_scan_equals_the_sequential_loop_with_gradients(length, chunk):
    x = {k: v.requires_grad_() for k, v in scan_inputs(length).items()}
    chunked = selective_scan(**x, delta_softplus=True, chunk_size=chunk)
    w = torch.randn_like(chunked)
    g_chunked = torch.autograd.grad((chunked * w).sum(), list(x.values()))
    sequential = selective_scan(**x, delta_softplus=True, chunk_size=length)
    g_sequential = torch.autograd.grad((sequential * w).sum(), list(x.values()))
    torch.testing.assert_close(chunked, sequential, atol=1e-5, rtol=1e-5)
    for name, a, r in zip(x, g_chunked, g_sequential):
        torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-4, msg=f"gradient of {name}")


def test_chunked_scan_is_really_chunked():
    """The default chunk size makes several chunks, and a non-multiple length pads the last."""
    assert default_chunk_size(8) == 8  # short: one chunk, the sequential loop
    size = default_chunk_size(1000)
    assert MIN_CHUNKED_LENGTH <= 1000 // size and 1000 % size  # 44 chunks of 23, the last short


def test_auto_chunk_size_chunks_small_states_and_cuda_only():
    small = torch.zeros(2, 100, 6)
    assert auto_chunk_size(small, 4) == default_chunk_size(100) < 100
    big = torch.zeros(4, 100, 512)  # the small preset's d_inner and d_state: memory-bound rounds
    assert 4 * 512 * 16 > mamba_scan.CPU_CHUNKED_MAX_STATE
    assert auto_chunk_size(big, 16) == 100


def test_chunked_scan_stays_finite_with_large_step_sizes():
    """Step sizes of ~20 on |A| ~ 2 decay by e^-40 per step: a chunk's closed form would need
    exp(+40 x steps); the carried state decays instead and stays exactly representable."""
    x = scan_inputs(64, delta_scale=0.0)
    x["delta_bias"] = torch.full_like(x["delta_bias"], 20.0)
    out = selective_scan(**x, delta_softplus=True, chunk_size=8)
    ref = selective_scan(**x, delta_softplus=True, chunk_size=64)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref)


def test_bf16_inputs_are_scanned_in_float32_and_returned_in_bf16():
    x = {k: v.bfloat16() for k, v in scan_inputs(33).items()}
    out = selective_scan(**x, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    ref = selective_scan(**{k: v.float() for k, v in x.items()}, delta_softplus=True)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


def test_empty_sequence_and_bad_chunk_size():
    x = scan_inputs(0)
    assert selective_scan(**x, delta_softplus=True).shape == (2, 0, 6)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        selective_scan(**scan_inputs(4), chunk_size=0)
