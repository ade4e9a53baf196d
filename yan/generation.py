"""One generation interface for YAN and every baseline, and the one batched loop that feeds it.

:class:`GenerationModel` is to generation what :class:`moefm.models.MoEField` is to sampling: a
small protocol that unrelated models implement, so that evaluation, the benchmarks and the CLI
never ask "which kind of model is this?" with a string. A caller asks the model instead:

- :meth:`~GenerationModel.generate_ids` maps a right-padded batch of sources and one oracle
  target length per row to ``(B, max(lengths))`` target ids, padded past each length;
- :attr:`~GenerationModel.uses_steps` says whether ``steps`` (T) changes the result (YAN's
  Euler steps, masked diffusion's denoising steps) or is ignored (greedy autoregressive
  decoding takes one pass per token);
- :meth:`~GenerationModel.max_steps` bounds T for a target length (masked diffusion unmasks
  at least one token per step), :meth:`~GenerationModel.supports` and
  :attr:`~GenerationModel.max_source_len` say which lengths fit the model's positions;
- :meth:`~GenerationModel.score_choices` ranks candidate targets (rank classification).

:func:`source_batches` pads id lists into batches (numbered, so that batch ``n`` draws its
noise from ``seed + n``) and :func:`generate_batched` runs any such model over them: the one
loop behind ``yan eval``, ``yan generate`` and :meth:`yan.model.YAN.generate_text`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from yan.tokenizer import pad_batch


@runtime_checkable
class GenerationModel(Protocol):
    """A model that maps a batch of sources to target ids (oracle lengths, greedy decoding).

    Implemented by :class:`yan.model.YAN` and :class:`yan.baselines.Baseline` (GPT-2, BART,
    masked diffusion). ``"T steps"`` is the model's own unit: Euler steps for YAN (T field
    evaluations), denoising passes for masked diffusion; the autoregressive models ignore it.
    """

    @property
    def uses_steps(self) -> bool:
        """Whether ``steps`` changes the generation (one result row per T in ``yan eval``)."""
        ...

    @property
    def max_source_len(self) -> int:
        """The longest ``L`` such that a source and a target of ``L`` tokens each fit."""
        ...

    def supports(self, src_len: int, tgt_len: int) -> bool:
        """Whether a source of ``src_len`` and a target of ``tgt_len`` tokens fit the model."""
        ...

    def max_steps(self, tgt_len: int) -> int | None:
        """The most steps T a target of ``tgt_len`` tokens takes; ``None``: no bound."""
        ...

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
        """``(B, max(lengths))`` long target ids for right-padded ``(B, Ls)`` sources.

        Args:
            src, src_mask: source ids and their mask (True at real tokens).
            lengths: ``(B,)`` oracle target lengths.
            steps: T for a model that :attr:`uses_steps`; ``None`` is the model's default
                (masked diffusion: one token per step; YAN has none and refuses it).
            seed: seeds the model's noise (YAN: z0 and the expert draws); greedy models
                are deterministic and ignore it.
            pad_id: written past each row's length; ``None``: the model's own padding id.
            **options: YAN's decoding options (``routing``, ``keep_visible``, ``solver``,
                ``temperature``; YAN refuses others); the baselines have no counterpart and
                ignore them.
        """
        ...

    def score_choices(
        self,
        src: Tensor,
        src_mask: Tensor,
        choices: Tensor,
        *,
        steps: int | None = None,
        seed: int = 0,
        **options: Any,
    ) -> Tensor:
        """``(B, C)`` log-scores of the candidate targets ``choices`` ``(C, Lc)`` per source."""
        ...


class TextTokenizer(Protocol):
    """What :meth:`yan.model.YAN.generate_text` needs from a tokenizer (``yan.tokenizer.YanTokenizer``)."""

    pad_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


@dataclass
class Generation:
    """The output of :meth:`yan.model.YAN.generate`.

    Attributes:
        tokens: ``(B, Lt)`` token ids, ``pad_id`` at padding.
        mask: ``(B, Lt)`` True at generated tokens.
        lengths: ``(B,)`` target lengths (oracle or predicted).
        experts: the expert chosen per token (frozen/argmax routing), ``(B, Lt)``; see
            :class:`moefm.sampling.SampleResult` for the other routings.
        nfe: number of trunk evaluations (T for Euler).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    experts: torch.Tensor | None
    nfe: int


@dataclass
class SourceBatch:
    """One padded batch of sources.

    Attributes:
        index: the batch's number (0, 1, ...); generation seeds batch ``n`` with ``seed + n``.
        rows: the positions of its sources in the input list.
        src: ``(B, Ls)`` right-padded ids (``Ls``: the batch's longest source).
        src_mask: ``(B, Ls)`` True at real tokens.
    """

    index: int
    rows: range
    src: Tensor
    src_mask: Tensor


def source_batches(
    sources: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    device: str | torch.device | None = None,
) -> Iterator[SourceBatch]:
    """Consecutive batches of ``batch_size`` sources, each right-padded to its longest row.

    The batches, and so every seeded generation, depend on ``batch_size``: a row's noise is
    drawn with the others of its batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    for index, first in enumerate(range(0, len(sources), batch_size)):
        rows = range(first, min(first + batch_size, len(sources)))
        src, src_mask = pad_batch([sources[i] for i in rows], pad_id)
        if device is not None:
            src, src_mask = src.to(device), src_mask.to(device)
        yield SourceBatch(index, rows, src, src_mask)


def generate_batched(
    model: GenerationModel,
    sources: Sequence[Sequence[int]],
    lengths: Sequence[int],
    *,
    pad_id: int,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    **options: Any,
) -> list[list[int]]:
    """Generated target ids per source, ``lengths[i]`` of them for source ``i``.

    Batch ``n`` is generated with seed ``seed + n`` (see :func:`source_batches`); ``steps``
    and ``options`` go to :meth:`GenerationModel.generate_ids` unchanged.
    """
    if len(lengths) != len(sources):
        raise ValueError(f"got {len(sources)} sources but {len(lengths)} target lengths")
    out: list[list[int]] = []
    for batch in source_batches(sources, pad_id, batch_size, device):
        want = torch.tensor([lengths[i] for i in batch.rows], device=batch.src.device)
        tokens = model.generate_ids(
            batch.src,
            batch.src_mask,
            want,
            steps=steps,
            seed=seed + batch.index,
            pad_id=pad_id,
            **options,
        )
        for row, n in zip(tokens.cpu(), want.tolist()):
            out.append(row[:n].tolist())
    return out


__all__ = [
    "Generation",
    "GenerationModel",
    "SourceBatch",
    "TextTokenizer",
    "generate_batched",
    "source_batches",
]
