"""CPU demo: train a small YAN on Wikipedia text and fill in masked words.

``python -m yan.demo --out outputs/yan-demo`` (what ``make demo`` runs) trains the ``small``
preset on ``wiki-mini`` (106 Wikipedia articles that ship with gensim) in both stages of sec. 4.2:

1. stage 1, the regularised autoencoder of eq. (8), on plain text;
2. stage 2, the MoE-FM latent flow of eq. (11), in the infilling framing (source = text with
   5-10% of its tokens masked in spans of 1-3, target = the full text, App. B.2);

then prints a few infilling examples from held-out articles (source with masks, generation,
reference) and the numbers: stage-1 reconstruction accuracy on held-out text, and stage-2 token
accuracy on the masked positions and over all positions (4 Euler steps, oracle length = source
length, greedy decoding). Everything is written to ``--out`` (``results.json``, loss curves).

Rerunning continues an interrupted stage and skips finished ones (``yan train --resume``).

Choices for a ~15 minute budget on 2 CPU cores (the paper trains for days on 8 GPUs): sequences
of at most 64 tokens of an 8k byte-level BPE trained on the corpus (the decoder's vocabulary
projection dominates the cost with the 128k LLaMA-3 vocabulary), batch 16, a higher learning rate
than the paper's 1e-4 with a short warm-up (few steps), 400 stage-1 and 800 stage-2 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from yan import data as yan_data
from yan.model import YAN
from yan.plot_run import plot_run
from yan.tokenizer import MASK_TOKEN, YanTokenizer
from yan.train import TrainArgs, train


def _train_stage(ns: argparse.Namespace, stage: str, out: Path, init: Path | None) -> float:
    """Train (or resume / skip) one stage; returns the seconds its training loop took."""
    result = train(
        TrainArgs(
            out=out,
            data=ns.data,
            stage=stage,
            preset=ns.preset,
            task="pretrain" if stage == "1" else "infill",
            max_steps=ns.stage1_steps if stage == "1" else ns.stage2_steps,
            init=init,
            resume=True,
            batch_size=ns.batch_size,
            lr=ns.lr,
            warmup=ns.warmup,
            max_len=ns.max_len,
            seed=ns.seed,
            eval_every=ns.eval_every,
            eval_batches=ns.eval_batches,
            save_every=ns.save_every,
            log_every=ns.log_every,
            progress=not ns.no_progress,
        )
    )
    return result.elapsed


@torch.no_grad()
def reconstruction_accuracy(model: YAN, batches: list[Any]) -> float:
    """Stage-1 accuracy: decode E_phi(y) without latent noise, fraction of tokens exactly right."""
    hits = total = 0
    for batch in batches:
        z = model.encode(batch.tgt, batch.tgt_mask)
        pred = model.decoder(z).argmax(-1)
        hits += int(((pred == batch.tgt) & batch.tgt_mask).sum())
        total += int(batch.tgt_mask.sum())
    return hits / max(total, 1)


@torch.no_grad()
def infill_accuracy(
    model: YAN, batches: list[Any], mask_id: int, steps: int, seed: int
) -> tuple[float, float, list[torch.Tensor]]:
    """Stage-2 token accuracy on masked positions and on all positions (oracle length)."""
    hit_m = n_m = hit_a = n_a = 0
    outputs = []
    for i, batch in enumerate(batches):
        lengths = batch.tgt_mask.sum(1)
        g = model.generate(batch.src, batch.src_mask, lengths, steps=steps, seed=seed + i)
        width = g.tokens.shape[1]
        tgt, mask = batch.tgt[:, :width], batch.tgt_mask[:, :width]
        masked = (batch.src[:, :width] == mask_id) & mask
        hit = (g.tokens == tgt) & mask
        hit_m, n_m = hit_m + int((hit & masked).sum()), n_m + int(masked.sum())
        hit_a, n_a = hit_a + int(hit.sum()), n_a + int(mask.sum())
        outputs.append(g.tokens)
    return hit_m / max(n_m, 1), hit_a / max(n_a, 1), outputs


def _show(tok: YanTokenizer, ids: list[int]) -> str:
    return tok.decode(ids, skip_special=False).replace("<|padding|>", "")


def run(ns: argparse.Namespace) -> dict[str, Any]:
    """Train both stages, evaluate on the held-out split, print and save the results."""
    if ns.threads:
        torch.set_num_threads(ns.threads)
    out = Path(ns.out)
    start = time.perf_counter()
    s1, s2 = out / "stage1", out / "stage2"
    print(f"== stage 1: regularised autoencoder (eq. 8), {ns.stage1_steps} steps -> {s1}")
    t1 = _train_stage(ns, "1", s1, None)
    print(f"== stage 2: MoE-FM latent flow (eq. 11), infilling, {ns.stage2_steps} steps -> {s2}")
    t2 = _train_stage(ns, "2", s2, s1)

    tok = YanTokenizer.load(s2)
    ae, flow = YAN.from_pretrained(s1), YAN.from_pretrained(s2)
    plain = yan_data.prepare(ns.data, "pretrain", tok, max_len=ns.max_len, seed=ns.seed)["test"]
    infill = yan_data.prepare(ns.data, "infill", tok, max_len=ns.max_len, seed=ns.seed)["test"]
    plain, infill = plain[: ns.eval_examples], infill[: ns.eval_examples]
    loader = yan_data.BatchIterator
    plain_b = list(loader(plain, 32, tok.pad_id, shuffle=False, infinite=False, bucket=False))
    infill_b = list(loader(infill, 32, tok.pad_id, shuffle=False, infinite=False, bucket=False))
    recon = reconstruction_accuracy(ae, plain_b)
    masked_acc, all_acc, outs = infill_accuracy(
        flow, infill_b, tok.mask_id, ns.sample_steps, ns.seed
    )

    print(f"\n== infilling examples (held-out articles, {ns.sample_steps} Euler steps)")
    for n in range(min(ns.examples, len(infill))):
        ex = infill[n]
        gen = outs[0][n, : len(ex.tgt_ids)].tolist()
        filled = [g if s == tok.mask_id else s for s, g in zip(ex.src_ids, gen)]
        print(f"\n[{n + 1}] source:    {_show(tok, ex.src_ids)}")
        print(f"    generated: {_show(tok, filled)}")
        print(
            f"    masked ->  {[tok.decode([g]) for s, g in zip(ex.src_ids, gen) if s == tok.mask_id]}"
        )
        print(
            f"    reference: {[tok.decode([t]) for s, t in zip(ex.src_ids, ex.tgt_ids) if s == tok.mask_id]}"
        )
    total = time.perf_counter() - start
    results = {
        "preset": ns.preset,
        "data": ns.data,
        "max_len": ns.max_len,
        "batch_size": ns.batch_size,
        "stage1_steps": ns.stage1_steps,
        "stage2_steps": ns.stage2_steps,
        "stage1_train_seconds": round(t1, 1),
        "stage2_train_seconds": round(t2, 1),
        "demo_seconds_this_run": round(total, 1),
        "threads": torch.get_num_threads(),
        "heldout_examples": len(infill),
        "stage1_reconstruction_acc": round(recon, 4),
        "stage2_infill_masked_acc": round(masked_acc, 4),
        "stage2_infill_all_acc": round(all_acc, 4),
        "sample_steps": ns.sample_steps,
    }
    print("\n== results (held-out split)")
    print(f"stage-1 reconstruction accuracy: {recon:.1%}")
    print(f"stage-2 infilling accuracy on masked tokens: {masked_acc:.1%} ({MASK_TOKEN} positions)")
    print(f"stage-2 infilling accuracy over all tokens:  {all_acc:.1%}")
    print(f"training time: stage 1 {t1:.0f} s, stage 2 {t2:.0f} s; this run {total:.0f} s")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for stage_dir in (s1, s2):
        plot_run(stage_dir, out / f"{stage_dir.name}_loss.png")
    print(f"results and loss curves in {out}")
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m yan.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/yan-demo"))
    p.add_argument("--preset", default="small")
    p.add_argument("--data", default="wiki-mini")
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--stage1-steps", type=int, default=400)
    p.add_argument("--stage2-steps", type=int, default=800)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-examples", type=int, default=256, help="held-out examples scored")
    p.add_argument("--sample-steps", type=int, default=4, help="Euler steps when generating")
    p.add_argument("--examples", type=int, default=4, help="infilling examples printed")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(ns)
    except (ValueError, FileNotFoundError, ImportError) as err:
        parser.error(str(err))
        raise


if __name__ == "__main__":
    main()
