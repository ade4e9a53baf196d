"""What the three baselines share: the config dataclass, presets, the interface, and helpers.

Every baseline reads and writes token ids of the project tokenizer, trains on
:class:`yan.batch.Seq2SeqBatch`, and generates with oracle target lengths (sec. 5.1, App. B.4).
The autoregressive ones (GPT-2, BART) need one extra token that the project vocabulary does not
have: a separator / start-of-target token, given the id ``vocab_size`` (an extra embedding row).
Generated ids are always real vocabulary tokens: padding, ``<|mask|>`` and the separator are
suppressed in every sampling step.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from yan.batch import Seq2SeqBatch, aligned_source_ids

BASELINES = ("gpt2", "bart", "masked-diffusion")
PRESET_NAMES = ("paper", "small", "tiny")


@dataclass
class BaselineConfig:
    """Architecture of one baseline; stored as JSON next to the weights.

    Attributes:
        name: one of :data:`BASELINES`.
        vocab_size: size of the project vocabulary (incl. ``<|padding|>`` and ``<|mask|>``).
        pad_id, mask_id: ids of those two special tokens.
        max_len: longest sequence a model sees: source + separator + target for GPT-2 and
            masked diffusion, the longer of (separator + source) and target for BART.
        d_model, n_layers, n_heads, d_ff: width, depth, heads, MLP width. BART splits
            ``n_layers`` evenly between encoder and decoder (BART-base is 6 + 6 = 12).
        dropout: dropout probability in training.
        aligned_positions: when True (the default), the target segment's positions restart at
            0 -- target token ``j`` gets position ``j``, the position of the source token it is
            aligned with in copy / infilling -- and a learned segment embedding (2 rows: source
            / target; for GPT-2 the ``<sep>`` and target tokens are "target") tells the two
            segments apart. False keeps one continuous position count over ``[source,
            target]`` (the previous behaviour): there target ``j`` sits at ``Ls + j`` with
            ``Ls`` varying per row, and learning "attend to the source token at my own offset"
            from learned absolute positions took far more steps than the CPU budget (5% copy
            accuracy after 500 steps at the ``small`` preset). Checkpoints saved before this
            field existed load with False (:func:`yan.baselines.load_baseline`). BART ignores
            it: its decoder already reaches the source through cross-attention.
        conv_kernel: masked diffusion only: a depthwise convolution of this odd width over
            positions added to every block's self-attention, the same local mixing as
            ``YANConfig.conv_kernel`` so the two non-autoregressive models compare like for
            like; 0 is the plain Transformer. Checkpoints saved before this field existed load
            with 0. GPT-2 and BART (Hugging Face models) ignore it.
        keep_source: for aligned tasks (copy, infilling: the target is the source with its
            ``<|mask|>`` positions filled in) keep every visible source token and predict only
            the masked positions, the baselines' counterpart of YAN's source-bridge start
            (``YANConfig.flow_start = "source"``). Masked diffusion then denoises from the
            source itself, as masked-diffusion LMs infill (known tokens clamped, the model
            reads the one aligned sequence, no second copy of it), and trains on extra random
            masks of that sequence; GPT-2 and BART are forced to emit the visible source
            tokens while decoding. Without it (default; unaligned tasks) every target token is
            generated and copying must be learnt first: masked diffusion and GPT-2 of the
            ``small`` preset stayed at ~5% token accuracy on copy after 500 steps.
    """

    name: str
    vocab_size: int
    pad_id: int
    mask_id: int
    max_len: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    dropout: float = 0.0
    aligned_positions: bool = True
    conv_kernel: int = 3
    keep_source: bool = False

    def __post_init__(self) -> None:
        if self.name not in BASELINES:
            raise ValueError(f"unknown baseline {self.name!r}; expected one of {BASELINES}")
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size must be >= 3, got {self.vocab_size}")
        for field in ("pad_id", "mask_id"):
            value = getattr(self, field)
            if not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"{field}={value} is outside the vocabulary [0, {self.vocab_size})"
                )
        if self.pad_id == self.mask_id:
            raise ValueError(f"pad_id and mask_id must differ, both are {self.pad_id}")
        for field in ("max_len", "d_model", "n_layers", "n_heads", "d_ff"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.name == "bart" and self.n_layers % 2:
            raise ValueError(
                f"bart splits n_layers between encoder and decoder; got odd {self.n_layers}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if (
            isinstance(self.conv_kernel, bool)
            or not isinstance(self.conv_kernel, int)
            or self.conv_kernel < 0
            or (self.conv_kernel and self.conv_kernel % 2 == 0)
        ):
            raise ValueError(
                f"conv_kernel must be 0 (off) or an odd width >= 1, got {self.conv_kernel!r}"
            )
        for flag in ("aligned_positions", "keep_source"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be a bool, got {getattr(self, flag)!r}")

    @property
    def sep_id(self) -> int:
        """The extra separator / start-of-target token of the autoregressive baselines."""
        return self.vocab_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Architecture per (preset, baseline). `paper` matches the paper's model sizes (Table 1: GPT-2
# 124M, BART 139M; the LLaDA stand-in is ~200M, YAN's scale, since an 8B model is out of reach);
# `small` matches the YAN `small` preset (d=256, 4 blocks); `tiny` is for tests.
_ARCH: dict[tuple[str, str], dict] = {
    ("paper", "gpt2"): dict(d_model=768, n_layers=12, n_heads=12, d_ff=3072, dropout=0.1),
    ("paper", "bart"): dict(d_model=768, n_layers=12, n_heads=12, d_ff=3072, dropout=0.1),
    ("paper", "masked-diffusion"): dict(d_model=1024, n_layers=12, n_heads=16, d_ff=4096),
    ("small", "gpt2"): dict(d_model=256, n_layers=4, n_heads=4, d_ff=1024, dropout=0.1),
    ("small", "bart"): dict(d_model=256, n_layers=4, n_heads=4, d_ff=1024, dropout=0.1),
    ("small", "masked-diffusion"): dict(d_model=256, n_layers=4, n_heads=4, d_ff=1024),
    ("tiny", "gpt2"): dict(d_model=64, n_layers=2, n_heads=2, d_ff=256),
    ("tiny", "bart"): dict(d_model=64, n_layers=2, n_heads=2, d_ff=256),
    ("tiny", "masked-diffusion"): dict(d_model=64, n_layers=2, n_heads=2, d_ff=256),
}


def preset_config(
    name: str, preset: str, *, vocab_size: int, pad_id: int, mask_id: int, max_len: int
) -> BaselineConfig:
    """The :class:`BaselineConfig` of baseline ``name`` at size ``preset`` (see :data:`PRESET_NAMES`)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; expected one of {PRESET_NAMES}")
    sizes = _ARCH[preset, name]
    return BaselineConfig(name, vocab_size, pad_id, mask_id, max_len, **sizes)


