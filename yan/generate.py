"""Generate text with a trained YAN checkpoint: ``yan generate`` and a small Python API.

::

    yan generate --checkpoint runs/s2 --task infill --text 'The <|mask|> sat on the <|mask|>.'
    yan generate --checkpoint runs/ft --task qa --input questions.jsonl --output answers.jsonl

Every input is a source text, framed as in training (App. B.2): ``qa`` expects
``context + newline + question`` (or only the question), ``classify`` and ``last-word`` the
text itself, ``infill`` a text with one ``<|mask|>`` token per missing token.

Target length: for ``infill`` it is the source length (the target is the full text, so the
length is known: the paper's oracle length); otherwise ``--length L`` gives an oracle length,
and without it the model's length head predicts one per input.

Generation is the paper's (sec. 4, C.3): z0 ~ N(0, I) for every target token, one expert per
token drawn at t = 0 (frozen routing), ``--steps`` Euler steps, all tokens decoded in parallel
(greedy). ``--num-samples N`` draws N samples per input (different z0 and experts).

The checkpoint is checked as ``yan eval`` checks it (:mod:`yan.loading`): a stage-1
autoencoder, a model trained for another task, or a tokenizer that is not the checkpoint's own
is an error, not a run that prints garbage.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from moefm.sampling import ROUTINGS, SOLVERS
from yan import loading
from yan.cli import exit_with_error
from yan.data.tasks import EVAL_TASKS as TASKS
from yan.distributed import DEVICES, pick_device
from yan.generation import source_batches
from yan.model import YAN
from yan.precision import ALIASES, DTYPES, cast
from yan.tokenizer import YanTokenizer

DTYPE_HELP = (
    "weights' dtype for generation (bfloat16: ~3x faster on CPUs with AMX or AVX512-BF16, "
    "~5x slower on CPUs without them; the flow state stays float32, see yan.precision)"
)

# Where a too-long source is cut: keep the end next to the question / the missing word.
KEEP_END = ("qa", "last-word")


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    task: str | None = None,
    tokenizer: str | Path | None = None,
) -> tuple[YAN, YanTokenizer]:
    """Deprecated: use :func:`yan.loading.load_checkpoint` (and :func:`yan.loading.check_task`),
    the one checkpoint loader; this returns its ``(model, tokenizer)`` for a YAN checkpoint."""
    warnings.warn(
        "yan.generate.load_checkpoint is deprecated; use yan.loading.load_checkpoint, which "
        "returns a Checkpoint (.model, .tokenizer)",
        DeprecationWarning,
        stacklevel=2,
    )
    ckpt = _load_yan(path, device, task=task, tokenizer=tokenizer)
    return ckpt.model, ckpt.tokenizer


def _load_yan(
    path: str | Path,
    device: str | torch.device,
    *,
    task: str | None,
    tokenizer: str | Path | None,
    weights: str = "raw",
) -> loading.Checkpoint:
    """A YAN checkpoint, checked as ``yan eval`` checks it: the tokenizer must be the
    checkpoint's own and, with ``task``, the checkpoint must have been trained for it (a
    stage-1 autoencoder is refused for every task). ``weights``: ``raw`` or ``ema``."""
    ckpt = loading.load_checkpoint(path, tokenizer=tokenizer, device=device, weights=weights)
    if task is not None:
        loading.check_task(ckpt, task)
    return ckpt


def encode_sources(
    texts: Sequence[str], tok: YanTokenizer, task: str, max_len: int, *, strict: bool = False
) -> list[list[int]]:
    """Token ids per input; longer than ``max_len`` is cut (one warning) or an error if strict."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    ids = tok.encode_batch(list(texts))
    cut = 0
    for n, row in enumerate(ids):
        if not row:
            raise ValueError(f"input {n + 1} is empty")
        if len(row) > max_len:
            if strict:
                raise ValueError(
                    f"input {n + 1} has {len(row)} tokens, more than the model's max_len="
                    f"{max_len} (--strict)"
                )
            cut += 1
            ids[n] = row[-max_len:] if task in KEEP_END else row[:max_len]
    if cut:
        warnings.warn(
            f"{cut} of {len(ids)} inputs were longer than max_len={max_len} tokens and were "
            "truncated",
            stacklevel=2,
        )
    if task == "infill":
        plain = [n + 1 for n, row in enumerate(ids) if tok.mask_id not in row]
        if plain:
            warnings.warn(
                f"infill input(s) {plain[:5]} have no <|mask|>: nothing to fill in", stacklevel=2
            )
    return ids


