"""GPT-2 baseline (Radford et al., 2019): decoder-only, source as a prefix of the target (App. B.4).

A row is ``[source..., <sep>, target...]``; the loss is next-token cross-entropy on the target
tokens only. Generation is greedy with a KV cache and produces exactly the oracle number of
target tokens. Prompts are left-padded and positions count real tokens only, so a row's output
does not depend on what else is in the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from yan.baselines.common import (
    Baseline,
    BaselineConfig,
    check_batch,
    check_ids,
    check_src,
    left_pad,
    length_mask,
    masked_mean_ce,
    position_ids,
    target_lengths,
)
from yan.baselines.hf_cache import cache_kwarg, new_cache
from yan.batch import Seq2SeqBatch


class GPT2Baseline(Baseline):
    """``transformers.GPT2LMHeadModel`` trained from scratch (no pretrained weights ship offline).

    The embedding table has ``vocab_size + 1`` rows; the last is the separator ``<sep>``.
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        from transformers import GPT2Config, GPT2LMHeadModel

        hf = GPT2Config(
            vocab_size=config.vocab_size + 1,
            n_positions=config.max_len,
            n_embd=config.d_model,
            n_layer=config.n_layers,
            n_head=config.n_heads,
            n_inner=config.d_ff,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            bos_token_id=config.sep_id,
            eos_token_id=config.sep_id,
            pad_token_id=config.pad_id,
        )
        self.lm = GPT2LMHeadModel(hf)
        self._cache_kw = cache_kwarg(self.lm)

    def _prompt(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Left-padded ``[source..., <sep>]`` and its mask."""
        check_src(src, src_mask)
        check_ids(src[src_mask], self.config.vocab_size, "src")
        ids, mask = left_pad(src, src_mask, self.config.pad_id)
        sep = ids.new_full((ids.shape[0], 1), self.config.sep_id)
        real = torch.ones_like(sep, dtype=torch.bool)
        return torch.cat([ids, sep], 1), torch.cat([mask, real], 1)

    def _check_length(self, prompt_mask: Tensor, tgt_lengths: Tensor) -> None:
        longest = int((prompt_mask.sum(1) + tgt_lengths).max())
        if longest > self.config.max_len:
            raise ValueError(
                f"source + <sep> + target is {longest} tokens, more than max_len={self.config.max_len}"
            )

    def loss(self, batch: Seq2SeqBatch) -> Tensor:
        """Mean next-token cross-entropy over the real target tokens."""
        check_batch(batch, self.config.vocab_size)
        prompt, prompt_mask = self._prompt(batch.src, batch.src_mask)
        self._check_length(prompt_mask, batch.tgt_mask.sum(1))
        ids = torch.cat([prompt, batch.tgt], 1)
        mask = torch.cat([prompt_mask, batch.tgt_mask], 1)
        hidden = self.lm.transformer(
            input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False
        ).last_hidden_state
        # The state at <sep> predicts target token 0, the state at target j predicts j + 1.
        lp, lt = prompt.shape[1], batch.tgt.shape[1]
        logits = self.lm.lm_head(hidden[:, lp - 1 : lp - 1 + lt])
        return masked_mean_ce(logits, batch.tgt, batch.tgt_mask)

    @torch.inference_mode()
    def generate(self, src: Tensor, src_mask: Tensor, tgt_len: int | Tensor, **kw) -> Tensor:
        """Greedy decoding with a KV cache for exactly ``tgt_len`` tokens per row.

        Returns ``(B, max(tgt_len))`` ids; with per-row lengths, positions past a row's length
        hold ``pad_id``. Padding, ``<|mask|>`` and ``<sep>`` are never generated.
        """
        if kw:
            raise ValueError(f"gpt2 generate takes no extra options, got {sorted(kw)}")
        prompt, mask = self._prompt(src.to(self.device), src_mask.to(self.device))
        lengths = target_lengths(tgt_len, prompt.shape[0], prompt.device)
        self._check_length(mask, lengths)
        cache = new_cache()
        inputs, positions = prompt, position_ids(mask)
        out = []
        for _ in range(int(lengths.max())):
            logits = self.lm(
                input_ids=inputs,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{self._cache_kw: cache},
            ).logits[:, -1]
            token = self.suppress_special(logits).argmax(-1, keepdim=True)
            out.append(token)
            inputs, positions = token, positions[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        tokens = torch.cat(out, 1)
        return tokens.masked_fill(~length_mask(lengths, tokens.shape[1]), self.config.pad_id)