class Baseline(nn.Module, ABC):
    """The interface all baselines share: a training loss, oracle-length generation, and
    closed-set scoring of candidate targets."""

    config: BaselineConfig

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config

    @abstractmethod
    def loss(self, batch: Seq2SeqBatch) -> Tensor:
        """Scalar training loss on one batch."""

    @abstractmethod
    def generate(self, src: Tensor, src_mask: Tensor, tgt_len: int | Tensor, **kw) -> Tensor:
        """Greedy ``(B, Lt)`` target ids of the oracle length(s); see :func:`target_lengths`."""

    @torch.inference_mode()
    def choice_scores(self, src: Tensor, src_mask: Tensor, choices: Tensor) -> Tensor:
        """(B, C) log-probability of each candidate target (rows of `choices`, (C, Lc) long, all of
        one length, pad_id counts as a real target token) given each source.

        Rank classification: the predicted label of row ``b`` is ``scores[b].argmax()``, which
        is always one of the candidates, unlike free greedy generation. Probabilities are
        normalised over the project vocabulary ``[0, vocab_size)`` (the autoregressive
        baselines' ``<sep>`` is left out), so the probabilities of all ``vocab_size ** Lc``
        candidates of one length sum to 1 (masked diffusion scores a factorised
        pseudo-likelihood; see its :meth:`_score_choices`). Nothing is suppressed:
        ``<|padding|>`` is part of a padded label. The model is scored in eval mode (no
        dropout) and left in the mode it was in.

        Raises:
            ValueError: ``src`` / ``src_mask`` are not matching ``(B, Ls)`` long / bool, or
                ``choices`` is not a non-empty ``(C, Lc)`` long tensor (:func:`check_choices`),
                or any id is outside the vocabulary, or source + candidate exceed ``max_len``.
        """
        check_src(src, src_mask)
        check_ids(src[src_mask], self.config.vocab_size, "src")
        check_choices(choices, self.config.vocab_size)
        device, was_training = self.device, self.training
        self.eval()
        try:
            return self._score_choices(src.to(device), src_mask.to(device), choices.to(device))
        finally:
            self.train(was_training)

    @abstractmethod
    def _score_choices(self, src: Tensor, src_mask: Tensor, choices: Tensor) -> Tensor:
        """:meth:`choice_scores` on validated inputs on the model's device, in eval mode."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- the generation protocol (yan.generation.GenerationModel) ----
    uses_steps = False  # greedy autoregressive decoding: one pass per token, no T

    @classmethod
    @abstractmethod
    def positions(cls, src_len: int, tgt_len: int) -> int:
        """Positions a source of ``src_len`` and a target of ``tgt_len`` tokens take in the
        model's layout (what ``config.max_len`` must hold)."""

    def supports(self, src_len: int, tgt_len: int) -> bool:
        return self.positions(src_len, tgt_len) <= self.config.max_len

    @property
    def max_source_len(self) -> int:
        """The longest ``L`` with :meth:`supports` ``(L, L)`` (positions grow with ``L``)."""
        n = self.config.max_len
        while n > 0 and not self.supports(n, n):
            n -= 1
        return n

    def max_steps(self, tgt_len: int) -> int | None:
        return None

    def generate_ids(
        self,
        src: Tensor,
        src_mask: Tensor,
        lengths: Tensor,
        *,
        steps: int | None = None,
        seed: int = 0,
        pad_id: int | None = None,
        **options: Any,
    ) -> Tensor:
        """:meth:`generate` (greedy, so ``seed`` is not needed); ``steps`` reaches the models
        that :attr:`uses_steps`. ``options`` are YAN's decoding options (``routing``,
        ``keep_visible``, ...), which a baseline does not have and ignores: its counterpart of
        ``keep_visible`` is ``config.keep_source``."""
        tokens = self._generate_ids(src, src_mask, lengths, steps)
        if pad_id is None or pad_id == self.config.pad_id:
            return tokens
        return tokens.masked_fill(~length_mask(lengths.to(tokens.device), tokens.shape[1]), pad_id)

    def _generate_ids(self, src: Tensor, src_mask: Tensor, lengths: Tensor, steps: int | None):
        return self.generate(src, src_mask, lengths)

    def score_choices(
        self, src: Tensor, src_mask: Tensor, choices: Tensor, **ignored: Any
    ) -> Tensor:
        """:meth:`choice_scores`; the protocol's ``steps`` and ``seed`` and YAN's options are
        ignored (the scores are exact, or for masked diffusion one all-mask pass)."""
        return self.choice_scores(src, src_mask, choices)

    def source_to_keep(self, src: Tensor, src_mask: Tensor, width: int) -> Tensor | None:
        """With ``keep_source``: the aligned source ids the decoder must emit (``mask_id``
        where it is free to choose), for autoregressive decoding; ``None`` otherwise."""
        if not self.config.keep_source:
            return None
        return aligned_source_ids(src, src_mask, width, self.config.mask_id)

    def keep_visible(self, token: Tensor, kept: Tensor | None, j: int) -> Tensor:
        """Decoded ``(B, 1)`` tokens at target position ``j``, with the visible source tokens
        of :meth:`source_to_keep` in place of the model's choice."""
        if kept is None:
            return token
        keep = kept[:, j : j + 1]
        return torch.where(keep != self.config.mask_id, keep, token)

    def suppress_special(self, logits: Tensor) -> Tensor:
        """Set the logits of padding, ``<|mask|>`` and any ids past the vocabulary to ``-inf``."""
        cfg = self.config
        logits = logits.clone()
        logits[..., [cfg.pad_id, cfg.mask_id]] = float("-inf")
        logits[..., cfg.vocab_size :] = float("-inf")
        return logits


