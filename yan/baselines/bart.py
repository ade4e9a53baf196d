"""BART baseline (Lewis et al., 2020): source to the encoder, target from the decoder (App. B.4).

BART treats source and target the way YAN does. The encoder reads ``[<sep>, source...]`` (the
``<s>`` of BART's own format, which also keeps an empty source well defined); the decoder starts
from ``<sep>`` and is trained with teacher forcing. Generation is greedy with a KV cache for
exactly the oracle number of target tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from yan.baselines.common import (
    BaselineConfig,
    GreedyBaseline,
    check_batch,
    check_ids,
    check_src,
    masked_mean_ce,
    right_pad,
    target_lengths,
)
from yan.baselines.hf_cache import cache_kwarg, new_cache
from yan.batch import Seq2SeqBatch


class BartBaseline(GreedyBaseline):
    """``transformers.BartForConditionalGeneration`` trained from scratch.

    ``n_layers`` is split evenly: BART-base is 6 encoder + 6 decoder layers. The shared
    embedding has ``vocab_size + 1`` rows; the last is ``<sep>``. ``config.aligned_positions``
    changes nothing here: the decoder reaches the source through cross-attention.
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        from transformers import BartConfig, BartForConditionalGeneration

        half = config.n_layers // 2
        hf = BartConfig(
            vocab_size=config.vocab_size + 1,
            max_position_embeddings=config.max_len,
            d_model=config.d_model,
            encoder_layers=half,
            decoder_layers=half,
            encoder_attention_heads=config.n_heads,
            decoder_attention_heads=config.n_heads,
            encoder_ffn_dim=config.d_ff,
            decoder_ffn_dim=config.d_ff,
            dropout=config.dropout,
            attention_dropout=0.0,  # BART-base values
            activation_dropout=0.0,
            pad_token_id=config.pad_id,
            bos_token_id=config.sep_id,
            eos_token_id=config.sep_id,
            decoder_start_token_id=config.sep_id,
            forced_bos_token_id=None,
            forced_eos_token_id=None,
        )
        self.seq2seq = BartForConditionalGeneration(hf)
        self._cache_kw = cache_kwarg(self.seq2seq)

    @classmethod
    def positions(cls, src_len: int, tgt_len: int) -> int:
        return max(src_len + 1, tgt_len)  # encoder [<sep>, source], decoder the target

    def _encoder_input(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``[<sep>, source...]``, right-padded and trimmed to the longest real row."""
        check_src(src, src_mask)
        check_ids(src[src_mask], self.config.vocab_size, "src")
        # BART's positions are column indices, so real tokens must start at column 0.
        ids, mask = right_pad(src, src_mask, self.config.pad_id)
        width = int(mask.sum(1).max()) if mask.numel() else 0
        ids, mask = ids[:, :width], mask[:, :width]
        sep = ids.new_full((ids.shape[0], 1), self.config.sep_id)
        ids = torch.cat([sep, ids], 1)
        mask = torch.cat([torch.ones_like(sep, dtype=torch.bool), mask], 1)
        if ids.shape[1] > self.config.max_len:
            raise ValueError(
                f"<sep> + source is {ids.shape[1]} tokens, more than max_len={self.config.max_len}"
            )
        return ids, mask

    def _check_target(self, length: int) -> None:
        if length > self.config.max_len:
            raise ValueError(f"target is {length} tokens, more than max_len={self.config.max_len}")

    def loss(self, batch: Seq2SeqBatch) -> Tensor:
        """Mean teacher-forced cross-entropy over the real target tokens."""
        check_batch(batch, self.config.vocab_size)
        enc_ids, enc_mask = self._encoder_input(batch.src, batch.src_mask)
        self._check_target(batch.tgt.shape[1])
        start = torch.full_like(batch.tgt[:, :1], self.config.sep_id)
        dec_ids = torch.cat([start, batch.tgt[:, :-1]], 1)
        dec_mask = torch.cat([torch.ones_like(batch.tgt_mask[:, :1]), batch.tgt_mask[:, :-1]], 1)
        logits = self.seq2seq(
            input_ids=enc_ids,
            attention_mask=enc_mask,
            decoder_input_ids=dec_ids,
            decoder_attention_mask=dec_mask,
            use_cache=False,
        ).logits
        return masked_mean_ce(logits, batch.tgt, batch.tgt_mask)

    def _greedy(self, src: Tensor, src_mask: Tensor, tgt_len: int | Tensor) -> Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        enc_ids, enc_mask = self._encoder_input(src, src_mask)
        lengths = target_lengths(tgt_len, enc_ids.shape[0], enc_ids.device)
        kept = self.source_to_keep(src, src_mask, int(lengths.max()))
        self._check_target(int(lengths.max()))
        encoded = BaseModelOutput(
            last_hidden_state=self.seq2seq.get_encoder()(
                input_ids=enc_ids, attention_mask=enc_mask
            ).last_hidden_state
        )
        cache = new_cache(encoder_decoder=True)
        start = torch.full_like(enc_ids[:, :1], self.config.sep_id)

        def next_logits(token: Tensor | None) -> Tensor:
            return self.seq2seq(
                encoder_outputs=encoded,
                attention_mask=enc_mask,
                decoder_input_ids=start if token is None else token,
                use_cache=True,
                **{self._cache_kw: cache},
            ).logits[:, -1]

        return self._decode(next_logits, lengths, kept)

    def _score_choices(self, src: Tensor, src_mask: Tensor, choices: Tensor) -> Tensor:
        """(B, C) log-probability of each candidate target: teacher-forced sum of log-softmax.

        The source is encoded once; its states are repeated for the ``C`` candidates and the
        decoder scores all ``B * C`` (source, candidate) pairs in one pass. The softmax runs
        over the project vocabulary (``<sep>`` left out); ``<|padding|>`` is a real target
        token here and is not suppressed.
        """
        from transformers.modeling_outputs import BaseModelOutput

        enc_ids, enc_mask = self._encoder_input(src, src_mask)
        b, (c, length) = enc_ids.shape[0], choices.shape
        self._check_target(length)
        states = self.seq2seq.get_encoder()(input_ids=enc_ids, attention_mask=enc_mask)
        encoded = BaseModelOutput(
            last_hidden_state=states.last_hidden_state.repeat_interleave(c, 0)
        )
        tgt = choices.repeat(b, 1)  # row b * C + c is candidate c of source b
        start = torch.full_like(tgt[:, :1], self.config.sep_id)
        logits = self.seq2seq(
            encoder_outputs=encoded,
            attention_mask=enc_mask.repeat_interleave(c, 0),
            decoder_input_ids=torch.cat([start, tgt[:, :-1]], 1),
            use_cache=False,
        ).logits
        logp = logits[..., : self.config.vocab_size].float().log_softmax(-1)
        return logp.gather(2, tgt[..., None]).squeeze(2).sum(1).view(b, c)
