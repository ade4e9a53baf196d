"""YAN's asymmetric autoencoder and its stage-1 objective (sec. 4.1-4.2, eq. 8-10).

- :class:`Encoder` E_phi: token embedding + blocks (6 Transformer or 4 bidirectional Mamba in the
  paper) -> one latent ``z`` of size m per token. It encodes both the source (the flow's
  condition) and the target (the flow's endpoint, sec. 4.1).
- :class:`Decoder` p_theta(y | z): deliberately light, a residual FFN (two linear layers with a
  skip connection, App. B.3) then the vocabulary projection, applied to every token
  independently, so all tokens decode in parallel (eq. 7).

The vocabulary projection is *not* tied to the token embedding: with the paper's 128,258-token
vocabulary the two tables are 2 x 65.7M parameters, which is what brings YAN-TRF to the
reported ~200M (tying would give ~135M).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from moefm.losses import PAPER_BANDWIDTHS, mmd2

from .blocks import Block, Padding, sinusoidal_positions
from .config import YANConfig


class Encoder(nn.Module):
    """E_phi: token ids ``(B, L)`` -> latents ``(B, L, m)``.

    Positions: fixed sinusoidal features up to ``max_len`` for the Transformer; none for Mamba,
    whose scans already read the tokens in order.
    """

    def __init__(self, cfg: YANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.register_buffer("positions", None, persistent=False)
        self.reset_positions()
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.enc_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.latent_dim)

    def reset_positions(self, device: torch.device | str | None = None) -> None:
        """(Re)build the position table on ``device`` (``None``: the default device).

        It is a function of the config alone and so not saved with the weights (a non-persistent
        buffer): a model rebuilt from a checkpoint gets it here
        (:meth:`yan.model.YAN.from_state_dict`).
        """
        cfg = self.cfg
        if cfg.arch != "transformer":  # Mamba's scans already read the tokens in order
            self.positions = None
            return
        table = sinusoidal_positions(cfg.max_len, cfg.d_model)
        self.positions = table if device is None else table.to(device)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode right-padded ids; ``mask`` True at real tokens (``None``: no padding).

        Padded ids are replaced by 0 before the lookup, so any value may sit in the padding.
        """
        if mask is not None:
            ids = ids.masked_fill(~mask, 0)
        x = self.embed(ids)
        if self.positions is not None:
            x = x + self.positions[: ids.shape[1]]
        x = self.drop(x)
        pad = Padding.from_mask(mask)
        for block in self.blocks:
            x = block(x, pad)
        return self.out(self.norm(x))