class GreedyBaseline(Baseline):
    """An autoregressive baseline (GPT-2, BART): greedy decoding, one pass per token."""

    @torch.inference_mode()
    def generate(self, src: Tensor, src_mask: Tensor, tgt_len: int | Tensor, **kw) -> Tensor:
        """Greedy decoding with a KV cache for exactly ``tgt_len`` tokens per row.

        Returns ``(B, max(tgt_len))`` ids; with per-row lengths, positions past a row's length
        hold ``pad_id``. Padding, ``<|mask|>`` and ``<sep>`` are never generated.
        """
        if kw:
            raise ValueError(
                f"{self.config.name} generate takes no extra options, got {sorted(kw)}"
            )
        return self._greedy(src.to(self.device), src_mask.to(self.device), tgt_len)

    @abstractmethod
    def _greedy(self, src: Tensor, src_mask: Tensor, tgt_len: int | Tensor) -> Tensor:
        """:meth:`generate` for sources already on the model's device."""

    def _decode(
        self, next_logits: Callable[[Tensor | None], Tensor], lengths: Tensor, kept: Tensor | None
    ) -> Tensor:
        """The greedy loop of every autoregressive baseline: ``next_logits(token)`` feeds the
        model the token chosen last (``None`` before the first) and returns the logits
        ``(B, V)`` of the next target position; the next token is their argmax over the ids
        that may be generated, a visible source token where :meth:`source_to_keep` holds one.
        Returns ``(B, max(lengths))`` ids, ``pad_id`` past each row's length."""
        out: list[Tensor] = []
        token = None
        for j in range(int(lengths.max())):
            logits = next_logits(token)
            token = self.keep_visible(
                self.suppress_special(logits).argmax(-1, keepdim=True), kept, j
            )
            out.append(token)
        tokens = torch.cat(out, 1)
        return tokens.masked_fill(~length_mask(lengths, tokens.shape[1]), self.config.pad_id)


