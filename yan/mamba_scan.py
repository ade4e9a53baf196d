"""The selective scan of Mamba (S6) in pure PyTorch: the path of :mod:`yan.mamba` wherever the
``mamba_ssm`` CUDA kernels are not installed (CPU, or CUDA without the ``mamba`` extra).

The recurrence ``h_l = exp(delta_l A) h_{l-1} + delta_l B_l u_l`` is sequential in ``l``, and
a Python loop over a 1024-token sequence is 1024 rounds of small kernels (plus as many autograd
nodes). :func:`selective_scan` cuts the sequence into chunks of ``T`` steps and runs

1. the recurrence inside every chunk from a zero state, all chunks at once (``T`` steps on
   ``L / T`` times larger tensors), keeping each chunk's final state;
2. a short loop across chunks (``L / T`` steps) that carries the state from one chunk into the
   next: ``carry_c = exp(A sum(delta over chunk c-1)) carry_{c-1} + final_{c-1}``;
3. the recurrence inside every chunk again, from its carried-in state, now producing outputs.

That is ``2T + L/T`` loop rounds instead of ``L`` (about 90 instead of 1024 at L = 1024). The
chunk's decay is a sum in log space, ``exp(A sum delta)`` with ``A < 0`` and ``delta >= 0``, so
every exponent is <= 0: nothing can overflow, unlike the closed form ``exp(S_l) cumsum(exp(-S_k)
x_k)``, whose ``exp(-S_k)`` overflows float32 once a chunk's decay passes ``e^88`` (a trained
step size of 5 on the S4D-real ``A = -16`` does that in two steps). The outputs are the same
sums in another order (float32 rounding aside); ``chunk_size >= L`` is the plain sequential
loop, the reference the chunked scan is tested against; ``chunk_size=None`` takes whichever
of the two is faster for the tensors at hand (:func:`auto_chunk_size`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# below this length the sequential loop is already short; chunking would only add passes
MIN_CHUNKED_LENGTH = 16
# On CPU the chunked scan pays off only while each loop round is dominated by its fixed cost
# (dispatch, autograd bookkeeping), i.e. while the state b x d x n of one step is small; on
# larger states the rounds are memory-bound, and the chunked scan's two passes over tensors
# L/T times larger (out of cache) lose. Measured forward + backward, one thread: states of 256
# and 1,024 elements ran 1.5-8x faster chunked, states of 8,192 and 32,768 (the small preset at
# batch 1 and 4) 1.4-2.8x slower; the threshold sits between those.
CPU_CHUNKED_MAX_STATE = 2048


def default_chunk_size(length: int) -> int:
    """The ``T`` minimising the loop rounds ``2T + L/T``: ``sqrt(L / 2)``, rounded up."""
    if length < MIN_CHUNKED_LENGTH:
        return max(length, 1)
    return math.ceil(math.sqrt(length / 2))


def auto_chunk_size(u: torch.Tensor, n_state: int) -> int:
    """The chunk size ``chunk_size=None`` means: :func:`default_chunk_size` on CUDA (where every
    loop round costs kernel launches whatever its size) and on CPU for small states (see
    :data:`CPU_CHUNKED_MAX_STATE`); the whole length (the sequential loop) otherwise."""
    length = u.shape[1]
    state = u.shape[0] * u.shape[2] * n_state
    if u.is_cuda or state <= CPU_CHUNKED_MAX_STATE:
        return default_chunk_size(length)
    return max(length, 1)


def _recurrence(
    h: torch.Tensor,
    delta: torch.Tensor,
    du: torch.Tensor,
    B: torch.Tensor,
    A: torch.Tensor,
    C: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Run ``h <- exp(delta_l A) h + du_l B_l`` over axis 1; the outputs ``<h_l, C_l>``
    ``(b, d, L)`` (``None`` without ``C``) and the final state ``(b, d, n)``.

    Time-major inputs ``(b, L, .)`` are looped over ``unbind(1)`` views, never indexed with
    ``x[:, l]`` (whose backward materialises a full zero tensor per step); each step discretises
    only its own ``(b, d, n)`` slice, which stays in cache. A zero ``h`` is still multiplied
    in, so that ``A`` is part of the graph at any length (DDP wants a gradient for every
    parameter, ``A_log`` included, even for one-token sequences).
    """
    steps = zip(
        delta.unsqueeze(-1).unbind(1),  # (b, d, 1)
        du.unsqueeze(-1).unbind(1),  # (b, d, 1)
        B.unsqueeze(2).unbind(1),  # (b, 1, n)
    )
    outputs = C.unsqueeze(-1).unbind(1) if C is not None else None  # (b, n, 1) each
    ys = []
    for i, (delta_l, du_l, b_l) in enumerate(steps):
        x_l = du_l * b_l
        h = torch.addcmul(x_l, torch.exp(delta_l * A), h)
        if outputs is not None:
            ys.append(torch.bmm(h, outputs[i]))  # (b, d, 1)
    return (torch.cat(ys, dim=-1) if outputs is not None else None), h


