"""Equal-budget baselines for YAN (sec. 5.1, App. B.4): GPT-2, BART and LLaDA-style masked diffusion.

All three read token ids of the project tokenizer, train on :class:`yan.batch.Seq2SeqBatch`,
decode greedily with oracle target lengths, and share one interface::

    model = build_baseline("bart", "small", vocab_size=V, pad_id=P, mask_id=M, max_len=512)
    losses = train_baseline(model, batches, steps=1000, lr=1e-4)
    ids = model.generate(src, src_mask, tgt_len=8)          # (B, 8)
    save_baseline(model, "runs/bart"); model = load_baseline("runs/bart")

``train_baseline`` is the single-process loop on in-memory batches; at scale a baseline trains
with YAN's own trainer (DDP, bf16, exact resume): ``yan train --model bart --stage 2 ...``, whose
output folder ``load_baseline`` reads.
"""

from yan.baselines.bart import BartBaseline
from yan.baselines.build import (
    baseline_class,
    build_baseline,
    build_from_config,
    count_parameters,
    load_baseline,
    save_baseline,
)
from yan.baselines.common import BASELINES, PRESET_NAMES, Baseline, BaselineConfig, preset_config
from yan.baselines.gpt2 import GPT2Baseline
from yan.baselines.masked_diffusion import MaskedDiffusionBaseline
from yan.baselines.train import train_baseline

__all__ = [
    "BASELINES",
    "PRESET_NAMES",
    "BartBaseline",
    "Baseline",
    "BaselineConfig",
    "GPT2Baseline",
    "MaskedDiffusionBaseline",
    "baseline_class",
    "build_baseline",
    "build_from_config",
    "count_parameters",
    "load_baseline",
    "preset_config",
    "save_baseline",
    "train_baseline",
]
