"""Evaluate a checkpoint on a downstream task: ``yan eval`` and a small Python API (sec. 5.1).

::

    yan eval --task infill --checkpoint outputs/yan-demo/stage2 --steps 1 3 4 --limit 200
    yan eval --task qa --checkpoint runs/ft-qa --data chatterbot-qa --out reports/eval
    yan eval --task infill --baseline masked-diffusion --checkpoint runs/md --tokenizer runs/s2

The protocol of the paper: the task's test split (the 90/5/5 split of App. B.1, drawn with the
training run's seed so no test example was trained on), oracle target lengths, batched greedy
decoding; YAN samples with frozen routing and T Euler steps (one row of results per T). The
decoded texts are scored with :func:`yan.eval.evaluate_generations` (ROUGE for infilling, EM /
BERTScore-F1 for last-word completion, F1 / BERTScore-F1 / EM for QA, accuracy for
classification); infilling also reports the token accuracy at the masked positions.

Checkpoints: a YAN folder written by the trainer (``model.safetensors``, ``config.json``,
tokenizer files, and ``run.json`` / ``trainer_state.json`` with the run's task, data, length
and seed), or a baseline folder written by :func:`yan.baselines.save_baseline` (``--baseline
NAME``; its tokenizer comes from ``--tokenizer`` or tokenizer files in the folder). A checkpoint
trained for another task, a tokenizer that does not match the checkpoint, an unknown task and
a count mismatch between predictions and references are errors with a message saying so.

Writes ``eval_<task>.json`` (settings + metrics per row), ``eval_<task>.md`` (the table) and
``predictions_<task>.jsonl`` (source, prediction and reference per example and row) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from yan import eval as yan_eval
from yan.cli import exit_with_error
from yan.data import prepare
from yan.data.splits import SPLITS
from yan.data.tasks import EVAL_TASKS, Example
from yan.generation import generate_batched, source_batches
from yan.loading import (  # noqa: F401  (re-exported: callers import them from here)
    DEFAULT_TASK_OF_STAGE,
    Checkpoint,
    RunInfo,
    check_task,
    load_checkpoint,
    read_run_info,
)
from yan.tokenizer import YanTokenizer


# ---- data, generation, scoring -------------------------------------------------------------
def split_examples(
    ckpt: Checkpoint,
    task: str,
    *,
    data: str | None = None,
    split: str = "test",
    max_len: int | None = None,
    seed: int | None = None,
    limit: int | None = None,
) -> list[Example]:
    """The framed examples of ``split``, prepared with the checkpoint's tokenizer.

    ``data``, ``max_len`` and ``seed`` default to the training run's, so the split is the one
    held out from training.
    """
    if split not in SPLITS:
        raise ValueError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    data = data or ckpt.info.data
    if data is None:
        raise ValueError(f"--data is required: checkpoint {ckpt.path} records no training data")
    max_len = max_len or ckpt.info.max_len or ckpt.max_len
    if max_len > ckpt.max_len:
        raise ValueError(f"--max-len {max_len} exceeds the model's limit of {ckpt.max_len}")
    seed = ckpt.info.seed if seed is None else seed
    splits = prepare(data, task, ckpt.tokenizer, max_len=max_len, seed=seed or 0)
    examples = [e for e in splits[split] if e.src_ids and e.tgt_ids]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be >= 1, got {limit}")
        examples = examples[:limit]
    if not examples:
        raise ValueError(f"{task} on {data!r}: the {split} split has no examples")
    return examples


@dataclass
class Generations:
    """Generated target ids per example, and the seconds generation took."""

    ids: list[list[int]]
    seconds: float

    @property
    def tokens(self) -> int:
        return sum(len(x) for x in self.ids)


@torch.inference_mode()
def generate_ids(
    ckpt: Checkpoint,
    examples: Sequence[Example],
    *,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    routing: str = "frozen",
    keep_visible: bool = False,
) -> Generations:
    """Oracle-length greedy generation for every example, in batches.

    The model answers through :class:`yan.generation.GenerationModel` (the loop is
    :func:`yan.generation.generate_batched`): ``steps`` is YAN's Euler steps T (required),
    masked diffusion's denoising steps (``None``: one token per step; a T above a batch's
    longest target is clamped to it), and is ignored by the autoregressive baselines. YAN's
    noise is seeded by ``seed`` and the batch index, its experts are routed by ``routing`` and
    ``keep_visible`` clamps the visible source tokens of aligned tasks (see
    :meth:`yan.model.YAN.generate`); the baselines have neither option (their counterpart of
    ``keep_visible`` is their ``keep_source`` config field) and ignore them.
    """
    device = next(ckpt.model.parameters()).device
    start = time.perf_counter()
    out = generate_batched(
        ckpt.model,
        [e.src_ids for e in examples],
        [len(e.tgt_ids) for e in examples],
        pad_id=ckpt.tokenizer.pad_id,
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        device=device,
        routing=routing,
        keep_visible=keep_visible,
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Generations(out, time.perf_counter() - start)


@torch.inference_mode()
def choose_labels(
    ckpt: Checkpoint,
    examples: Sequence[Example],
    choices: Sequence[Sequence[int]],
    *,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    routing: str = "frozen",
) -> list[list[int]]:
    """Rank classification: per example, the ids of the candidate the model scores highest.

    ``choices`` are the candidate targets (for classification the distinct padded label
    sequences of the training split), all of one length; each model ranks them with its
    :meth:`~yan.generation.GenerationModel.score_choices` (``log p(candidate | source)``, see
    :meth:`yan.model.YAN.choice_scores`). Ties go to the earliest candidate. Batches and
    seeds are those of :func:`generate_ids`, so YAN's flow endpoint for a batch is the one its
    free generation of targets of the candidates' length starts decoding from. ``steps``
    (YAN's Euler steps T, required) and ``routing`` apply to YAN only; the baselines ignore them
    (GPT-2 and BART score the exact likelihood of a candidate, masked diffusion the
    pseudo-likelihood of one all-mask pass).
    """
    cands = [[int(i) for i in c] for c in choices]
    if not cands or not cands[0]:
        raise ValueError("choices must hold at least one candidate of at least one token")
    if len({len(c) for c in cands}) > 1:
        raise ValueError(
            f"choices must all have one length, got lengths {sorted({len(c) for c in cands})}"
        )
    device = next(ckpt.model.parameters()).device
    table = torch.tensor(cands, dtype=torch.long, device=device)
    out: list[list[int]] = []
    sources = [e.src_ids for e in examples]
    for batch in source_batches(sources, ckpt.tokenizer.pad_id, batch_size, device):
        scores = ckpt.model.score_choices(
            batch.src, batch.src_mask, table, steps=steps, seed=seed + batch.index, routing=routing
        )
        out += [list(cands[i]) for i in scores.argmax(1).tolist()]
    return out


def references(task: str, examples: Sequence[Example], tok: YanTokenizer) -> list[str]:
    """Reference text per example: the recorded target string, else the decoded target ids."""
    return [
        str(e.meta["target"]) if "target" in e.meta else tok.decode(e.tgt_ids) for e in examples
    ]


def masked_token_accuracy(
    examples: Sequence[Example], generated: Sequence[Sequence[int]], mask_id: int
) -> float:
    """Infilling: percentage of masked source positions whose generated token is right."""
    hits = total = 0
    for ex, gen in zip(examples, generated):
        for pos, (s, t) in enumerate(zip(ex.src_ids, ex.tgt_ids)):
            if s == mask_id and pos < len(gen):
                hits += int(gen[pos] == t)
                total += 1
    return 100.0 * hits / total if total else float("nan")


def score(
    task: str,
    predictions: Sequence[str],
    refs: Sequence[str],
    *,
    bertscore: bool = True,
    diversity: bool = False,
) -> dict[str, float]:
    """Task metrics (and optionally Dist-2 / Self-BLEU / SemDist) of decoded predictions."""
    if len(predictions) != len(refs):
        raise ValueError(
            f"predictions and references differ in count: {len(predictions)} vs {len(refs)}"
        )
    return yan_eval.evaluate_generations(
        task, list(predictions), list(refs), bertscore=bertscore, diversity=diversity
    )


# ---- the command ---------------------------------------------------------------------------
@dataclass
class EvalArgs:
    """Settings of one ``yan eval`` run (the CLI flags, one to one)."""

    task: str | None
    checkpoint: Path
    data: str | None = None
    split: str = "test"
    steps: list[int] = field(default_factory=lambda: [4])
    limit: int | None = None
    out: Path = Path("reports/eval")
    baseline: str | None = None
    tokenizer: str | None = None
    max_len: int | None = None
    data_seed: int | None = None
    seed: int = 0
    batch_size: int = 32
    bertscore: bool = True
    diversity: bool = False
    device: str = "cpu"


def row_name(ckpt: Checkpoint, steps: int | None) -> str:
    if not ckpt.uses_steps:
        return ckpt.kind
    if steps is None:
        return f"{ckpt.kind} T=L"
    return f"{ckpt.kind} T={steps}"


def evaluate_checkpoint(args: EvalArgs) -> dict[str, dict[str, float]]:
    """Load, generate for each T, score, write the reports; returns ``{row: metrics}``."""
    ckpt = load_checkpoint(
        args.checkpoint, baseline=args.baseline, tokenizer=args.tokenizer, device=args.device
    )
    task = args.task or ckpt.info.task
    if task is None:
        raise ValueError(f"--task is required: checkpoint {ckpt.path} records no task")
    check_task(ckpt, task)
    if any(isinstance(t, bool) or t < 1 for t in args.steps):
        raise ValueError(f"--steps must be integers >= 1, got {args.steps}")
    examples = split_examples(
        ckpt,
        task,
        data=args.data,
        split=args.split,
        max_len=args.max_len,
        seed=args.data_seed,
        limit=args.limit,
    )
    tok = ckpt.tokenizer
    refs = references(task, examples, tok)
    sources = [tok.decode(e.src_ids, skip_special=False) for e in examples]
    settings: list[int | None] = list(args.steps) if ckpt.uses_steps else [None]
    results: dict[str, dict[str, float]] = {}
    predictions: dict[str, list[str]] = {}
    for steps in settings:
        gens = generate_ids(ckpt, examples, steps=steps, seed=args.seed, batch_size=args.batch_size)
        preds = [tok.decode(ids).strip() for ids in gens.ids]
        name = row_name(ckpt, steps)
        metrics = score(task, preds, refs, bertscore=args.bertscore, diversity=args.diversity)
        if task == "infill":
            metrics["masked_acc"] = masked_token_accuracy(examples, gens.ids, tok.mask_id)
        metrics["tokens_per_s"] = gens.tokens / max(gens.seconds, 1e-9)
        results[name], predictions[name] = metrics, preds
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    meta = {
        "task": task,
        "checkpoint": str(ckpt.path),
        "model": ckpt.kind,
        "data": args.data or ckpt.info.data,
        "split": args.split,
        "examples": len(examples),
        "seed": args.seed,
        "tokenizer": repr(tok),
        "trained": asdict(ckpt.info),
    }
    write_outputs(Path(args.out), task, meta, results, sources, refs, predictions)
    return results


def write_outputs(
    out: Path,
    task: str,
    meta: dict[str, Any],
    results: dict[str, dict[str, float]],
    sources: Sequence[str],
    refs: Sequence[str],
    predictions: dict[str, list[str]],
) -> dict[str, Path]:
    """``eval_<task>.json`` / ``.md`` and ``predictions_<task>.jsonl`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / f"eval_{task}.json",
        "markdown": out / f"eval_{task}.md",
        "predictions": out / f"predictions_{task}.jsonl",
    }
    paths["json"].write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    header = (
        f"# {task}: {meta['model']} on {meta['data']} ({meta['split']}, {meta['examples']} "
        f"examples)\n\nCheckpoint `{meta['checkpoint']}`; oracle lengths, greedy decoding.\n\n"
    )
    paths["markdown"].write_text(header + yan_eval.markdown_table(results))
    with paths["predictions"].open("w") as f:
        for name, preds in predictions.items():
            for i, (src, ref, pred) in enumerate(zip(sources, refs, preds)):
                row = {"run": name, "index": i, "source": src, "reference": ref, "prediction": pred}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(yan_eval.markdown_table(results))
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yan eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", help=f"one of {', '.join(EVAL_TASKS)} (default: the checkpoint's)")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--data", help="corpus name or path (default: the training run's)")
    p.add_argument("--split", default="test", help="test (default), val or train")
    p.add_argument(
        "--steps", type=int, nargs="+", default=[4], help="Euler / denoising steps T (one row each)"
    )
    p.add_argument("--limit", type=int, help="evaluate the first N examples only")
    p.add_argument("--out", type=Path, default=Path("reports/eval"), help="output folder")
    p.add_argument("--baseline", help="the checkpoint is a baseline: gpt2, bart, masked-diffusion")
    p.add_argument("--tokenizer", help="tokenizer name or folder (baselines without one)")
    p.add_argument("--max-len", type=int, help="framing length (default: the training run's)")
    p.add_argument("--data-seed", type=int, help="split seed (default: the training run's)")
    p.add_argument("--seed", type=int, default=0, help="seed of YAN's noise and expert draws")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-bertscore", action="store_true", help="skip BERTScore-F1")
    p.add_argument("--diversity", action="store_true", help="add Dist-2, Self-BLEU, SemDist")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """``yan eval ...``: bad input exits with a one-line error naming the problem."""
    parser = build_parser()
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    args = EvalArgs(
        task=ns.task,
        checkpoint=ns.checkpoint,
        data=ns.data,
        split=ns.split,
        steps=ns.steps,
        limit=ns.limit,
        out=ns.out,
        baseline=ns.baseline,
        tokenizer=ns.tokenizer,
        max_len=ns.max_len,
        data_seed=ns.data_seed,
        seed=ns.seed,
        batch_size=ns.batch_size,
        bertscore=not ns.no_bertscore,
        diversity=ns.diversity,
        device=ns.device,
    )
    try:
        return evaluate_checkpoint(args)
    except (ValueError, FileNotFoundError) as err:
        exit_with_error(parser.prog, err)


if __name__ == "__main__":
    main()
