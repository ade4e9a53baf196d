"""The latent flow p_psi(z | x) of YAN and its stage-2 objective (sec. 3.2, 4.2, eq. 5 and 11).

:class:`LatentFlow` is a MoE-FM vector field over token latents: a trunk of time-conditioned
blocks (8 Transformer or 6 bidirectional Mamba blocks in the paper, cross-attention to the
encoded source at layers 1, 2, 3, 5) topped by :class:`moefm.heads.MoEHead` with ``m`` =
latent size. It implements the :class:`moefm.models.MoEField` protocol, so
:func:`moefm.sampling.sample` integrates it (frozen routing: one expert per token drawn at
``t = 0``, then only that expert's head is evaluated).

The gate sees, per token, the trunk state, the pooled source (masked mean of the encoded
source) and the time embedding, concatenated (``gate_in = 2 d + m``).

:class:`LengthHead` predicts the target length from the pooled source, so generation needs no
oracle length (the paper uses oracle lengths; this head is our addition).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from moefm.clusters import kmeans_labels
from moefm.heads import MoEHead
from moefm.losses import expert_floor_loss, moefm_nll
from moefm.models import time_embedding
from moefm.paths import linear_path
from moefm.sampling import sample

from .autoencoder import Decoder, randn_like_on, weighted_ce
from .blocks import Block, MemoryKV, Padding, modulate, sinusoidal_positions
from .config import YANConfig

TIME_FEATURES = 256  # sinusoidal features of t fed to the time MLP (as in DiT)


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the flow's state ``z_t`` is integrated in for weights of ``dtype``: at least
    float32. A bfloat16 state (8 bits of mantissa) would round away Euler increments
    ``dt * u`` below ~0.4% of ``|z|``; the trunk still runs in the weights' dtype (its input is
    cast in :meth:`LatentFlow.features`), and the state costs ``L x m`` floats."""
    return torch.promote_types(dtype, torch.float32)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the sequence axis of ``x`` ``(B, L, m)`` at real tokens; 0 for empty rows."""
    if mask is None:
        return x.mean(1) if x.shape[1] else x.new_zeros(x.shape[0], x.shape[2])
    w = mask.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


@dataclass
class FlowCond:
    """The source side of the flow, computed once per batch and reused by every Euler step.

    Attributes:
        memory: per flow block, the cross-attention keys/values of the source (``None`` for
            blocks without cross-attention).
        pooled: masked mean of the encoded source, ``(B, m)``.
        tgt_pad: padding of the latent sequence being generated (self-attention/Mamba mask).
        source: the encoded source aligned to the target positions, ``(B, Lt, m)`` (zero past
            the source's end), for ``flow_start = "source"`` and ``source_input``; ``None``
            when neither needs it.
    """

    memory: list[MemoryKV | None]
    pooled: torch.Tensor
    tgt_pad: Padding
    source: torch.Tensor | None = None


ENDPOINT_FLOOR = 0.05  # endpoint parameterisation: u = (x1_hat - z_t) / max(1 - t, this)


@dataclass
class FlowFeatures:
    """One trunk evaluation: what :meth:`LatentFlow.features` returns to the sampler."""

    h: torch.Tensor  # (B, L, d) final trunk state, input of the experts
    temb: torch.Tensor  # (B, d) time embedding
    pooled: torch.Tensor  # (B, m) pooled source
    z: torch.Tensor | None = None  # (B, L, m) the state z_t it was evaluated at
    t: torch.Tensor | None = None  # (B,) its time
    anchor: torch.Tensor | None = None  # (B, L, m) what an endpoint expert predicts relative to

    def gate_input(self) -> torch.Tensor:
        """``[h, pooled source, time embedding]`` per token, ``(B, L, 2 d + m)``."""
        b, length, _ = self.h.shape
        return torch.cat(
            [
                self.h,
                self.pooled.unsqueeze(1).expand(b, length, -1),
                self.temb.unsqueeze(1).expand(b, length, -1),
            ],
            dim=-1,
        )


class LatentFlow(nn.Module):
    """MoE-FM vector field ``u_k(z_t, t | x)`` and gate ``pi(z_t, t | x)`` over token latents.

    Trunk input: ``z_t`` projected to ``d_model`` plus fixed sinusoidal positions (Transformer;
    for Mamba only with ``memory_positions``, its scans being ordered). Time enters every block
    through adaLN from an MLP of sinusoidal features of t (DiT); the source enters through
    cross-attention (its memory carries positions too with ``memory_positions``) and the gate.

    The start state z0 is N(0, I) noise (the paper) or, with ``flow_start = "source"``, the
    source latents plus noise (:meth:`start`).

    Example:
        >>> from yan.config import preset
        >>> flow = LatentFlow(preset("tiny"))
        >>> cond = flow.condition(torch.randn(2, 7, 32))          # encoded source
        >>> out = sample(flow, torch.randn(2, 5, 32), steps=3, cond=cond)   # frozen routing
    """

    def __init__(self, cfg: YANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, m = cfg.d_model, cfg.latent_dim
        self.in_proj = nn.Linear(m, d)
        # The source latent at the same position, straight into the trunk (``source_input``):
        # on aligned tasks "keep, denoise or change the source token here" becomes a local
        # computation instead of one that cross-attention must first learn to align.
        self.source_proj = nn.Linear(m, d) if cfg.source_input else None
        self.register_buffer("positions", None, persistent=False)
        self.register_buffer("memory_positions", None, persistent=False)
        self.reset_positions()
        self.time_mlp = nn.Sequential(nn.Linear(TIME_FEATURES, d), nn.SiLU(), nn.Linear(d, d))
        self.memory_norm = nn.LayerNorm(m)
        cross = set(cfg.cross_attn_layers)
        self.blocks = nn.ModuleList(
            Block(cfg, time_cond=True, cross_attn=i + 1 in cross) for i in range(cfg.flow_layers)
        )
        # DiT final layer: adaLN (zero-init) before the output heads
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        nn.init.zeros_(self.ada_out[1].weight)
        nn.init.zeros_(self.ada_out[1].bias)
        self.head = MoEHead(d, m, cfg.K, gate_hidden=cfg.gate_hidden, gate_in=2 * d + m)
        # expert_assignment = "cluster": the k-means centres of the target latents, one per
        # expert; NaN until fit_centres (a stage-1 checkpoint has none), saved with the flow
        self.register_buffer(
            "centres",
            torch.full((cfg.K, m), float("nan")) if cfg.expert_assignment == "cluster" else None,
        )
        self._register_load_state_dict_pre_hook(_centres_default, with_module=True)

    def reset_positions(self, device: torch.device | str | None = None) -> None:
        """(Re)build the position tables on ``device`` (``None``: the default device).

        They are functions of the config alone and so not saved with the weights
        (non-persistent buffers): a model rebuilt from a checkpoint gets them here
        (:meth:`yan.model.YAN.from_state_dict`).
        """
        cfg = self.cfg

        def table(dim: int) -> torch.Tensor:
            out = sinusoidal_positions(cfg.max_len, dim)
            return out if device is None else out.to(device)

        query_positions = cfg.arch == "transformer" or cfg.memory_positions
        self.positions = table(cfg.d_model) if query_positions else None
        # Without positions the memory is a bag of latents: cross-attention cannot tell which
        # source token sits at the target position being generated.
        self.memory_positions = table(cfg.latent_dim) if cfg.memory_positions else None

    @property
    def K(self) -> int:
        return self.head.K

    # ---- path-consistent experts (expert_assignment = "cluster", moefm.clusters) ----
    @property
    def needs_centres(self) -> bool:
        """True for a clustered flow whose centres have not been fitted yet."""
        return self.centres is not None and not bool(torch.isfinite(self.centres).all())

    @torch.no_grad()
    def fit_centres(self, latents: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """k-means of target latents ``(n, m)`` into the K expert clusters; sets and returns
        the centres ``(K, m)`` (:func:`moefm.clusters.kmeans_labels`).

        Targets with at most K distinct latents (a label set: "positive" and "negative" are
        2 x 3 token latents) get one centre per distinct latent; the rest repeat the last
        one and are never assigned (ties go to the first centre), so their experts only
        train through the CE term."""
        if self.centres is None:
            raise ValueError(
                'fit_centres needs expert_assignment = "cluster"; this flow assigns pairs by '
                "responsibility (eq. 5)"
            )
        if latents.dim() != 2 or latents.shape[1] != self.cfg.latent_dim:
            raise ValueError(
                f"latents must have shape (n, {self.cfg.latent_dim}), got {tuple(latents.shape)}"
            )
        if not bool(torch.isfinite(latents).all()):
            raise ValueError("latents hold NaN or inf: the encoder has diverged")
        distinct = torch.unique(latents.float(), dim=0)
        if distinct.shape[0] <= self.K:
            pad = distinct[-1:].expand(self.K - distinct.shape[0], -1)
            centres = torch.cat([distinct, pad])
        else:
            _, centres = kmeans_labels(latents.float(), self.K, seed=seed)
        self.centres.copy_(centres.to(self.centres))
        return self.centres

    def cluster_of(self, z1: torch.Tensor) -> torch.Tensor:
        """The expert cluster of every target latent ``(..., m)``: its nearest centre,
        long ``(...)``."""
        if self.centres is None or self.needs_centres:
            raise ValueError(
                "this clustered flow has no centres yet: fit them on target latents with "
                "LatentFlow.fit_centres (yan train does so at the start of stage 2)"
            )
        centres = self.centres.to(z1.dtype)
        # ||z - c||^2 up to the per-token constant ||z||^2
        score = (centres * centres).sum(-1) - 2 * z1 @ centres.T
        return score.argmin(-1)

    def condition(
        self,
        src_latent: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
    ) -> FlowCond:
        """Prepare the source side once: cross-attention keys/values, pooled source, masks.

        Args:
            src_latent: encoded source ``(B, Ls, m)``.
            src_mask: its padding mask ``(B, Ls)`` (``None``: no padding).
            tgt_mask: padding mask of the latent sequence to be generated, ``(B, Lt)``.
        """
        mem = self.memory_norm(src_latent)
        if self.memory_positions is not None:
            mem = mem + self.memory_positions[: mem.shape[1]].to(mem.dtype)
        src_pad = Padding.from_mask(src_mask)
        memory = [
            None if blk.cross is None else blk.cross.memory(mem, src_pad) for blk in self.blocks
        ]
        source = None
        if self.cfg.flow_start == "source" or self.source_proj is not None:
            source = aligned_source(src_latent, src_mask, tgt_mask)
        pooled = masked_mean(src_latent, src_mask)
        return FlowCond(memory, pooled, Padding.from_mask(tgt_mask), source)

    def start(
        self,
        cond: FlowCond,
        shape: tuple[int, ...],
        like: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The start state z0 of shape ``(B, Lt, m)``: N(0, I), or with ``flow_start =
        "source"`` the aligned source latents plus ``start_noise`` times N(0, I)."""
        noise = randn_like_on(like.to(state_dtype(like.dtype)), shape, generator)
        if self.cfg.flow_start != "source":
            return noise
        if cond.source is None:
            raise ValueError("a source start needs cond from LatentFlow.condition")
        if tuple(cond.source.shape) != tuple(shape):
            raise ValueError(
                f"the source start has shape {tuple(cond.source.shape)} but z0 must have "
                f"{tuple(shape)}: condition() was given another target mask"
            )
        return cond.source + self.cfg.start_noise * noise

    # ---- MoEField protocol (moefm.models.MoEField) ----
    def features(
        self, z: torch.Tensor, t: torch.Tensor, cond: FlowCond | None = None
    ) -> FlowFeatures:
        """One trunk evaluation at latents ``z`` ``(B, L, m)`` and times ``t`` ``(B,)``."""
        if cond is None:
            raise ValueError("LatentFlow.features needs cond (see LatentFlow.condition)")
        if z.dim() != 3 or z.shape[-1] != self.cfg.latent_dim:
            raise ValueError(
                f"z must have shape (B, L, {self.cfg.latent_dim}), got {tuple(z.shape)}"
            )
        if tuple(t.shape) != (z.shape[0],):
            raise ValueError(f"t must have shape ({z.shape[0]},), got {tuple(t.shape)}")
        x = self.in_proj(z.to(self.in_proj.weight.dtype))  # a float32 state, bf16 weights
        if self.source_proj is not None:
            if cond.source is None or cond.source.shape != z.shape:
                raise ValueError(
                    "source_input needs the aligned source of the target being generated "
                    f"(shape {tuple(z.shape)}): pass the target mask to LatentFlow.condition"
                )
            x = x + self.source_proj(cond.source)
        if self.positions is not None:
            x = x + self.positions[: z.shape[1]]
        temb = self.time_mlp(time_embedding(t, TIME_FEATURES).to(x.dtype))
        for block, memory in zip(self.blocks, cond.memory):
            x = block(x, cond.tgt_pad, temb, memory)
        shift, scale = self.ada_out(temb).chunk(2, dim=-1)
        h = modulate(self.norm_out(x), shift, scale)
        if self.cfg.flow_param == "velocity":
            return FlowFeatures(h, temb, cond.pooled)
        # endpoint experts predict x1 relative to the clean part of the start (the aligned
        # source for a source start, 0 for noise): at initialisation a source start flows
        # straight back to E(src), a noise start towards the latents' mean
        anchor = cond.source if self.cfg.flow_start == "source" else None
        return FlowFeatures(h, temb, cond.pooled, z, t, anchor)

    def _velocity(self, out: torch.Tensor, feats: FlowFeatures, expert_axis: bool):
        """Expert outputs -> velocities: as they are, or ``(anchor + out - z_t) / (1 - t)``
        for the endpoint parameterisation (``1 - t`` floored at :data:`ENDPOINT_FLOOR`)."""
        if self.cfg.flow_param == "velocity":
            return out
        assert feats.z is not None and feats.t is not None
        z, anchor = feats.z, feats.anchor
        if expert_axis:  # (B, L, K, m)
            z = z.unsqueeze(2)
            anchor = None if anchor is None else anchor.unsqueeze(2)
        end = out if anchor is None else anchor + out
        left = (1 - feats.t).clamp_min(ENDPOINT_FLOOR).to(out.dtype)
        return (end - z) / left.view(-1, *([1] * (out.dim() - 1)))

    def log_pi(self, feats: FlowFeatures) -> torch.Tensor:
        """Gate log-probabilities ``(B, L, K)``."""
        return self.head.log_pi(feats.gate_input())

    def fields(self, feats: FlowFeatures) -> torch.Tensor:
        """All expert velocities ``(B, L, K, m)``."""
        return self._velocity(self.head.experts(feats.h), feats, expert_axis=True)

    def field(self, feats: FlowFeatures, idx: torch.Tensor) -> torch.Tensor:
        """The chosen expert's velocity per token ``(B, L, m)``; no other expert is computed."""
        return self._velocity(self.head.expert(feats.h, idx), feats, expert_axis=False)


def _centres_default(module, state_dict, prefix, *args) -> None:
    """Load hook: a checkpoint without centres (a stage-1 model, or one trained with
    responsibilities) leaves a clustered flow's centres unfitted instead of failing; centres
    that a responsibility-assigned flow has no use for are dropped."""
    key = prefix + "centres"
    if module.centres is not None and key not in state_dict:
        state_dict[key] = torch.full_like(module.centres, float("nan"))
    elif module.centres is None:
        state_dict.pop(key, None)


def aligned_source(
    src_latent: torch.Tensor, src_mask: torch.Tensor | None, tgt_mask: torch.Tensor | None
) -> torch.Tensor:
    """Source latents at the target positions, ``(B, Lt, m)``: position l of the target gets
    source token l, and zeros (the N(0, I) mean) where the source has no token l."""
    b, ls, m = src_latent.shape
    lt = ls if tgt_mask is None else tgt_mask.shape[1]
    src = src_latent if src_mask is None else src_latent * src_mask.unsqueeze(-1)
    out = src.new_zeros(b, lt, m)
    n = min(ls, lt)
    out[:, :n] = src[:, :n]
    return out


class LengthHead(nn.Module):
    """Target length classifier on the pooled source: class ``c`` means length ``c + 1``."""

    def __init__(self, cfg: YANConfig) -> None:
        super().__init__()
        self.max_len = cfg.max_len
        self.net = nn.Sequential(
            nn.LayerNorm(cfg.latent_dim),
            nn.Linear(cfg.latent_dim, cfg.d_model),
            nn.SiLU(),
            nn.Linear(cfg.d_model, cfg.max_len),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, max_len)``."""
        return self.net(pooled)

    def predict(self, pooled: torch.Tensor) -> torch.Tensor:
        """Most likely length per row, ``(B,)`` in ``1..max_len``."""
        return self(pooled).argmax(-1) + 1

    def loss(self, pooled: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against true lengths ``(B,)``; rows of length 0 are ignored."""
        target = (lengths.long() - 1).clamp(max=self.max_len - 1)
        target = target.masked_fill(lengths <= 0, -100)
        if bool((target < 0).all()):
            return pooled.sum() * 0.0
        return F.cross_entropy(self(pooled).float(), target, ignore_index=-100)


@dataclass
class FlowLoss:
    """Stage-2 loss parts (eq. 11); ``loss`` carries the gradient.

    Attributes:
        loss: ``alpha_MoE-FM * moefm + alpha_CE * ce + alpha_length * length``.
        moefm: MoE-FM NLL of eq. (5) (without the Gaussian normaliser), mean per real token
            (divided by m with ``nll_reduction = "mean"``; with sigma * sqrt(m) with ``"dim"``).
        ce: cross-entropy of decoding the Euler endpoint ``z1_hat``, mean per real token.
        length: cross-entropy of the length head (0 when it is not trained).
        accuracy: fraction of real tokens whose decoded endpoint is right, no gradient.
    """

    loss: torch.Tensor
    moefm: torch.Tensor
    ce: torch.Tensor
    length: torch.Tensor
    accuracy: torch.Tensor


def latent_flow_loss(
    flow: LatentFlow,
    decoder: Decoder,
    z1: torch.Tensor,
    cond: FlowCond,
    tgt: torch.Tensor,
    tgt_mask: torch.Tensor,
    cfg: YANConfig,
    *,
    length_head: LengthHead | None = None,
    generator: torch.Generator | None = None,
    ce_weight: torch.Tensor | None = None,
    ce_steps: int | None = None,
) -> FlowLoss:
    """The stage-2 objective of eq. (11): ``alpha_MoE-FM L_MoE-FM + alpha_CE L_CE``.

    - L_MoE-FM (eq. 5): ``t ~ U(0, 1)`` per sequence, ``z0 ~ N(0, I)`` (or the source bridge
      of :meth:`LatentFlow.start`), ``z_t = t z1 + (1 - t) z0``, NLL of ``u* = z1 - z0``
      under the K-expert mixture, over real tokens; divided by m with
      ``nll_reduction = "mean"``, with sigma per dimension (sigma * sqrt(m)) with ``"dim"``.
      With ``expert_assignment = "cluster"`` the mixture has one known component, the
      expert of the target latent's cluster: ``||u_c - u*||^2 / (2 sigma^2) - log pi_c``.
      With ``expert_floor`` (responsibilities only) every expert also regresses the pair:
      ``+ expert_floor * mean_k ||u_k - u*||^2 / (2 sigma^2)``, in the same reduction.
    - L_CE: integrate ``cfg.train_steps`` Euler steps (``ce_steps`` when given, else a
      draw from ``cfg.ce_steps`` when that is set) from the same ``z0`` with frozen routing
      (experts drawn at ``t = 0``; a clustered flow uses each pair's own cluster), decode
      ``z1_hat`` and score it against ``tgt``. Gradients flow through the unrolled solver
      into the flow (and through the decoder, whose own parameters stay fixed when frozen).
    - plus ``alpha_length`` times the length head's CE (our addition, see :class:`LengthHead`).

    Args:
        z1: target latents ``E_phi(y)``, ``(B, L, m)``.
        cond: from :meth:`LatentFlow.condition` with ``tgt_mask``.
        tgt, tgt_mask: target ids and mask ``(B, L)``.
        generator: seeds t, z0 and the expert draws.
        ce_weight: per-token weights ``(B, L)`` of the CE term (``None``: the plain mean),
            e.g. :func:`yan.autoencoder.masked_weight` of the masked source positions.
        ce_steps: the Euler steps of this batch's CE unroll. ``yan train`` draws them from
            ``cfg.ce_steps`` per optimiser step with a seed shared by all ranks, so no rank
            waits for another's longer unroll; ``None`` draws them here with ``generator``.
    """
    b = z1.shape[0]
    device = generator.device if generator is not None else z1.device
    t = torch.rand(b, generator=generator, device=device, dtype=z1.dtype).to(z1.device)
    z0 = flow.start(cond, tuple(z1.shape), z1, generator)
    path = linear_path(z0, z1, t)
    feats = flow.features(path.z_t, t, cond)
    m = z1.shape[-1]
    # "dim": sigma per dimension, i.e. sigma * sqrt(m) on the summed squared distance
    sigma = cfg.sigma * m**0.5 if cfg.nll_reduction == "dim" else cfg.sigma
    labels = None
    if flow.centres is None:  # eq. (5): the expert of a pair is inferred (responsibilities)
        u_experts, log_pi = flow.fields(feats), flow.log_pi(feats)
    else:  # path-consistent: the pair's cluster is its expert, eq. (5) with it known
        labels = flow.cluster_of(z1.detach())
        u_experts = flow.field(feats, labels).unsqueeze(-2)
        log_pi = flow.log_pi(feats).gather(-1, labels.unsqueeze(-1))
    nll = moefm_nll(u_experts, log_pi, path.u_target, sigma, mask=tgt_mask)
    if cfg.expert_floor > 0 and labels is None:
        # every expert regresses every pair a little (config.expert_floor): frozen routing
        # holds a drawn expert for the whole path, also where another expert is responsible
        floor = expert_floor_loss(u_experts, path.u_target, sigma, mask=tgt_mask)
        nll = nll + cfg.expert_floor * floor
    if cfg.nll_reduction == "mean":  # per latent dimension: comparable with the per-token CE
        nll = nll / m
    zero = nll.new_zeros(())
    ce, accuracy = zero, zero
    if cfg.alpha_ce > 0:
        steps = cfg.train_steps if ce_steps is None else ce_steps
        if ce_steps is None and cfg.ce_steps:  # a T per batch, drawn with the loss's generator
            pick = torch.randint(len(cfg.ce_steps), (1,), generator=generator, device=device)
            steps = cfg.ce_steps[int(pick)]
        z1_hat = sample(
            flow,
            z0,
            steps,
            solver="euler",
            routing="frozen",
            cond=cond,
            generator=generator,
            # a clustered flow is unrolled along the pair's own expert: the CE then teaches
            # expert c to land on targets of cluster c, never a drawn expert to land on a
            # target of another cluster (which would undo the regression above)
            experts=labels,
        ).z1
        logits = decoder(z1_hat)
        if bool(tgt_mask.any()):
            ce = weighted_ce(logits, tgt, tgt_mask, ce_weight)
            with torch.no_grad():
                accuracy = (logits.argmax(-1) == tgt)[tgt_mask].float().mean()
    length = zero
    if length_head is not None and cfg.alpha_length > 0:
        length = length_head.loss(cond.pooled, tgt_mask.sum(1))
    loss = cfg.alpha_moefm * nll + cfg.alpha_ce * ce + cfg.alpha_length * length
    return FlowLoss(loss, nll, ce, length, accuracy)


__all__ = [
    "FlowCond",
    "FlowFeatures",
    "FlowLoss",
    "LatentFlow",
    "LengthHead",
    "aligned_source",
    "latent_flow_loss",
    "masked_mean",
    "state_dtype",
]
