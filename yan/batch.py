"""The one batch format every YAN model, baseline and trainer consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Seq2SeqBatch:
    """A right-padded batch of (source, target) token ids.

    Masks are ``True`` at real tokens and ``False`` at padding. For pure autoencoding
    (stage 1) the source may be empty (``src.shape[1] == 0``); the target is the text.
    """

    src: torch.Tensor  # (B, Ls) long
    src_mask: torch.Tensor  # (B, Ls) bool
    tgt: torch.Tensor  # (B, Lt) long
    tgt_mask: torch.Tensor  # (B, Lt) bool

    def __post_init__(self) -> None:
        if self.src.shape != self.src_mask.shape or self.tgt.shape != self.tgt_mask.shape:
            raise ValueError(
                "Seq2SeqBatch: ids and masks must have equal shapes, got "
                f"src {tuple(self.src.shape)} / src_mask {tuple(self.src_mask.shape)}, "
                f"tgt {tuple(self.tgt.shape)} / tgt_mask {tuple(self.tgt_mask.shape)}"
            )
        if self.src.shape[0] != self.tgt.shape[0]:
            raise ValueError(
                f"Seq2SeqBatch: batch sizes differ (src {self.src.shape[0]}, tgt {self.tgt.shape[0]})"
            )

    def to(self, device: torch.device | str) -> Seq2SeqBatch:
        return Seq2SeqBatch(
            *(x.to(device) for x in (self.src, self.src_mask, self.tgt, self.tgt_mask))
        )

    @property
    def num_tokens(self) -> int:
        return int(self.src_mask.sum() + self.tgt_mask.sum())


def aligned_source_ids(
    src: torch.Tensor, src_mask: torch.Tensor, width: int, mask_id: int
) -> torch.Tensor:
    """``(B, width)`` source ids at the target positions of an aligned task (copy, infilling:
    target token ``l`` is source token ``l`` unless the source masked it): source token ``l``
    at position ``l``, ``mask_id`` where the source is masked, padded or shorter."""
    out = src.new_full((src.shape[0], width), mask_id)
    n = min(width, src.shape[1])
    out[:, :n] = torch.where(src_mask[:, :n], src[:, :n], mask_id)
    return out
