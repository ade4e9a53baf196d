"""Mamba: the pure PyTorch scan against a naive reference, mamba_ssm-compatible parameters,
causality, and the bidirectional mixer's padding isolation."""

import pytest
import torch
import torch.nn.functional as F

from yan import mamba as mamba_mod
from yan.mamba import BiMamba, Mamba, reverse_within_lengths, selective_scan


def naive_scan(u, delta, A, B, C, D, z, delta_bias):
    """Textbook S6 recurrence, one (batch, channel, time) at a time in float64."""
    u, delta, A, B, C, D, z, delta_bias = (
        x.double() for x in (u, delta, A, B, C, D, z, delta_bias)
    )
    b, length, d = u.shape
    y = torch.zeros(b, length, d, dtype=torch.float64)
    for i in range(b):
        for c in range(d):
            h = torch.zeros(A.shape[1], dtype=torch.float64)
            for t in range(length):
                dt = F.softplus(delta[i, t, c] + delta_bias[c])
                h = torch.exp(dt * A[c]) * h + dt * B[i, t] * u[i, t, c]
                out = (h * C[i, t]).sum() + D[c] * u[i, t, c]
                y[i, t, c] = out * z[i, t, c] * torch.sigmoid(z[i, t, c])  # silu gate
    return y


def scan_inputs(b=2, length=9, d=5, n=3):
    g = torch.Generator().manual_seed(1)
    return dict(
        u=torch.randn(b, length, d, generator=g),
        delta=torch.randn(b, length, d, generator=g),
        A=-torch.rand(d, n, generator=g) * 2,
        B=torch.randn(b, length, n, generator=g),
        C=torch.randn(b, length, n, generator=g),
        D=torch.randn(d, generator=g),
        z=torch.randn(b, length, d, generator=g),
        delta_bias=torch.randn(d, generator=g),
    )


def test_selective_scan_equals_naive_reference():
    x = scan_inputs()
    ours = selective_scan(**x, delta_softplus=True)
    ref = naive_scan(**x)
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)


def test_selective_scan_gradients_match_reference():
    x = {k: v.double().requires_grad_() for k, v in scan_inputs(b=1, length=5, d=3, n=2).items()}
    ours = selective_scan(**x, delta_softplus=True)
    ref = naive_scan(**x)
    w = torch.randn_like(ref)
    g_ours = torch.autograd.grad((ours * w).sum(), list(x.values()))
    g_ref = torch.autograd.grad((ref * w).sum(), list(x.values()))
    for a, r in zip(g_ours, g_ref):
        torch.testing.assert_close(a, r)


def test_parameters_match_mamba_ssm():
    m = Mamba(40, d_state=16, d_conv=4, expand=2)  # d_inner 80, dt_rank ceil(40/16) = 3
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (160, 40),
        "conv1d.weight": (80, 1, 4),
        "conv1d.bias": (80,),
        "x_proj.weight": (3 + 32, 80),
        "dt_proj.weight": (80, 3),
        "dt_proj.bias": (80,),
        "A_log": (80, 16),
        "D": (80,),
        "out_proj.weight": (40, 80),
    }
    torch.testing.assert_close(m.A_log[0].exp(), torch.arange(1.0, 17.0))
    dt = F.softplus(m.dt_proj.bias)
    assert 1e-3 * 0.99 <= dt.min() and dt.max() <= 0.1 * 1.01  # mamba_ssm's dt range


def test_agrees_with_transformers_mamba_mixer():
    """transformers' MambaMixer is an independent implementation with mamba_ssm's names."""
    modeling = pytest.importorskip("transformers.models.mamba.modeling_mamba")
    from transformers import MambaConfig

    ours = Mamba(24, d_state=6, d_conv=3, expand=2).eval()
    cfg = MambaConfig(
        hidden_size=24,
        state_size=6,
        conv_kernel=3,
        expand=2,
        time_step_rank=ours.dt_rank,
        use_bias=False,
        use_conv_bias=True,
        hidden_act="silu",
        num_hidden_layers=1,
    )
    ref = modeling.MambaMixer(cfg, 0).eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 11, 24)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-4)


def fake_scan_kernel(u, delta, A, B, C, D, z=None, delta_bias=None, delta_softplus=False):
    """mamba_ssm's selective_scan_fn semantics, (b, channels, L) layout, in pure PyTorch."""
    out = selective_scan(
        u.transpose(1, 2),
        delta.transpose(1, 2),
        A,
        B.transpose(1, 2),
        C.transpose(1, 2),
        D,
        z.transpose(1, 2),
        delta_bias,
        delta_softplus,
    )
    return out.transpose(1, 2)


def fake_conv_kernel(calls):
    """causal_conv1d_fn semantics (x (b, d, L), weight (d, w)), recording what it was given."""

    def kernel(x, weight, bias=None, activation=None):
        calls.append(dict(x=x.shape, weight=weight, bias=bias, activation=activation))
        assert x.dim() == 3 and weight.dim() == 2 and x.shape[1] == weight.shape[0]
        width = weight.shape[1]
        out = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=x.shape[1])
        out = out[..., : x.shape[-1]]
        return F.silu(out) if activation in ("silu", "swish") else out

    return kernel


def use_kernels(monkeypatch, kernels):
    monkeypatch.setattr(mamba_mod, "kernels_for", lambda x: kernels)