def generate_texts(
    model: YAN,
    tok: YanTokenizer,
    texts: Sequence[str],
    task: str,
    *,
    steps: int = 4,
    num_samples: int = 1,
    seed: int = 0,
    length: int | None = None,
    batch_size: int = 32,
    strict: bool = False,
    solver: str = "euler",
    routing: str = "frozen",
    temperature: float = 0.0,
) -> list[dict[str, Any]]:
    """One record per (input, sample): ``input``, ``sample``, ``generation``, ``length``, and for
    ``infill`` also ``filled`` (the source with each ``<|mask|>`` replaced by the generated
    token at its position; visible tokens kept verbatim).

    Results are a deterministic function of ``seed`` and ``batch_size``. ``temperature`` 0
    decodes greedily; a finite value > 0 samples (checked by the decoder).
    """
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"--seed must be an integer, got {seed!r}")
    if not texts:
        raise ValueError("no inputs to generate from")
    if task == "infill" and length is not None:
        raise ValueError("--length does not apply to infill: the target length is the source's")
    max_len = model.config.max_len
    if length is not None and not 1 <= length <= max_len:
        raise ValueError(f"--length must be in 1..{max_len} (the model's max_len), got {length}")
    sources = encode_sources(texts, tok, task, max_len, strict=strict)
    rows = [(i, s) for i in range(len(sources)) for s in range(num_samples)]
    device = model.device
    records: list[dict[str, Any]] = []
    inputs = [sources[i] for i, _ in rows]
    for batch in source_batches(inputs, tok.pad_id, batch_size):
        chunk = [rows[r] for r in batch.rows]
        tgt_len: Any = [len(inputs[r]) for r in batch.rows] if task == "infill" else length
        out = model.generate(
            batch.src.to(device),
            batch.src_mask.to(device),
            tgt_len,
            steps=steps,
            solver=solver,
            routing=routing,
            seed=seed + batch.index,
            temperature=temperature,
            pad_id=tok.pad_id,
        )
        tokens, lengths = out.tokens.cpu(), out.lengths.cpu().tolist()
        for r, (i, s) in enumerate(chunk):
            gen = tokens[r, : lengths[r]].tolist()
            record: dict[str, Any] = {
                "input": texts[i],
                "sample": s,
                "generation": tok.decode(gen),
                "length": lengths[r],
            }
            if task == "infill":
                filled = [g if x == tok.mask_id else x for x, g in zip(sources[i], gen)]
                record["filled"] = tok.decode(filled)
            records.append(record)
    return records


def read_inputs(path: str | Path) -> list[dict[str, Any]]:
    """Inputs of ``--input``: JSONL (``.jsonl``/``.json``, a ``"text"`` field per line) or plain
    text, one input per non-empty line. JSONL fields other than ``text`` are passed through."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--input file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"--input {path} is not UTF-8 text ({err}); convert it to UTF-8") from None
    items: list[dict[str, Any]] = []
    jsonl = path.suffix.lower() in (".jsonl", ".json")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not jsonl:
            items.append({"text": line})
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n} is not valid JSON ({err})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise ValueError(f'{path}:{n} needs a "text" field holding a string')
        items.append(obj)
    if not items:
        raise ValueError(f"--input {path} holds no inputs")
    return items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yan generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="training output folder")
    p.add_argument(
        "--tokenizer",
        help="tokenizer name or folder, for a checkpoint without tokenizer files (otherwise it "
        "must be the checkpoint's own)",
    )
    p.add_argument("--task", required=True, choices=TASKS)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="one input text (infill: one <|mask|> per missing token)")
    src.add_argument("--input", type=Path, help="one input per line, or JSONL with a text field")
    p.add_argument("--output", type=Path, help="write the records as JSONL here")
    p.add_argument("--steps", type=int, default=4, help="Euler steps T (paper: 3-4)")
    p.add_argument("--num-samples", type=int, default=1, help="samples per input")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--length", type=int, help="oracle target length (default: length head)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--solver", default="euler", choices=SOLVERS)
    p.add_argument("--routing", default="frozen", choices=ROUTINGS)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy (the paper's)")
    p.add_argument("--strict", action="store_true", help="error on inputs longer than max_len")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument(
        "--weights",
        default="raw",
        choices=("raw", "ema"),
        help="raw: the trained weights; ema: their moving average (ema.safetensors, from "
        "yan train --ema-decay)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=(*DTYPES, *ALIASES),
        help=DTYPE_HELP,
    )
    return p


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """``yan generate ...``: prints one generation per line (infill: the filled text)."""
    parser = build_parser()
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        items = [{"text": ns.text}] if ns.text is not None else read_inputs(ns.input)
        ckpt = _load_yan(
            ns.checkpoint,
            pick_device(ns.device),
            task=ns.task,
            tokenizer=ns.tokenizer,
            weights=ns.weights,
        )
        model, tok = ckpt.model, ckpt.tokenizer
        cast(model, ns.dtype)
        records = generate_texts(
            model,
            tok,
            [it["text"] for it in items],
            ns.task,
            steps=ns.steps,
            num_samples=ns.num_samples,
            seed=ns.seed,
            length=ns.length,
            batch_size=ns.batch_size,
            strict=ns.strict,
            solver=ns.solver,
            routing=ns.routing,
            temperature=ns.temperature,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        exit_with_error(parser.prog, err)
    per_input = ns.num_samples
    for n, rec in enumerate(records):
        extra = {k: v for k, v in items[n // per_input].items() if k != "text"}
        rec.update({k: v for k, v in extra.items() if k not in rec})
        shown = rec["filled"] if ns.task == "infill" else rec["generation"]
        print(shown if per_input == 1 else f"[{n // per_input + 1}.{rec['sample'] + 1}] {shown}")
    if ns.output is not None:
        ns.output.parent.mkdir(parents=True, exist_ok=True)
        with open(ns.output, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return records


if __name__ == "__main__":
    main()
