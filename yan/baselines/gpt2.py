"""GPT-2 baseline (Radford et al., 2019): decoder-only, source as a prefix of the target (App. B.4).

A row is ``[source..., <sep>, target...]``; the loss is next-token cross-entropy on the target
tokens only. Generation is greedy with a KV cache and produces exactly the oracle number of
target tokens. Prompts are left-padded and positions count real tokens only, so a row's output
does not depend on what else is in the batch.

Positions (``config.aligned_positions``): aligned, the source counts ``0 .. Ls - 1`` and the
target segment restarts at 0 with ``<sep>``, so the state that predicts target token ``j``
(``<sep>`` for ``j = 0``, else target ``j - 1``) sits at position ``j``, the position of source
token ``j``; a learned segment embedding (source / target, ``<sep>`` counts as target) is added
to the token embedding. Unaligned, positions run on continuously (``<sep>`` at ``Ls``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from yan.baselines.common import (
    BaselineConfig,
    GreedyBaseline,
    check_batch,
    check_ids,
    check_src,
    left_pad,
    masked_mean_ce,
    position_ids,
    target_lengths,
)
from yan.baselines.hf_cache import cache_kwarg, new_cache
from yan.batch import Seq2SeqBatch


class GPT2Baseline(GreedyBaseline):
    """``transformers.GPT2LMHeadModel`` trained from scratch (no pretrained weights ship offline).

    The embedding table has ``vocab_size + 1`` rows; the last is the separator ``<sep>``. In
    aligned mode the segment embedding ``seg_emb`` lives beside ``lm`` and the inputs reach
    the HF model as ``inputs_embeds``. Positions never exceed ``max_len - 1`` in either mode
    (source + ``<sep>`` + target must fit ``max_len``), so ``n_positions = max_len`` suffices.
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
        # Only in aligned mode, so checkpoints of the continuous layout load strictly.
        self.seg_emb = None
        if config.aligned_positions:
            self.seg_emb = nn.Embedding(2, config.d_model)
            nn.init.normal_(self.seg_emb.weight, std=hf.initializer_range)

    @classmethod
    def positions(cls, src_len: int, tgt_len: int) -> int:
        return src_len + 1 + tgt_len  # [source, <sep>, target]

    def _prompt(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Left-padded ``[source..., <sep>]`` and its mask."""
        check_src(src, src_mask)
        check_ids(src[src_mask], self.config.vocab_size, "src")
        ids, mask = left_pad(src, src_mask, self.config.pad_id)
        sep = ids.new_full((ids.shape[0], 1), self.config.sep_id)
        real = torch.ones_like(sep, dtype=torch.bool)
        return torch.cat([ids, sep], 1), torch.cat([mask, real], 1)

    def _layout(self, prompt_mask: Tensor, tgt_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Position ids and segments (0 source, 1 ``<sep>`` / target) of ``[prompt, target]``.

        ``prompt_mask`` is the mask of :meth:`_prompt` (its last column is ``<sep>``);
        ``tgt_mask`` may have zero columns (generation's prompt pass).
        """
        mask = torch.cat([prompt_mask, tgt_mask], 1)
        if self.seg_emb is None:
            return position_ids(mask), torch.zeros_like(mask, dtype=torch.long)
        lp = prompt_mask.shape[1]
        positions = torch.cat([position_ids(mask[:, : lp - 1]), position_ids(mask[:, lp - 1 :])], 1)
        segment = (torch.arange(mask.shape[1], device=mask.device) >= lp - 1).long()
        return positions, segment.expand_as(positions)

    def _embed(self, ids: Tensor, segment: Tensor) -> dict[str, Tensor]:
        """The HF model's token input: ``input_ids``, or token + segment ``inputs_embeds``."""
        if self.seg_emb is None:
            return {"input_ids": ids}
        return {"inputs_embeds": self.lm.transformer.wte(ids) + self.seg_emb(segment)}

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
        logits = self._target_logits(prompt, prompt_mask, batch.tgt, batch.tgt_mask)
        return masked_mean_ce(logits, batch.tgt, batch.tgt_mask)

    def _target_logits(
        self, prompt: Tensor, prompt_mask: Tensor, tgt: Tensor, tgt_mask: Tensor
    ) -> Tensor:
        """Teacher-forced ``(B, Lt, V + 1)`` logits: row ``j`` predicts target token ``j``."""
        ids = torch.cat([prompt, tgt], 1)
        mask = torch.cat([prompt_mask, tgt_mask], 1)
        positions, segment = self._layout(prompt_mask, tgt_mask)
        hidden = self.lm.transformer(
            **self._embed(ids, segment),
            attention_mask=mask,
            position_ids=positions,
            use_cache=False,
        ).last_hidden_state
        # The state at <sep> predicts target token 0, the state at target j predicts j + 1.
        lp, lt = prompt.shape[1], tgt.shape[1]
        return self.lm.lm_head(hidden[:, lp - 1 : lp - 1 + lt])

    def _greedy(self, src: Tensor, src_mask: Tensor, tgt_len: int | Tensor) -> Tensor:
        prompt, mask = self._prompt(src, src_mask)
        lengths = target_lengths(tgt_len, prompt.shape[0], prompt.device)
        kept = self.source_to_keep(src, src_mask, int(lengths.max()))
        self._check_length(mask, lengths)
        cache = new_cache()
        inputs = prompt
        positions, segment = self._layout(mask, mask[:, :0])

        def next_logits(token: Tensor | None) -> Tensor:
            nonlocal inputs, positions, segment, mask
            if token is not None:
                # Each new token continues the last segment (the target) at the next position.
                inputs, positions, segment = token, positions[:, -1:] + 1, segment[:, -1:]
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            return self.lm(
                **self._embed(inputs, segment),
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{self._cache_kw: cache},
            ).logits[:, -1]

        return self._decode(next_logits, lengths, kept)

    def _score_choices(self, src: Tensor, src_mask: Tensor, choices: Tensor) -> Tensor:
        """(B, C) log-probability of each candidate target: teacher-forced sum of log-softmax.

        Every (source, candidate) pair is one row of a single ``B * C``-row forward pass.
        The softmax runs over the project vocabulary (``<sep>`` left out); ``<|padding|>`` is
        a real target token here and is not suppressed.
        """
        prompt, prompt_mask = self._prompt(src, src_mask)
        b, (c, length) = prompt.shape[0], choices.shape
        self._check_length(prompt_mask, torch.full((b,), length, device=prompt.device))
        tgt = choices.repeat(b, 1)  # row b * C + c is candidate c of source b
        logits = self._target_logits(
            prompt.repeat_interleave(c, 0),
            prompt_mask.repeat_interleave(c, 0),
            tgt,
            torch.ones_like(tgt, dtype=torch.bool),
        )
        logp = logits[..., : self.config.vocab_size].float().log_softmax(-1)
        return logp.gather(2, tgt[..., None]).squeeze(2).sum(1).view(b, c)
