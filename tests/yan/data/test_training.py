"""yan.data.training: the infilling framing of text batches, the BPE size and the streamed
sources of a training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from yan.batch import Seq2SeqBatch
from yan.data.tasks import InfillConfig
from yan.data.training import MIN_BPE_VOCAB, bpe_vocab_size, mask_batch, streamed_sources
from yan.train_args import TrainArgs


def test_mask_batch_masks_only_real_tokens():
    tgt = torch.arange(1, 41).reshape(2, 20)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 12:] = False
    batch = mask_batch(
        Seq2SeqBatch(tgt, mask, tgt, mask), 99, np.random.default_rng(0), InfillConfig()
    )
    masked = batch.src == 99
    assert masked.any(1).all() and not (masked & ~mask).any()
    assert torch.equal(batch.src[~masked], tgt[~masked]) and torch.equal(batch.tgt, tgt)


def test_bpe_vocab_size_is_the_requested_one_but_never_below_the_byte_alphabet():
    args = TrainArgs(out="o", data="d", preset="tiny")
    assert bpe_vocab_size(args) == MIN_BPE_VOCAB  # tiny asks for 64 ids: all bytes
    args.overrides = {"vocab_size": 4000}
    assert bpe_vocab_size(args) == 4000
    args.overrides = {"vocab_size": "many"}
    with pytest.raises(ValueError, match="vocab_size must be an integer"):
        bpe_vocab_size(args)


def test_streamed_sources_only_for_pretraining_text():
    assert streamed_sources(TrainArgs(out="o", data="corpus.txt")) is None
    both = TrainArgs(out="o", data="finewiki, fineweb-edu", stage="2")
    assert streamed_sources(both) == ["finewiki", "fineweb-edu"]
    with pytest.raises(ValueError, match="several comma-separated sources"):
        streamed_sources(TrainArgs(out="o", data="a.txt,b.txt"))
    with pytest.raises(ValueError, match="--task must be pretrain or infill"):
        streamed_sources(TrainArgs(out="o", data="x", stream=True, stage="finetune", task="qa"))
