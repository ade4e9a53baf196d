"""CPU demo: train a small YAN on Wikipedia text and fill in masked words.

``python -m yan.demo --out outputs/yan-demo`` (what ``make demo`` runs) trains the ``small``
preset on ``wiki-mini`` (106 Wikipedia articles that ship with gensim) in both stages of sec. 4.2:

1. stage 1, the regularised autoencoder of eq. (8), on plain text;
2. stage 2, the MoE-FM latent flow of eq. (11), in the infilling framing (source = text with
   5-10% of its tokens masked in spans of 1-3, target = the full text, App. B.2);

then prints a few infilling examples from held-out articles (source with masks, the model's own
output and the reference, never the reference with the model's guesses spliced in) and the
numbers: stage-1 reconstruction accuracy on held-out text, and stage-2 token accuracy on the
masked positions and over all positions (4 Euler steps, frozen routing, oracle length = source
length, greedy decoding), next to four references that need no flow: decoding the encoded
source with the stage-1 decoder, copying the source, the most frequent training token at every
mask, and an n-gram count table of the training text (what can be learnt from the data
without a neural network). Everything is written to ``--out`` (``results.json``, loss curves).

Rerunning continues an interrupted stage and skips finished ones (``yan train --resume``).

Choices for a ~15 minute budget on 2 CPU cores (the paper trains for days on 8 GPUs): sequences
of at most 64 tokens of an 8k byte-level BPE trained on the corpus (the decoder's vocabulary
projection dominates the cost with the 128k LLaMA-3 vocabulary), batch 16, a higher learning rate
than the paper's 1e-4 with a short warm-up, 1200 stage-1 and 300 stage-2 steps: a stage-1 step
costs a third of a stage-2 one, and stage 1 is where the encoder learns to read ``<|mask|>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from yan import data as yan_data
from yan.bench.learn import NgramFiller, decode_source, token_scores
from yan.model import YAN
from yan.plot_run import plot_run
from yan.threads import apply_threads
from yan.tokenizer import YanTokenizer
from yan.train import train
from yan.train_args import resumable_run


def _train_stage(ns: argparse.Namespace, stage: str, out: Path, init: Path | None) -> float:
    """Train (or resume / skip) one stage; returns the seconds its training loop took."""
    result = train(
        resumable_run(
            out,
            ns,
            data=ns.data,
            stage=stage,
            preset=ns.preset,
            task="pretrain" if stage == "1" else "infill",
            max_steps=ns.stage1_steps if stage == "1" else ns.stage2_steps,
            init=init,
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
def generate_all(
    model: YAN, examples: list[Any], pad_id: int, steps: int, seed: int
) -> list[list[int]]:
    """The model's own output for every example: oracle length, frozen routing, greedy."""
    out: list[list[int]] = []
    for n, first in enumerate(range(0, len(examples), 32)):
        part = examples[first : first + 32]
        batch = yan_data.collate(part, pad_id)
        lengths = batch.tgt_mask.sum(1)
        g = model.generate(
            batch.src, batch.src_mask, lengths, steps=steps, seed=seed + n, pad_id=pad_id
        )
        out += [row[: len(e.tgt_ids)].tolist() for row, e in zip(g.tokens, part)]
    return out


def _show(tok: YanTokenizer, ids: list[int]) -> str:
    return tok.decode(ids, skip_special=False).replace("<|padding|>", "")


def run(ns: argparse.Namespace) -> dict[str, Any]:
    """Train both stages, evaluate on the held-out split, print and save the results."""
    apply_threads(ns.threads)
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
    splits = yan_data.prepare(ns.data, "infill", tok, max_len=ns.max_len, seed=ns.seed)
    infill = splits["test"][: ns.eval_examples]
    plain = plain[: ns.eval_examples]
    loader = yan_data.BatchIterator
    plain_b = list(loader(plain, 32, tok.pad_id, shuffle=False, infinite=False, bucket=False))
    recon = reconstruction_accuracy(ae, plain_b)
    generated = generate_all(flow, infill, tok.pad_id, ns.sample_steps, ns.seed)
    ngram = NgramFiller([e.tgt_ids for e in splits["train"]])
    unigram_id = ngram.top
    rows = {
        "YAN (flow, frozen routing)": generated,
        "no flow: decode E(source)": decode_source(flow, infill, tok.pad_id),
        "copy the source": [list(e.src_ids) for e in infill],
        f"unigram ({tok.decode([unigram_id])!r} at every mask)": [
            [unigram_id if t == tok.mask_id else t for t in e.src_ids] for e in infill
        ],
        "ngram (neighbour counts)": [ngram.fill(e.src_ids, tok.mask_id) for e in infill],
    }
    scores = {name: token_scores(infill, ids, tok.mask_id) for name, ids in rows.items()}

    print(
        f"\n== infilling examples: the model's own output (held-out, {ns.sample_steps} Euler steps)"
    )
    for n in range(min(ns.examples, len(infill))):
        ex, gen = infill[n], generated[n]
        masked = [i for i, s in enumerate(ex.src_ids) if s == tok.mask_id]
        print(f"\n[{n + 1}] source:    {_show(tok, ex.src_ids)}")
        print(f"    output:    {_show(tok, gen)}")
        print(f"    reference: {_show(tok, ex.tgt_ids)}")
        wrong = sum(g != t for g, t in zip(gen, ex.tgt_ids))
        print(
            f"    at the masks: {[tok.decode([gen[i]]) for i in masked]} "
            f"(reference {[tok.decode([ex.tgt_ids[i]]) for i in masked]}); "
            f"{wrong} of {len(ex.tgt_ids)} output tokens differ from the reference"
        )
    total = time.perf_counter() - start
    yan_scores = scores["YAN (flow, frozen routing)"]
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
        "stage2_infill_masked_acc": round(yan_scores.get("masked_acc", float("nan")), 4),
        "stage2_infill_all_acc": round(yan_scores["token_acc"], 4),
        "references": {
            name: {k: round(v, 4) for k, v in sc.items()} for name, sc in scores.items()
        },
        "sample_steps": ns.sample_steps,
    }
    print("\n== results (held-out split)")
    print(f"stage-1 reconstruction accuracy: {recon:.1%}")
    print(f"infilling, {len(infill)} held-out examples   masked tokens   all tokens")
    for name, sc in scores.items():
        print(f"  {name:<36} {sc.get('masked_acc', float('nan')):>12.1%} {sc['token_acc']:>12.1%}")
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
    p.add_argument("--stage1-steps", type=int, default=1200)
    p.add_argument("--stage2-steps", type=int, default=300)
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
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: the cores idle at the start, see yan.threads)",
    )
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