def check_src(src: Tensor, src_mask: Tensor) -> None:
    """Raise ``ValueError`` unless ``src`` / ``src_mask`` are matching ``(B, Ls)`` long / bool."""
    if src.ndim != 2 or src.shape != src_mask.shape:
        raise ValueError(
            f"src and src_mask must both be (B, Ls), got {tuple(src.shape)} and {tuple(src_mask.shape)}"
        )
    if src.dtype != torch.long or src_mask.dtype != torch.bool:
        raise ValueError(
            f"src must be long and src_mask bool, got {src.dtype} and {src_mask.dtype}"
        )


def check_ids(ids: Tensor, vocab_size: int, name: str) -> None:
    """Raise ``ValueError`` if any id lies outside ``[0, vocab_size)``."""
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"{name} holds ids outside [0, {vocab_size}): min {int(ids.min())}, max {int(ids.max())}"
        )


def check_batch(batch: Seq2SeqBatch, vocab_size: int) -> None:
    """Validate a training batch: shapes, dtypes, ids in range, at least one target token."""
    check_src(batch.src, batch.src_mask)
    if batch.tgt.dtype != torch.long or batch.tgt_mask.dtype != torch.bool:
        raise ValueError(
            f"tgt must be long and tgt_mask bool, got {batch.tgt.dtype} and {batch.tgt_mask.dtype}"
        )
    if not batch.tgt_mask.any():
        raise ValueError("batch has no real target token: nothing to train on")
    check_ids(batch.src[batch.src_mask], vocab_size, "src")
    check_ids(batch.tgt[batch.tgt_mask], vocab_size, "tgt")


