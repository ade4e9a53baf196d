"""YAN, "flow until you almost know": a non-autoregressive LM with a latent MoE-FM flow (sec. 4).

Reading order follows the paper:

1. the encoder E_phi maps the source x and, in training, the target y to token latents
   (sec. 4.1); the light decoder p_theta(y | z) maps every latent to a token independently
   (eq. 7), so decoding is one parallel pass;
2. stage 1 trains encoder + decoder as a regularised autoencoder (eq. 8-10):
   :meth:`YAN.stage1_loss`;
3. stage 2 trains the latent flow, a mixture-of-experts flow from N(0, I) to E_phi(y) given
   E_phi(x) (eq. 5, 11): :meth:`YAN.stage2_loss`;
4. generation (:meth:`YAN.generate`): encode the source, draw z0 ~ N(0, I) for the target
   length (oracle or predicted by the length head; with ``flow_start = "source"``, our default,
   z0 is the aligned source latents plus noise), route every token to one expert at t = 0,
   integrate T Euler steps with that expert only, decode all tokens at once (argmax).

``python -m yan.model --preset paper-trf`` prints the parameter count of each part.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from moefm.sampling import ROUTINGS, SOLVERS, SampleResult, sample

from .autoencoder import AutoencoderLoss, Decoder, Encoder, masked_weight, regularized_ae_loss
from .batch import Seq2SeqBatch, aligned_source_ids
from .config import YANConfig, preset
from .flow import FlowLoss, LatentFlow, LengthHead, aligned_source, latent_flow_loss, masked_mean
from .generation import Generation, TextTokenizer, source_batches
from .hub import YANHubMixin


class YAN(nn.Module, YANHubMixin):
    """Encoder, decoder, latent flow and length head of YAN; tokenizer-agnostic (ids in, ids out).

    ``save_pretrained``, ``from_pretrained`` (a folder or a hub id) and ``push_to_hub`` come
    from :class:`yan.hub.YANHubMixin`.

    Example:
        >>> model = YAN.from_preset("tiny")
        >>> out = model.generate(torch.tensor([[5, 6, 7]]), tgt_len=4, steps=3, seed=0)
        >>> out.tokens.shape
        torch.Size([1, 4])
    """

    def __init__(self, config: YANConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.flow = LatentFlow(config)
        self.length_head = LengthHead(config)
        self._frozen_autoencoder = False

    # ---- construction (persistence: yan.hub.YANHubMixin) ----
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> YAN:
        """A randomly initialised model of a preset (see :data:`yan.config.PRESETS`)."""
        return cls(preset(name, **overrides))

    @classmethod
    def from_state_dict(
        cls,
        config: YANConfig,
        state: Mapping[str, torch.Tensor],
        *,
        origin: str = "the state dict",
        against: str = "the config",
    ) -> YAN:
        """The model of ``config`` holding exactly the tensors of ``state``, without random
        initialisation: built on the meta device, then the tensors are assigned (not copied, so
        they stay on the device they were read to). The fixed position tables are not part of
        ``state`` (non-persistent buffers) and are rebuilt on that device.

        Raises:
            ValueError: ``state`` misses tensors of ``config``'s model, has others, or has them
                in another shape; the message reads "``origin`` does not match ``against``".
        """
        with torch.device("meta"):  # no memory, no initialisation: every tensor comes from state
            model = cls(config)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        misshaped = sorted(
            k for k in set(state) & set(expected) if state[k].shape != expected[k].shape
        )
        if missing or unexpected or misshaped:
            raise ValueError(
                f"{origin} does not match {against}: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}, wrong shape {misshaped[:5]}"
            )
        model.load_state_dict(state, assign=True)
        model.encoder.reset_positions(model.device)
        model.flow.reset_positions(model.device)
        return model

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- input checks ----
    def _check_tokens(
        self, name: str, ids: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate right-padded ids and mask; trim columns beyond the longest row."""
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise ValueError(f"{name} must be a (B, L) tensor of token ids, got {_describe(ids)}")
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
            raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
        if mask is None:
            mask = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
        elif not isinstance(mask, torch.Tensor) or mask.shape != ids.shape:
            raise ValueError(
                f"{name}_mask must have the shape of {name} {tuple(ids.shape)}, got {_describe(mask)}"
            )
        mask = mask.to(device=ids.device) != 0
        if ids.shape[1] > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ValueError(f"{name}_mask must be right-padded (True at real tokens, then False)")
        lengths = mask.sum(1)
        longest = int(lengths.max()) if ids.shape[0] else 0
        if longest > self.config.max_len:
            raise ValueError(
                f"{name} has a sequence of {longest} tokens, longer than max_len="
                f"{self.config.max_len}"
            )
        ids, mask = ids[:, : max(longest, 0)], mask[:, : max(longest, 0)]
        real = ids[mask]
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= self.config.vocab_size):
            raise ValueError(
                f"{name} holds token ids outside [0, vocab_size={self.config.vocab_size}): "
                f"min {int(real.min())}, max {int(real.max())}"
            )
        return ids.long(), mask

    def _check_batch(self, batch: Seq2SeqBatch) -> Seq2SeqBatch:
        if not isinstance(batch, Seq2SeqBatch):
            raise ValueError(f"batch must be a yan.batch.Seq2SeqBatch, got {type(batch).__name__}")
        src, src_mask = self._check_tokens("src", batch.src, batch.src_mask)
        tgt, tgt_mask = self._check_tokens("tgt", batch.tgt, batch.tgt_mask)
        return Seq2SeqBatch(src, src_mask, tgt, tgt_mask)

    # ---- the model ----
    def encode(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token latents ``E_phi(ids)``, ``(B, L, m)``."""
        ids, mask = self._check_tokens("ids", ids, mask)
        return self.encoder(ids, mask)

    def stage1_loss(
        self, batch: Seq2SeqBatch, *, noise: bool = True, generator: torch.Generator | None = None
    ) -> AutoencoderLoss:
        """Stage 1, eq. (8): regularised autoencoding of ``batch.tgt`` (the source is unused).

        Pretraining text goes in ``tgt`` (``src`` may be empty); see
        :func:`yan.autoencoder.regularized_ae_loss` for the terms and their normalisation.
        """
        batch = self._check_batch(batch)
        return regularized_ae_loss(
            self.encoder,
            self.decoder,
            batch.tgt,
            batch.tgt_mask,
            self.config,
            noise=noise,
            generator=generator,
        )

    def stage2_loss(
        self,
        batch: Seq2SeqBatch,
        *,
        generator: torch.Generator | None = None,
        ce_steps: int | None = None,
    ) -> FlowLoss:
        """Stage 2, eq. (11): MoE-FM NLL + CE of the decoded Euler endpoint (+ length CE).

        The flow starts at N(0, I) noise (or the source bridge, ``config.flow_start``) and
        targets ``E_phi(tgt)``, conditioned on ``E_phi(src)``. With ``config.freeze_autoencoder`` (default) both encodings are
        computed without gradient and the decoder's parameters receive none that matter
        (use :meth:`stage_parameters` to build the optimiser).
        """
        batch = self._check_batch(batch)
        frozen = self.config.freeze_autoencoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            z_src = self.encoder(batch.src, batch.src_mask)
            z1 = self.encoder(batch.tgt, batch.tgt_mask)
        cond = self.flow.condition(z_src, batch.src_mask, batch.tgt_mask)
        ce_weight = None
        if self.config.masked_ce_weight != 1.0:
            # masked source positions (aligned tasks: target position l is source position l)
            hidden = aligned_source(
                (batch.src == self.config.mask_id).unsqueeze(-1).float(),
                batch.src_mask,
                batch.tgt_mask,
            ).squeeze(-1)
            ce_weight = masked_weight(hidden > 0, self.config.masked_ce_weight)
        return latent_flow_loss(
            self.flow,
            self.decoder,
            z1,
            cond,
            batch.tgt,
            batch.tgt_mask,
            self.config,
            length_head=self.length_head,
            generator=generator,
            ce_weight=ce_weight,
            ce_steps=ce_steps,
        )

    @torch.no_grad()
    def fit_expert_clusters(
        self, batches: Iterable[Seq2SeqBatch], max_tokens: int = 16_384, seed: int = 0
    ) -> torch.Tensor:
        """``expert_assignment = "cluster"``: fit the flow's K cluster centres by k-means on the
        target latents ``E_phi(tgt)`` of ``batches`` (real tokens, at most ``max_tokens`` of
        them, a seeded subsample); returns the centres ``(K, m)``."""
        if max_tokens < self.config.K:
            raise ValueError(f"max_tokens must be >= K={self.config.K}, got {max_tokens}")
        was_training = self.training
        self.eval()
        latents, n = [], 0
        for batch in batches:
            batch = self._check_batch(batch.to(self.device))
            z = self.encoder(batch.tgt, batch.tgt_mask)[batch.tgt_mask]
            latents.append(z.float().cpu())
            n += z.shape[0]
            if n >= max_tokens:
                break
        self.train(was_training)
        if not latents:
            raise ValueError("fit_expert_clusters got no batches")
        z = torch.cat(latents)
        if z.shape[0] > max_tokens:
            pick = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(seed))
            z = z[pick[:max_tokens]]
        return self.flow.fit_centres(z, seed=seed)

    def stage_parameters(self, stage: int) -> list[nn.Parameter]:
        """The parameters to optimise in ``stage`` (1 or 2), and freeze the rest accordingly.

        Stage 1: encoder + decoder. Stage 2: flow + length head, plus encoder + decoder when
        ``config.freeze_autoencoder`` is False. A frozen autoencoder also stays in eval mode
        (no dropout on the flow's targets) across later ``train()`` calls.
        """
        autoencoder = [self.encoder, self.decoder]
        generator_parts = [self.flow, self.length_head]
        if stage == 1:
            trainable, frozen = autoencoder, []
        elif stage == 2:
            freeze = self.config.freeze_autoencoder
            trainable = generator_parts + ([] if freeze else autoencoder)
            frozen = autoencoder if freeze else []
        else:
            raise ValueError(f"stage must be 1 or 2, got {stage!r}")
        for module in trainable:
            module.requires_grad_(True)
        for module in frozen:
            module.requires_grad_(False)
        self._frozen_autoencoder = bool(frozen)
        self.train(self.training)
        return [p for module in trainable for p in module.parameters()]

    def train(self, mode: bool = True) -> YAN:
        super().train(mode)
        if self._frozen_autoencoder:
            self.encoder.eval()
            self.decoder.eval()
        return self

    # ---- generation ----
    def _target_lengths(
        self, tgt_len: int | Sequence[int] | torch.Tensor | None, pooled: torch.Tensor
    ) -> torch.Tensor:
        b, max_len = pooled.shape[0], self.config.max_len
        if tgt_len is None:
            return self.length_head.predict(pooled)
        if isinstance(tgt_len, int) and not isinstance(tgt_len, bool):
            lengths = torch.full((b,), tgt_len, dtype=torch.long, device=pooled.device)
        else:
            lengths = torch.as_tensor(tgt_len, device=pooled.device)
            if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
                raise ValueError(f"tgt_len must hold integers, got dtype {lengths.dtype}")
            if lengths.dim() == 0:  # a numpy or 0-d tensor integer: same length for all rows
                lengths = lengths.expand(b)
            if tuple(lengths.shape) != (b,):
                raise ValueError(
                    f"tgt_len must be an int or have one length per row ({b},), "
                    f"got shape {tuple(lengths.shape)}"
                )
            lengths = lengths.long()
        if b and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
            raise ValueError(f"tgt_len must be in 1..max_len={max_len}, got {lengths.tolist()}")
        return lengths

    @torch.inference_mode()
    def generate(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        tgt_len: int | Sequence[int] | torch.Tensor | None = None,
        *,
        steps: int = 4,
        solver: str = "euler",
        routing: str = "frozen",
        seed: int | None = None,
        temperature: float = 0.0,
        pad_id: int = 0,
        keep_visible: bool = False,
    ) -> Generation:
        """Generate target token ids for right-padded sources, all tokens in parallel.

        Args:
            src, src_mask: source ids ``(B, Ls)`` and mask (``None``: no padding).
            tgt_len: target length: an int for all rows, one per row (mixed lengths give a
                right-padded output), or ``None`` to use the length head's prediction.
            steps: T, the number of solver steps (Euler: exactly T trunk evaluations; the
                routing evaluation at t = 0 is the first step's). The paper finds T = 3 enough.
            solver: ``euler`` (paper), ``midpoint``, ``rk4`` or ``dopri5``.
            routing: ``frozen`` (paper: expert drawn per token at t = 0), ``argmax``,
                ``resample`` or ``mean``.
            seed: seeds z0, the expert draws and sampling; ``None`` uses the global RNG.
            temperature: 0 decodes greedily (argmax, the paper's); > 0 samples tokens.
            pad_id: id written at padded target positions.
            keep_visible: for aligned tasks (copy, infilling: target token ``l`` is source
                token ``l`` unless the source masks it) output every visible source token as
                it is and the model's tokens only at ``<|mask|>`` positions (and past the
                source). This is clamped infilling, the decoding the masked-diffusion and
                autoregressive baselines use for these tasks (``BaselineConfig.keep_source``);
                ``False`` (default, the paper's) returns the model's own output everywhere.
        """
        _check_sampling(steps, solver, routing)
        if not (temperature >= 0 and math.isfinite(temperature)):
            # checked before the flow runs, not by the decoder after it
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        src, src_mask = self._check_sources(src, src_mask)
        was_training = self.training
        self.eval()  # no dropout: generation is a deterministic function of the seed
        try:
            device = self.device
            gen = None if seed is None else torch.Generator(device=device).manual_seed(seed)
            flow, tgt_mask, lengths = self._flow_endpoint(
                src.to(device), src_mask.to(device), tgt_len, steps, solver, routing, gen
            )
            # the vocabulary projection runs once, on real target positions only
            ids = self.decoder.decode(flow.z1[tgt_mask], temperature=temperature, generator=gen)
            tokens = torch.full(tgt_mask.shape, pad_id, dtype=torch.long, device=device)
            tokens[tgt_mask] = ids
        finally:
            self.train(was_training)
        out = Generation(tokens, tgt_mask, lengths, flow.experts, flow.nfe)
        if keep_visible:
            kept = aligned_source_ids(src, src_mask, out.tokens.shape[1], self.config.mask_id)
            kept = kept.to(out.tokens.device)  # the sources may still be on the host
            keep = (kept != self.config.mask_id) & out.mask
            out.tokens = torch.where(keep, kept, out.tokens)
        return out

    def _check_sources(
        self, src: torch.Tensor, src_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_check_tokens` for sources to generate from: at least one row, none empty."""
        src, src_mask = self._check_tokens("src", src, src_mask)
        if src.shape[0] == 0:
            raise ValueError("src has no rows (batch size 0)")
        empty = (~src_mask.any(1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"empty source: row(s) {empty} of src have no real token")
        return src, src_mask

    def _flow_endpoint(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor,
        tgt_len: int | Sequence[int] | torch.Tensor | None,
        steps: int,
        solver: str,
        routing: str,
        gen: torch.Generator | None,
    ) -> tuple[SampleResult, torch.Tensor, torch.Tensor]:
        """Encode the source, draw z0 for the target lengths and integrate the flow.

        Returns the sampler's result (``z1``: the target latents, ``(B, Lt, m)``), the target
        mask and the lengths; ``src`` must already be on the model's device.
        """
        z_src = self.encoder(src, src_mask)
        lengths = self._target_lengths(tgt_len, masked_mean(z_src, src_mask))
        tgt_mask = torch.arange(int(lengths.max()), device=src.device) < lengths.unsqueeze(1)
        cond = self.flow.condition(z_src, src_mask, tgt_mask)
        z0 = self.flow.start(cond, (*tgt_mask.shape, self.config.latent_dim), z_src, gen)
        out = sample(self.flow, z0, steps, solver=solver, routing=routing, cond=cond, generator=gen)
        return out, tgt_mask, lengths

    @torch.inference_mode()
    def choice_scores(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None,
        choices: torch.Tensor,
        *,
        steps: int,
        routing: str = "frozen",
        seed: int | None = None,
    ) -> torch.Tensor:
        """Rank classification: ``log p(c | x)`` of every candidate target ``c``, ``(B, C)``.

        The flow is sampled once per source, exactly as :meth:`generate` does for a target of
        length ``Lc`` (T Euler steps with the given routing; the same seed gives the same
        endpoint ``z1``), and every candidate is scored on that one endpoint with the decoder's
        independent per-token distributions (eq. 7): ``sum_l log p_theta(c_l | z1_l)``. The
        argmax over candidates is the closed-set prediction, the counterpart of a classifier
        choosing among the training labels; greedy :meth:`generate` may instead mix tokens of
        different candidates.

        Args:
            src, src_mask: source ids ``(B, Ls)`` and mask (``None``: no padding).
            choices: ``(C, Lc)`` candidate target ids, all of one length ``Lc``; every position
                is scored, padding ids included (classification targets are padded labels).
            steps: T, the number of Euler steps (T trunk evaluations).
            routing: ``frozen`` (paper), ``argmax``, ``resample`` or ``mean``.
            seed: seeds z0 and the expert draws; ``None`` uses the global RNG.

        Example:
            >>> model = YAN.from_preset("tiny")
            >>> labels = torch.tensor([[1, 2], [3, 0]])
            >>> model.choice_scores(torch.tensor([[5, 6, 7]]), None, labels, steps=3).shape
            torch.Size([1, 2])
        """
        _check_sampling(steps, "euler", routing)
        if not isinstance(choices, torch.Tensor) or choices.dim() != 2:
            raise ValueError(
                f"choices must be a (C, Lc) tensor of token ids, got {_describe(choices)}"
            )
        if choices.shape[0] == 0 or choices.shape[1] == 0:
            raise ValueError(
                "choices must hold at least one candidate of at least one token, got shape "
                f"{tuple(choices.shape)}"
            )
        choices, _ = self._check_tokens("choices", choices, None)
        src, src_mask = self._check_sources(src, src_mask)
        was_training = self.training
        self.eval()
        try:
            device = self.device
            gen = None if seed is None else torch.Generator(device=device).manual_seed(seed)
            width = choices.shape[1]
            out, _, _ = self._flow_endpoint(
                src.to(device), src_mask.to(device), width, steps, "euler", routing, gen
            )
            logp = torch.log_softmax(self.decoder(out.z1).float(), dim=-1)  # (B, Lc, V)
            positions = torch.arange(width, device=device)
            return logp[:, positions, choices.to(device)].sum(-1)  # (B, C, Lc) -> (B, C)
        finally:
            self.train(was_training)

    def generate_text(
        self,
        texts: str | Sequence[str],
        tokenizer: TextTokenizer,
        tgt_len: int | Sequence[int] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Text in, text out: tokenize, :meth:`generate` (same keyword arguments), detokenize."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("texts is empty")
        vocab = getattr(tokenizer, "vocab_size", None)
        if vocab is not None and vocab != self.config.vocab_size:
            raise ValueError(
                f"tokenizer has vocab_size {vocab} but the model was built for "
                f"{self.config.vocab_size}: they do not belong together"
            )
        encoded = [list(tokenizer.encode(text)) for text in texts]
        batch = next(source_batches(encoded, tokenizer.pad_id, len(encoded)))  # one batch
        out = self.generate(batch.src, batch.src_mask, tgt_len, pad_id=tokenizer.pad_id, **kwargs)
        return [
            tokenizer.decode(row[:n].tolist())
            for row, n in zip(out.tokens.cpu(), out.lengths.tolist())
        ]

    # ---- the generation protocol (yan.generation.GenerationModel) ----
    uses_steps = True  # T Euler steps: T field evaluations

    @property
    def max_source_len(self) -> int:
        return self.config.max_len

    def supports(self, src_len: int, tgt_len: int) -> bool:
        """Source and target each fit ``max_len`` (they have positions of their own)."""
        return max(src_len, tgt_len) <= self.config.max_len

    def max_steps(self, tgt_len: int) -> int | None:
        return None  # any number of Euler steps

    def generate_ids(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor,
        lengths: torch.Tensor,
        *,
        steps: int | None = None,
        seed: int = 0,
        pad_id: int | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """:meth:`generate`'s token ids for oracle ``lengths``; ``steps`` (T) is required and
        ``options`` are :meth:`generate`'s (``routing``, ``keep_visible``, ...)."""
        if steps is None:
            raise ValueError("YAN needs steps (the number of Euler steps T)")
        pad = 0 if pad_id is None else pad_id
        out = self.generate(src, src_mask, lengths, steps=steps, seed=seed, pad_id=pad, **options)
        return out.tokens

    def score_choices(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor,
        choices: torch.Tensor,
        *,
        steps: int | None = None,
        seed: int = 0,
        **options: Any,
    ) -> torch.Tensor:
        """:meth:`choice_scores` (``options``: ``routing``); ``steps`` (T) is required."""
        if steps is None:
            raise ValueError("YAN needs steps (the number of Euler steps T)")
        return self.choice_scores(src, src_mask, choices, steps=steps, seed=seed, **options)

    # ---- bookkeeping ----
    def param_counts(self) -> dict[str, int]:
        """Parameters per part.

        ``embeddings`` are the two vocabulary tables (encoder input embedding and decoder
        output projection); ``encoder`` and ``decoder`` exclude them; ``flow_trunk`` is the
        flow without its MoE head; ``moe_head`` the K experts and the gate.
        """

        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        embed = self.encoder.embed.weight.numel()
        lm_head = self.decoder.lm_head.weight.numel()
        counts = {
            "embeddings": embed + lm_head,
            "encoder": count(self.encoder) - embed,
            "decoder": count(self.decoder) - lm_head,
            "flow_trunk": count(self.flow) - count(self.flow.head),
            "moe_head": count(self.flow.head),
            "length_head": count(self.length_head),
        }
        counts["total"] = count(self)
        return counts


def _check_sampling(steps: int, solver: str, routing: str) -> None:
    """Refuse a T, solver or routing the sampler does not have, before any work is done."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {SOLVERS}")
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; expected one of {ROUTINGS}")


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m yan.model``: the parameter counts of :mod:`yan.info`."""
    from yan.info import main as info_main

    info_main(argv)


if __name__ == "__main__":
    main()