class Decoder(nn.Module):
    """p_theta(y_l | z_l) for every token independently (eq. 7): residual FFN + vocab projection."""

    def __init__(self, cfg: YANConfig) -> None:
        super().__init__()
        m = cfg.latent_dim
        self.norm = nn.LayerNorm(m)
        self.fc1 = nn.Linear(m, round(cfg.mlp_ratio * m))
        self.fc2 = nn.Linear(round(cfg.mlp_ratio * m), m)
        self.lm_head = nn.Linear(m, cfg.vocab_size, bias=False)

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        """The residual FFN ``z + W2 gelu(W1 LN(z))``, shape of ``z``, in the weights' dtype.

        The latents may come in a wider dtype than the weights (a bfloat16 model decodes the
        float32 state of the flow, see :func:`yan.flow.state_dtype`): they are cast first.
        """
        z = z.to(self.fc1.weight.dtype)
        return z + self.fc2(F.gelu(self.fc1(self.norm(z)), approximate="tanh"))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``(..., V)`` for latents ``(..., m)``."""
        return self.lm_head(self.hidden(z))

    def decode(
        self,
        z: torch.Tensor,
        *,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        chunk_tokens: int = 256,
        vocab_slice: int = 4096,
    ) -> torch.Tensor:
        """Token ids ``(N,)`` for latents ``(N, m)``: argmax (``temperature=0``) or sampled.

        The vocabulary projection dominates the decoder's cost and memory (``N x V`` logits).
        Greedy decoding never materialises them: it keeps a running max over slices of
        ``vocab_slice`` rows of the output matrix, which stay in cache (1.5x faster than
        chunked full logits for the 128k LLaMA-3 vocabulary on CPU). Ties go to the lowest id,
        as with ``argmax``. Sampling needs the full distribution and runs over chunks of
        ``chunk_tokens`` latents.

        ``temperature`` must be a finite number >= 0: at ``inf`` every logit becomes 0 and the
        "samples" would be uniform noise over the vocabulary.
        """
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not 0 <= temperature < math.inf
        ):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        h = self.hidden(z)
        if h.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=z.device)
        if temperature == 0.0:
            return self._greedy(h, vocab_slice)
        out = []
        for part in h.split(chunk_tokens):
            probs = torch.softmax(self.lm_head(part).float() / temperature, dim=-1)
            if generator is not None:  # the draw happens where the generator lives
                probs = probs.to(generator.device)
            draw = torch.multinomial(probs, 1, generator=generator)
            out.append(draw.squeeze(-1).to(z.device))
        return torch.cat(out)

    def _greedy(self, h: torch.Tensor, vocab_slice: int) -> torch.Tensor:
        # Two passes, because a max with indices costs 3x a plain amax on CPU (and bf16
        # argmax 14x): the first pass keeps each row's best value and the slice holding it;
        # the second recomputes only that slice per row (rows grouped by slice, one matmul
        # each: N rows in all) and takes its argmax. 512 latents, 128k vocabulary, one CPU
        # thread: bf16 205 -> 167 ms; fp32 unchanged (~590 ms, bound by the matmuls).
        weight = self.lm_head.weight
        best = h.new_full((h.shape[0],), float("-inf"))
        where = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        for i, start in enumerate(range(0, weight.shape[0], vocab_slice)):
            value = (h @ weight[start : start + vocab_slice].T).amax(-1)
            better = value > best  # strict: an earlier slice keeps ties (lowest id)
            best = torch.where(better, value, best)
            where = torch.where(better, i, where)
        arg = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        for i in where.unique().tolist():
            rows = (where == i).nonzero().squeeze(1)
            start = i * vocab_slice
            logits = h[rows] @ weight[start : start + vocab_slice].T
            arg[rows] = (
                logits.to(torch.promote_types(logits.dtype, torch.float32)).argmax(-1) + start
            )
        return arg


@dataclass
class AutoencoderLoss:
    """Stage-1 loss parts (eq. 8); ``loss`` carries the gradient, parts are for logging.

    Attributes:
        loss: ``lambda_CE * ce + lambda_MMD * mmd + lambda_Scale * scale``.
        ce: reconstruction cross-entropy, mean per real token (eq. 9 averaged over tokens).
        mmd: unbiased MMD^2 between latents and N(0, I) (eq. 10, App. A.4).
        scale: ``||z||^2 / m`` averaged over real tokens (1 for standard Gaussian latents).
        accuracy: fraction of real tokens reconstructed exactly (argmax), no gradient.
    """

    loss: torch.Tensor
    ce: torch.Tensor
    mmd: torch.Tensor
    scale: torch.Tensor
    accuracy: torch.Tensor


def randn_like_on(
    x: torch.Tensor, shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None
) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``x``'s device/dtype, drawn from ``generator``."""
    device = generator.device if generator is not None else x.device
    return torch.randn(shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def mmd_bandwidths(cfg: YANConfig) -> tuple[float, ...]:
    """The MMD kernel widths of eq. (10): the paper's {0.2, 0.5, 1, 2, 5}, times sqrt(m) with
    ``cfg.mmd_scale_bandwidths`` (N(0, I) latents lie ~sqrt(2 m) apart, see the config)."""
    factor = cfg.latent_dim**0.5 if cfg.mmd_scale_bandwidths else 1.0
    return tuple(factor * s for s in PAPER_BANDWIDTHS)


def mask_inputs(
    ids: torch.Tensor,
    mask: torch.Tensor,
    max_rate: float,
    mask_id: int,
    generator: torch.Generator | None = None,
    max_span: int = 1,
) -> torch.Tensor:
    """Replace real tokens by ``mask_id`` with a per-row rate ~ U(0, max_rate).

    ``max_span = 1`` masks tokens independently. ``max_span > 1`` masks spans of U{1..max_span}
    tokens (the infilling task's masks, App. B.2): span starts are drawn at ``rate / mean span
    length`` so that about the same fraction of tokens is masked. The stage-1 corruption that
    teaches the encoder to read ``<|mask|>`` (see ``YANConfig.stage1_mask_rate``); rows keep
    their length and padding.
    """
    if max_span < 1:
        raise ValueError(f"max_span must be >= 1, got {max_span}")
    device = generator.device if generator is not None else ids.device
    rate = max_rate * torch.rand(ids.shape[0], 1, generator=generator, device=device)
    mean_span = (max_span + 1) / 2
    hit = torch.rand(ids.shape, generator=generator, device=device) < rate / mean_span
    if max_span > 1:
        span = torch.randint(1, max_span + 1, ids.shape, generator=generator, device=device)
        starts, hit = hit, hit.clone()
        for offset in range(1, max_span):  # a start at l covers l .. l + span - 1
            hit[:, offset:] |= (starts & (span > offset))[:, :-offset]
    return ids.masked_fill(hit.to(ids.device) & mask, mask_id)


def weighted_ce(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """Token cross-entropy averaged over real tokens (``mask``), each weighted by ``weight``
    (``None``: the plain mean); a zero loss that keeps the graph when no token is real."""
    if not bool(mask.any()):
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits[mask].float(), targets[mask], reduction="none")
    if weight is None:
        return ce.mean()
    w = weight[mask].to(ce.dtype)
    return (ce * w).sum() / w.sum()


def masked_weight(hidden: torch.Tensor, factor: float) -> torch.Tensor | None:
    """Per-token CE weights: ``factor`` where the input was ``<|mask|>`` (``hidden``), 1
    elsewhere; ``None`` when ``factor`` is 1 (the plain mean)."""
    if factor == 1.0:
        return None
    return 1.0 + (factor - 1.0) * hidden.float()


def regularized_ae_loss(
    encoder: Encoder,
    decoder: Decoder,
    ids: torch.Tensor,
    mask: torch.Tensor,
    cfg: YANConfig,
    *,
    noise: bool = True,
    generator: torch.Generator | None = None,
) -> AutoencoderLoss:
    """The regularised autoencoder objective of stage 1, eq. (8).

    ``lambda_CE CE + lambda_MMD MMD^2(z, N(0, I)) + lambda_Scale ||z||^2``, where

    - CE (eq. 9) is the token cross-entropy of decoding ``z + eps``, with
      ``eps ~ N(0, latent_noise_std^2 I)`` when ``noise`` is on (sec. 4.2: small Gaussian
      perturbations of the encoder output widen each latent code's decodable region); averaged
      per real token instead of summed per sequence, so the weights do not depend on length;
    - MMD^2 (eq. 10) compares at most ``cfg.mmd_max_tokens`` randomly chosen real-token latents
      with as many N(0, I) draws (``moefm.losses.mmd2``, the paper's bandwidths), keeping the
      O(n^2) kernel cheap; it is 0 when fewer than 2 real tokens exist;
    - Scale is ``||z||^2 / m`` averaged over real tokens: per dimension, so that it equals 1
      for N(0, I) latents whatever m is.

    With ``cfg.stage1_mask_rate > 0`` (our addition, see the config) the encoder reads a copy
    of ``ids`` with some tokens replaced by ``<|mask|>`` and the decoder must still output the
    clean ``ids``: autoencoding at visible tokens, masked-token prediction at the others. The
    regularisers see the latents of that corrupted input.

    Args:
        ids, mask: right-padded text ``(B, L)`` and its mask (True at real tokens).
        noise: add the latent noise and the input masking (training); ``False`` for a clean
            evaluation.
        generator: seeds the noise, the MMD subsample and the Gaussian reference sample.
    """
    inputs = ids
    if noise and cfg.stage1_mask_rate > 0:
        inputs = mask_inputs(
            ids, mask, cfg.stage1_mask_rate, cfg.mask_id, generator, cfg.stage1_mask_span
        )
    z = encoder(inputs, mask)
    real = z[mask]  # (N, m)
    z_dec = z
    if noise and cfg.latent_noise_std > 0:
        z_dec = z + cfg.latent_noise_std * randn_like_on(z, z.shape, generator)
    logits = decoder(z_dec)
    hidden = (inputs == cfg.mask_id) & (ids != cfg.mask_id)
    ce = weighted_ce(logits, ids, mask, masked_weight(hidden, cfg.masked_ce_weight))
    n = real.shape[0]
    if n >= 2:
        if n > cfg.mmd_max_tokens:
            device = generator.device if generator is not None else z.device
            pick = torch.randperm(n, generator=generator, device=device)[: cfg.mmd_max_tokens]
            real_mmd = real[pick.to(z.device)]
        else:
            real_mmd = real
        mmd = mmd2(real_mmd, randn_like_on(z, real_mmd.shape, generator), mmd_bandwidths(cfg))
    else:
        mmd = z.sum() * 0.0
    scale = real.pow(2).mean() if n else z.sum() * 0.0
    loss = cfg.lambda_ce * ce + cfg.lambda_mmd * mmd + cfg.lambda_scale * scale
    with torch.no_grad():
        accuracy = (logits.argmax(-1) == ids)[mask].float().mean() if n else ce.new_zeros(())
    return AutoencoderLoss(loss, ce, mmd, scale, accuracy)


__all__ = [
    "AutoencoderLoss",
    "Decoder",
    "Encoder",
    "mask_inputs",
    "masked_weight",
    "mmd_bandwidths",
    "randn_like_on",
    "regularized_ae_loss",
    "weighted_ce",
]