def check_choices(choices: Tensor, vocab_size: int) -> None:
    """Raise ``ValueError`` unless ``choices`` is a non-empty ``(C, Lc)`` long tensor of ids."""
    if not isinstance(choices, Tensor) or choices.dtype != torch.long:
        kind = choices.dtype if isinstance(choices, Tensor) else type(choices).__name__
        raise ValueError(f"choices must be a long tensor, got {kind}")
    if choices.ndim != 2:
        raise ValueError(
            f"choices must be (C, Lc): one candidate target per row, got {tuple(choices.shape)}"
        )
    if choices.shape[0] == 0 or choices.shape[1] == 0:
        raise ValueError(f"choices is empty: shape {tuple(choices.shape)}, need C >= 1, Lc >= 1")
    check_ids(choices, vocab_size, "choices")


def target_lengths(tgt_len: int | Tensor, batch_size: int, device: torch.device) -> Tensor:
    """Oracle target lengths as a ``(B,)`` long tensor.

    ``tgt_len`` is one int for the whole batch or a ``(B,)`` tensor of per-row lengths; the
    output of ``generate`` has ``max(tgt_len)`` columns and rows shorter than that are padded
    with ``pad_id`` on the right (the :class:`Seq2SeqBatch` layout).
    """
    if isinstance(tgt_len, Tensor):
        if tgt_len.shape != (batch_size,):
            raise ValueError(
                f"tgt_len tensor must have shape ({batch_size},), got {tuple(tgt_len.shape)}"
            )
        lengths = tgt_len.to(device=device, dtype=torch.long)
    elif isinstance(tgt_len, int) and not isinstance(tgt_len, bool):
        lengths = torch.full((batch_size,), tgt_len, dtype=torch.long, device=device)
    else:
        raise ValueError(f"tgt_len must be an int or a (B,) tensor, got {type(tgt_len).__name__}")
    if batch_size == 0:
        raise ValueError("generate got an empty batch (B = 0)")
    if int(lengths.min()) < 0 or int(lengths.max()) < 1:
        raise ValueError(f"tgt_len must be >= 0 per row and >= 1 somewhere, got {lengths.tolist()}")
    return lengths


def length_mask(lengths: Tensor, width: int) -> Tensor:
    """``(B, width)`` bool mask, True at positions ``< lengths[b]``."""
    return torch.arange(width, device=lengths.device) < lengths[:, None]


def left_pad(ids: Tensor, mask: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Move each row's real tokens (``mask`` True, in order) to the right end of the row.

    Prompts must end at the same column so that every row's next token is appended in the
    same place during batched greedy decoding.
    """
    order = torch.argsort(mask.int(), dim=1, stable=True)  # pads first, real tokens keep order
    new_mask = torch.gather(mask, 1, order)
    return torch.where(new_mask, torch.gather(ids, 1, order), pad_id), new_mask


def right_pad(ids: Tensor, mask: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Move each row's real tokens (in order) to the left end of the row."""
    order = torch.argsort((~mask).int(), dim=1, stable=True)
    new_mask = torch.gather(mask, 1, order)
    return torch.where(new_mask, torch.gather(ids, 1, order), pad_id), new_mask


def position_ids(mask: Tensor) -> Tensor:
    """Positions that count only real tokens, so padding anywhere never shifts them."""
    return (mask.long().cumsum(1) - 1).clamp(min=0)


def masked_mean_ce(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy averaged over the positions where ``mask`` is True."""
    ce = nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), reduction="none"
    )
    mask = mask.flatten().float()
    return (ce * mask).sum() / mask.sum().clamp(min=1.0)
