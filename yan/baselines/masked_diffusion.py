"""Masked-diffusion baseline in the style of LLaDA (Nie et al., 2025), at a trainable scale.

A bidirectional Transformer reads ``[source..., target...]`` where some target tokens are
replaced by ``<|mask|>`` and predicts the original tokens at the masked places. As in LLaDA
there is no time input: the fraction of masks tells the model how far along it is.

Training (LLaDA's SFT objective): per sequence draw ``t ~ U(eps, 1)``, mask each target token
independently with probability ``t``, and minimise
``E[ (1 / t) * (1 / L) * sum_i 1[target i masked] * CE_i ]`` with ``L`` the target length --
an upper bound on the negative log-likelihood of the target given the source.

Sampling (LLaDA's low-confidence remasking, greedy): start from an all-mask target and run
``T`` steps. Each step predicts every masked position (argmax), keeps the ``~L / T`` most
confident predictions and leaves the rest masked. ``T = L`` unmasks one token per step (the
paper's best-quality LLaDA setting, sec. 5.3); ``T = 1`` unmasks everything at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from yan.baselines.common import (
    Baseline,
    BaselineConfig,
    aligned_source_ids,
    check_batch,
    check_ids,
    check_src,
    length_mask,
    position_ids,
    target_lengths,
)
from yan.batch import Seq2SeqBatch

MASK_EPS = 1e-3  # LLaDA's floor on the masking probability, keeps the 1/t weight bounded


class Block(nn.Module):
    """Pre-norm bidirectional Transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``;
    with ``conv_kernel > 0`` the mixer adds a depthwise convolution over positions
    (``BaselineConfig.conv_kernel``)."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, conv_kernel: int = 0
    ) -> None:
        super().__init__()
        self.conv = (
            nn.Conv1d(d_model, d_model, conv_kernel, padding=conv_kernel // 2, groups=d_model)
            if conv_kernel
            else None
        )
        self.n_heads, self.dropout = n_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_mask: Tensor, split: int = 0) -> Tensor:
        """``key_mask``: ``(B, 1, 1, L)`` bool, True where a key may be attended to; ``split``:
        where the source segment ends (the convolution mixes within a segment only)."""
        b, n, d = x.shape
        h = self.ln1(x)
        q, k, v = self.qkv(h).view(b, n, 3, self.n_heads, d // self.n_heads).unbind(2)
        att = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=key_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        mixed = self.proj(att.transpose(1, 2).reshape(b, n, d))
        if self.conv is not None:
            # Padding is zeroed and each segment convolved on its own, so the result does not
            # depend on how much padding sits between or around the segments.
            h = (h * key_mask[:, 0, 0, :].unsqueeze(-1).to(h.dtype)).transpose(1, 2)
            parts = [p for p in (h[..., :split], h[..., split:]) if p.shape[-1]]
            mixed = mixed + torch.cat([self.conv(p) for p in parts], -1).transpose(1, 2)
        x = x + self.drop(mixed)
        return x + self.drop(self.mlp(self.ln2(x)))


class MaskedDiffusionBaseline(Baseline):
    """LLaDA-style masked diffusion LM with learned positions and tied input/output embeddings.

    ``<|mask|>`` is a token of the project vocabulary, so the embedding has ``vocab_size`` rows.
    With ``config.aligned_positions`` the source and the target each count positions from 0
    and a learned segment embedding (``seg_emb``, row 0 source, row 1 target) separates them,
    so target token ``j`` shares position ``j`` with the source token it copies in copy /
    infilling; otherwise positions run on from the source into the target.
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.tok_emb = nn.Embedding(config.vocab_size, d)
        self.pos_emb = nn.Embedding(config.max_len, d)
        # Only in aligned mode, so checkpoints of the continuous layout load strictly.
        self.seg_emb = nn.Embedding(2, d) if config.aligned_positions else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(d, config.n_heads, config.d_ff, config.dropout, config.conv_kernel)
            for _ in range(config.n_layers)
        )
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size, bias=False)
        # Tied like GPT-2 and BART (LLaDA unties them): keeps `paper` at ~200M with d=1024.
        self.head.weight = self.tok_emb.weight
        self.apply(self._init)

    # ---- the generation protocol: T denoising steps, at most one per target token ----
    uses_steps = True

    @classmethod
    def positions(cls, src_len: int, tgt_len: int) -> int:
        return src_len + tgt_len  # [source, target]

    def max_steps(self, tgt_len: int) -> int | None:
        return tgt_len

    def _generate_ids(self, src: Tensor, src_mask: Tensor, lengths: Tensor, steps: int | None):
        # a T above the batch's longest target is clamped to it (every step unmasks a token)
        t = None if steps is None else min(steps, int(lengths.max()))
        return self.generate(src, src_mask, lengths, steps=t)

    @staticmethod
    def _init(module: nn.Module) -> None:
        # GPT-2's initialisation, as in the other two baselines (the convolution too: at
        # PyTorch's default scale it would swamp the 0.02-scale residual stream at init).
        if isinstance(module, nn.Linear | nn.Embedding | nn.Conv1d):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear | nn.Conv1d) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _target_logits(
        self, src: Tensor, src_mask: Tensor, tgt: Tensor, tgt_mask: Tensor
    ) -> Tensor:
        """Logits ``(B, Lt, V)`` at the target positions of ``[source, target]``."""
        mask = torch.cat([src_mask, tgt_mask], 1)
        longest = int(mask.sum(1).max()) if mask.numel() else 0
        if longest > self.config.max_len:
            raise ValueError(
                f"source + target is {longest} tokens, more than max_len={self.config.max_len}"
            )
        ids = torch.cat([src, tgt], 1)
        # A row with no real token would make softmax over keys 0/0; let it see everything.
        keys = mask | ~mask.any(1, keepdim=True)
        if self.seg_emb is None:
            x = self.tok_emb(ids) + self.pos_emb(position_ids(mask))
        else:
            positions = torch.cat([position_ids(src_mask), position_ids(tgt_mask)], 1)
            segment = torch.cat([torch.zeros_like(src), torch.ones_like(tgt)], 1)
            x = self.tok_emb(ids) + self.pos_emb(positions) + self.seg_emb(segment)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, keys[:, None, None, :], src.shape[1])
        return self.head(self.ln_f(x[:, src.shape[1] :]))

    def _context(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The source segment the model reads: none with ``keep_source``, where the target
        sequence itself starts as the source (see :meth:`start`)."""
        if self.config.keep_source:
            return src[:, :0], src_mask[:, :0]
        return src, src_mask

    def start(self, src: Tensor, src_mask: Tensor, tgt_mask: Tensor) -> Tensor:
        """The target before denoising: all ``<|mask|>``, or with ``keep_source`` the aligned
        source (visible tokens kept, masked positions masked); ``pad_id`` past each length."""
        x = torch.full_like(tgt_mask, self.config.mask_id, dtype=torch.long)
        if self.config.keep_source:
            x = aligned_source_ids(src, src_mask, tgt_mask.shape[1], self.config.mask_id)
        return x.masked_fill(~tgt_mask, self.config.pad_id)

    def loss(self, batch: Seq2SeqBatch) -> Tensor:
        """LLaDA's 1/t-weighted masked cross-entropy on the target (see the module docstring).

        With ``keep_source`` the positions masked at the start are always masked (probability
        1, weight 1) and the other tokens are masked with probability ``t`` (weight 1 / t).
        """
        check_batch(batch, self.config.vocab_size)
        tgt, tgt_mask = batch.tgt, batch.tgt_mask
        t = MASK_EPS + (1 - MASK_EPS) * torch.rand(tgt.shape[0], 1, device=tgt.device)
        p = t.expand(tgt.shape)
        if self.config.keep_source:
            hidden = self.start(batch.src, batch.src_mask, tgt_mask) == self.config.mask_id
            p = torch.where(hidden, 1.0, p)
        masked = (torch.rand(tgt.shape, device=tgt.device) < p) & tgt_mask
        noisy = torch.where(masked, self.config.mask_id, tgt)
        logits = self._target_logits(*self._context(batch.src, batch.src_mask), noisy, tgt_mask)
        ce = F.cross_entropy(logits.float().transpose(1, 2), tgt, reduction="none")  # (B, Lt)
        per_row = (ce * masked / p).sum(1) / tgt_mask.sum(1).clamp(min=1)
        return per_row.mean()

    @staticmethod
    def unmask_schedule(lengths: Tensor, steps: int) -> Tensor:
        """``(B, steps)`` tokens to unmask per step: ``L // T`` each, the remainder first (LLaDA)."""
        base = (lengths // steps)[:, None]
        extra = torch.arange(steps, device=lengths.device) < (lengths % steps)[:, None]
        return base + extra.long()

    @torch.inference_mode()
    def iter_denoise(
        self, src: Tensor, src_mask: Tensor, tgt_len: int | Tensor, steps: int | None = None
    ) -> Iterator[Tensor]:
        """Yield the ``(B, Lt)`` target after each of the ``steps`` denoising steps.

        Still-masked positions hold ``mask_id``; positions past a row's length hold ``pad_id``.
        ``steps`` defaults to one token per step (the most masked positions of any row).
        """
        src, src_mask = src.to(self.device), src_mask.to(self.device)
        check_src(src, src_mask)
        check_ids(src[src_mask], self.config.vocab_size, "src")
        lengths = target_lengths(tgt_len, src.shape[0], src.device)
        width = int(lengths.max())
        tgt_mask = length_mask(lengths, width)
        x = self.start(src, src_mask, tgt_mask)
        # one token per step by default: as many steps as the most masked row has masks
        steps = max(1, int((x == self.config.mask_id).sum(1).max())) if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= width:
            raise ValueError(
                f"steps must be an int in [1, {width}] (the target length), got {steps!r}"
            )
        schedule = self.unmask_schedule((x == self.config.mask_id).sum(1), steps)
        context = self._context(src, src_mask)
        for step in range(steps):
            logits = self.suppress_special(self._target_logits(*context, x, tgt_mask))
            confidence, prediction = logits.float().softmax(-1).max(-1)
            still_masked = x == self.config.mask_id
            confidence = confidence.masked_fill(~still_masked, float("-inf"))
            # Rank the masked positions by confidence; keep the top `schedule[:, step]` of them.
            order = confidence.argsort(dim=1, descending=True, stable=True)
            rank = torch.empty_like(order).scatter_(
                1, order, torch.arange(width, device=x.device).expand_as(order)
            )
            keep = (rank < schedule[:, step : step + 1]) & still_masked
            x = torch.where(keep, prediction, x)
            yield x

    @torch.inference_mode()
    def generate(
        self, src: Tensor, src_mask: Tensor, tgt_len: int | Tensor, steps: int | None = None, **kw
    ) -> Tensor:
        """Sample the target in ``steps`` steps (default: one per token); returns ``(B, Lt)`` ids."""
        if kw:
            raise ValueError(f"masked-diffusion generate takes only `steps`, got {sorted(kw)}")
        final = None
        for state in self.iter_denoise(src, src_mask, tgt_len, steps):
            final = state
        return final

    def _score_choices(self, src: Tensor, src_mask: Tensor, choices: Tensor) -> Tensor:
        """(B, C) pseudo-log-likelihood of each candidate target (rows of ``choices``).

        One forward pass per source with an all-``<|mask|>`` target of length ``Lc`` gives the
        per-position distributions ``p_j``; a candidate scores ``sum_j log p_j(choice_j)``.
        This is the log-probability under the product of those marginals -- a pseudo-likelihood,
        not the likelihood of the sampler, which unmasks a few tokens at a time conditioned on
        the ones already fixed (scoring that would take up to ``Lc`` passes per candidate). It
        is still normalised over the ``vocab_size ** Lc`` candidates of length ``Lc``. ``<|padding|>`` counts as a real target token. The cost is one forward
        pass of ``B`` rows for the whole candidate set.
        """
        b, (c, length) = src.shape[0], choices.shape
        tgt = torch.full((b, length), self.config.mask_id, dtype=torch.long, device=src.device)
        logits = self._target_logits(src, src_mask, tgt, torch.ones_like(tgt, dtype=torch.bool))
        logp = logits.float().log_softmax(-1)  # (B, Lc, V)
        # logp[b, j, choices[c, j]] for every (b, c, j), summed over j.
        index = choices.T[None].expand(b, length, c)
        return logp.gather(2, index).sum(1)