def test_scan_kernel_path_uses_the_same_parameters(monkeypatch):
    """On CUDA the fused scan kernel replaces the scan: same inputs in (b, d, L) layout."""
    m = Mamba(16, d_state=4)
    x = torch.randn(2, 7, 16)
    pure = m(x)
    use_kernels(monkeypatch, mamba_mod.MambaKernels(selective_scan_fn=fake_scan_kernel))
    torch.testing.assert_close(m(x), pure)


def test_causal_conv1d_kernel_gets_the_conv_weights_in_its_layout(monkeypatch):
    m = Mamba(16, d_state=4, d_conv=3)  # d_inner 32
    x = torch.randn(2, 9, 16)
    pure = m(x)
    calls = []
    use_kernels(monkeypatch, mamba_mod.MambaKernels(causal_conv1d_fn=fake_conv_kernel(calls)))
    torch.testing.assert_close(m(x), pure)
    (call,) = calls
    assert call["x"] == (2, 32, 9)  # (batch, d_inner, L)
    assert call["weight"].shape == (32, 3)  # conv1d.weight (d, 1, w) as (d, w)
    assert call["weight"].data_ptr() == m.conv1d.weight.data_ptr()  # a view, not a copy
    assert call["bias"] is m.conv1d.bias and call["activation"] == "silu"


def test_fused_mixer_path_when_both_kernels_are_installed(monkeypatch):
    """mamba_inner_fn gets mamba_ssm.Mamba's arguments: xz (b, 2 d_inner, L) and the module's
    own weights; its result is the module's output."""
    m = Mamba(16, d_state=4)
    x = torch.randn(2, 7, 16)
    pure = m(x)
    seen = {}

    def fake_inner(xz, conv_w, conv_b, x_proj_w, dt_proj_w, out_w, out_b, A, B, C, D, **kw):
        seen.update(xz=xz.shape, conv_w=conv_w, x_proj_w=x_proj_w, dt_w=dt_proj_w, out_w=out_w)
        seen.update(out_b=out_b, B=B, C=C, kw=kw)
        assert xz.stride(-1) == 1
        xs, z = xz.chunk(2, dim=1)
        xs = fake_conv_kernel([])(xs, conv_w.squeeze(1), conv_b, "silu")
        dt, b, c = F.linear(xs.transpose(1, 2), x_proj_w).split([m.dt_rank, 4, 4], dim=-1)
        delta = F.linear(dt, dt_proj_w).transpose(1, 2)
        y = fake_scan_kernel(
            xs, delta, A, b.transpose(1, 2), c.transpose(1, 2), D, z=z, **kw
        ).transpose(1, 2)
        return F.linear(y, out_w, out_b)

    kernels = mamba_mod.MambaKernels(
        selective_scan_fn=fake_scan_kernel,
        mamba_inner_fn=fake_inner,
        causal_conv1d_fn=fake_conv_kernel([]),
    )
    assert kernels.fused_mixer
    use_kernels(monkeypatch, kernels)
    torch.testing.assert_close(m(x), pure)
    assert seen["xz"] == (2, 64, 7)
    assert seen["conv_w"] is m.conv1d.weight and seen["x_proj_w"] is m.x_proj.weight
    assert seen["dt_w"] is m.dt_proj.weight and seen["out_w"] is m.out_proj.weight
    assert seen["out_b"] is None and seen["B"] is None and seen["C"] is None
    assert seen["kw"]["delta_softplus"] is True
    torch.testing.assert_close(seen["kw"]["delta_bias"], m.dt_proj.bias.float())


def test_fused_mixer_needs_causal_conv1d_like_mamba_ssm():
    assert not mamba_mod.MambaKernels(mamba_inner_fn=lambda *a, **k: None).fused_mixer


def test_kernels_not_used_on_cpu(monkeypatch):
    installed = mamba_mod.MambaKernels(selective_scan_fn=fake_scan_kernel)
    monkeypatch.setattr(mamba_mod, "installed_kernels", lambda: installed)
    assert mamba_mod.kernels_for(torch.zeros(1)) is mamba_mod.NO_KERNELS


def test_mamba_is_causal():
    m = Mamba(16, d_state=4)
    x = torch.randn(1, 10, 16)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(1, 4, 16)
    torch.testing.assert_close(m(x)[:, :6], m(x2)[:, :6])


def test_reverse_within_lengths():
    x = torch.arange(10.0).view(2, 5, 1)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    out = reverse_within_lengths(x, mask).squeeze(-1)
    assert out.tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]
    torch.testing.assert_close(reverse_within_lengths(reverse_within_lengths(x, mask), mask), x)
    torch.testing.assert_close(reverse_within_lengths(x, None), x.flip(1))


def test_bimamba_padding_does_not_leak():
    mix = BiMamba(16, d_state=4)
    lengths = torch.tensor([8, 5, 1])
    mask = torch.arange(8) < lengths.unsqueeze(1)
    x = torch.randn(3, 8, 16)
    out = mix(x, mask)
    x2 = x.clone()
    x2[~mask] = 100 * torch.randn(int((~mask).sum()), 16)
    torch.testing.assert_close(mix(x2, mask)[mask], out[mask])
    for row, n in enumerate(lengths.tolist()):  # each row as if it were alone and unpadded
        torch.testing.assert_close(out[row, :n], mix(x[row : row + 1, :n])[0], atol=1e-5, rtol=1e-4)


def test_bimamba_reads_both_directions():
    mix = BiMamba(16, d_state=4)
    x = torch.randn(1, 6, 16)
    x2 = x.clone()
    x2[:, -1] += 1.0  # a later token changes earlier outputs only through the reversed scan
    assert not torch.allclose(mix(x)[:, 0], mix(x2)[:, 0])