def _chunks(x: torch.Tensor, size: int, n_chunks: int) -> torch.Tensor:
    """``(b, L, k) -> (b * n_chunks, size, k)``, zero-padded at the end of the sequence.

    Zero padding is inert: ``delta = 0`` decays nothing and ``du = 0`` adds nothing, so padded
    steps leave the state as it was, and they come after every real step."""
    pad = n_chunks * size - x.shape[1]
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(x.shape[0] * n_chunks, size, x.shape[2])


def _chunked_outputs(
    delta: torch.Tensor,
    du: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """``<h_l, C_l>`` ``(b, L, d)`` by the three passes of the module docstring."""
    b, length, d = delta.shape
    n_chunks = math.ceil(length / size)
    zero = delta.new_zeros(b, d, A.shape[1])
    if n_chunks == 1:  # the sequential loop
        ys, _ = _recurrence(zero, delta, du, B, A, C)
        assert ys is not None
        return ys.transpose(1, 2)
    cd, cu, cb, cc = (_chunks(x, size, n_chunks) for x in (delta, du, B, C))
    # 1. every chunk from a zero state, all at once: its final state
    _, final = _recurrence(zero.repeat(n_chunks, 1, 1), cd, cu, cb, A, None)
    final = final.view(b, n_chunks, d, -1)
    # the decay across a whole chunk, exp(A * sum delta) <= 1
    decay = torch.exp(cd.sum(1).view(b, n_chunks, d, 1) * A)
    # 2. carry the state across chunks: the state entering chunk c
    carried = [zero]
    for c in range(1, n_chunks):
        carried.append(torch.addcmul(final[:, c - 1], decay[:, c - 1], carried[-1]))
    start = torch.stack(carried, dim=1).view(b * n_chunks, d, -1)
    # 3. every chunk again from the state carried into it, with outputs
    ys, _ = _recurrence(start, cd, cu, cb, A, cc)
    assert ys is not None
    return ys.transpose(1, 2).reshape(b, n_chunks * size, d)[:, :length]


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The selective scan of Mamba (S6) in pure PyTorch, time-major layout.

    ``h_l = exp(delta_l A) * h_{l-1} + delta_l B_l u_l``,
    ``y_l = <h_l, C_l> + D u_l``, then ``y * silu(z)`` when ``z`` is given.

    The same function as ``mamba_ssm``'s ``selective_scan_fn`` but with the sequence axis second
    (``(batch, L, channels)``), computed in float32 by the chunked scan of the module docstring.

    Args:
        u: input ``(b, L, d)``.
        delta: step sizes before bias/softplus, ``(b, L, d)``.
        A: state matrix ``(d, n)`` (negative for a stable scan).
        B, C: input/output projections ``(b, L, n)``.
        D: skip weights ``(d,)``.
        z: gate ``(b, L, d)``.
        delta_bias: ``(d,)`` added to ``delta`` before the softplus.
        delta_softplus: apply softplus to ``delta``.
        chunk_size: steps per chunk; ``None`` picks :func:`auto_chunk_size` (chunked where
            that is faster), a value ``>= L`` runs the plain sequential loop.

    Returns:
        ``(b, L, d)`` in the dtype of ``u``.
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = u.dtype
    u, delta, A, B, C = (x.float() for x in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.float()
    if delta_softplus:
        delta = F.softplus(delta)
    length = u.shape[1]
    if length == 0:
        y = u.new_zeros(u.shape)
    else:
        size = auto_chunk_size(u, A.shape[1]) if chunk_size is None else chunk_size
        y = _chunked_outputs(delta, delta * u, A, B, C, size)
    if D is not None:
        y = y + u * D.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


__all__ = [
    "CPU_CHUNKED_MAX_STATE",
    "MIN_CHUNKED_LENGTH",
    "auto_chunk_size",
    "default_chunk_size",
    "selective_scan",
]
