"""The data of a training run (``yan train``): its tokenizer, its training batches for this rank
and its validation batches, from the run's :class:`~yan.train_args.TrainArgs`.

* :func:`fresh_tokenizer`: ``--tokenizer`` or the preset's; a ``bpe`` is trained on the training
  split only (:func:`corpus_texts`) by rank 0 and read back by the others.
* :func:`build_data`: an in-memory corpus framed for the task (:func:`yan.data.prepare`), its
  training split planned once in global batches of ``--batch-size`` (the same seeded plan on
  every rank), of which each rank takes its fixed slice per micro-batch
  (:class:`~yan.data.global_plan.GlobalBatches`; read by index from the memory-mapped cache, so
  a rank reads the token ids of its own rows only), and the first ``--eval-batches`` validation
  batches; or a
  streamed pretraining corpus (:class:`StreamShard`), optionally in the infilling framing of
  App. B.2 (:func:`mask_batch`).

Either training source is a :class:`BatchSource`: it saves and restores its position, so that
a resumed run reads the batches an uninterrupted one would have; both positions are global
(:func:`global_position`), so either continues on another number of processes.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from yan.batch import Seq2SeqBatch
from yan.config import PRESETS, YANConfig
from yan.data.global_plan import GlobalBatches
from yan.data.hub import HUB_CORPORA
from yan.data.pipeline import load_corpus, make_loaders, prepare
from yan.data.splits import split
from yan.data.stream import PretrainStream, parse_weights
from yan.data.stream_position import merge_positions
from yan.data.tasks import InfillConfig, sample_mask_positions
from yan.distributed import DistEnv, main_first, main_only
from yan.resolve import task_of
from yan.tokenizer import META_FILE, YanTokenizer, get_tokenizer

if TYPE_CHECKING:
    from yan.train_args import TrainArgs

MIN_BPE_VOCAB = 512  # a byte-level BPE needs 256 bytes + specials; below this it is all bytes


# ---- tokenizer ------------------------------------------------------------------------------
def corpus_texts(args: TrainArgs) -> list[str]:
    """Every text field of the training split (the tokenizer must not see val/test)."""
    records = load_corpus(
        args.data, columns=args.columns or None, cache_dir=args.cache_dir, sample_by=args.sample_by
    )
    if not records:
        raise ValueError(f"data set {args.data!r} is empty")
    group = "doc" if all("doc" in r for r in records) else None
    train_records = split(records, seed=args.seed, group_by=group)["train"]
    fields = ("text", "context", "question", "answer", "label")
    texts = [r[f] for r in train_records for f in fields if isinstance(r.get(f), str) and r[f]]
    if not texts:
        raise ValueError(f"data set {args.data!r} has no text to train a tokenizer on")
    return texts


def bpe_vocab_size(args: TrainArgs) -> int:
    """Size of a BPE trained for this run: ``--set vocab_size`` or the preset's, at least 512."""
    wanted = args.overrides.get("vocab_size")
    if wanted is None:
        wanted = PRESETS[args.preset or "paper-trf"].get("vocab_size", YANConfig.vocab_size)
    if isinstance(wanted, bool) or not isinstance(wanted, int):
        raise ValueError(f"--set vocab_size must be an integer, got {wanted!r}")
    return max(int(wanted), MIN_BPE_VOCAB)


def fresh_tokenizer(args: TrainArgs, env: DistEnv, streamed: bool) -> YanTokenizer:
    """``--tokenizer`` (default: the preset's). ``bpe`` is trained on the training split by rank
    0, saved into the output folder, and loaded from there by the other ranks."""
    assert args.preset is not None  # checked by check_args when there is no --init
    name = args.tokenizer or str(PRESETS[args.preset].get("tokenizer", YANConfig.tokenizer))
    if name != "bpe":
        return get_tokenizer(name)
    if streamed:
        raise ValueError(
            "--tokenizer bpe is trained on the corpus and needs an in-memory data set; with a "
            "streamed corpus pass --tokenizer llama3 (the paper's), gpt2 or a tokenizer folder"
        )

    def train_and_save() -> None:
        tok = YanTokenizer.train(corpus_texts(args), vocab_size=bpe_vocab_size(args))
        args.out.mkdir(parents=True, exist_ok=True)
        save_tokenizer_atomic(tok, args.out)

    main_only(train_and_save, env)  # one BPE for all ranks: trained once, read back by all
    return YanTokenizer.load(args.out)


def save_tokenizer_atomic(tok: YanTokenizer, folder: Path) -> None:
    """``tok.save(folder)`` such that a crash never leaves a folder that looks complete."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".tokenizer-") as tmp:
        tok.save(tmp)
        for path in sorted(Path(tmp).iterdir(), key=lambda p: p.name == META_FILE):
            os.replace(path, folder / path.name)  # the metadata file last: it marks completeness


# ---- batches --------------------------------------------------------------------------------
class BatchSource(Protocol):
    """An iterable of batches with a resumable position (:class:`GlobalBatches`,
    :class:`StreamShard`)."""

    def __iter__(self) -> Iterator[Seq2SeqBatch]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def mask_batch(
    batch: Seq2SeqBatch, mask_id: int, rng: np.random.Generator, cfg: InfillConfig
) -> Seq2SeqBatch:
    """Infilling framing of a text batch (App. B.2): source = target with spans masked."""
    src = batch.tgt.clone()
    for row, n in enumerate(batch.tgt_mask.sum(1).tolist()):
        positions = sample_mask_positions(int(n), rng, cfg)
        src[row, torch.from_numpy(positions)] = mask_id
    return Seq2SeqBatch(src, batch.tgt_mask.clone(), batch.tgt, batch.tgt_mask)


class StreamShard:
    """This rank's batches of a rank-sharded :class:`~yan.data.stream.PretrainStream`,
    optionally in the infilling framing (masks seeded by the run seed, the rank and the
    rank's batch count, so that a resumed run draws what an uninterrupted one would have).

    Its ``state_dict`` is this rank's position; :meth:`merge_state_dicts` makes the ranks'
    positions one global position, which ``load_state_dict`` restores on any number of ranks.
    """

    def __init__(self, stream: Any, env: DistEnv, *, infill_mask_id: int | None, seed: int) -> None:
        self.stream, self.env = stream, env
        self.mask_id, self.seed = infill_mask_id, seed

    def __iter__(self) -> Iterator[Seq2SeqBatch]:
        for batch in self.stream:
            if self.mask_id is not None:
                count = self.stream.state_dict()["batches"]
                rng = np.random.default_rng([self.seed, self.env.rank, count])
                batch = mask_batch(batch, self.mask_id, rng, InfillConfig())
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)

    @staticmethod
    def merge_state_dicts(states: list[dict[str, Any]]) -> dict[str, Any]:
        """The global position of all ranks' ``state_dict()`` (in rank order)."""
        return merge_positions(states)


def global_position(source: BatchSource, states: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ranks' data positions as one position that any number of ranks can resume from, or
    ``None`` for a source whose position is per rank (an earlier checkpoint's per-rank shard of
    an in-memory corpus, continued as it was)."""
    merge = getattr(source, "merge_state_dicts", None)
    return merge(states) if merge is not None else None


def streamed_sources(args: TrainArgs) -> list[str] | None:
    """The sources of a streamed pretraining run (``--stream`` or a streamed hub corpus)."""
    parts = [p.strip() for p in args.data.split(",") if p.strip()]
    if not parts:
        raise ValueError("--data is empty")
    streaming = [p for p in parts if p in HUB_CORPORA and HUB_CORPORA[p].streaming]
    if not (args.stream or streaming):
        if len(parts) > 1:
            raise ValueError(
                f"--data {args.data!r}: several comma-separated sources are only supported for "
                "streamed pretraining corpora (--stream or finewiki,fineweb-edu)"
            )
        return None
    if task_of(args) not in ("pretrain", "infill"):
        raise ValueError(
            f"a streamed corpus is pretraining text: --task must be pretrain or infill, "
            f"got {task_of(args)!r}"
        )
    return parts


@dataclass
class RunData:
    """This rank's training source, the validation batches (the same on every rank) and a
    one-line description for the run's banner."""

    train: BatchSource
    val: list[Seq2SeqBatch]
    description: str


def build_data(
    args: TrainArgs, tok: YanTokenizer, env: DistEnv, micro: int, max_len: int
) -> RunData:
    """This rank's training source and the (shared) validation batches."""
    task = task_of(args)
    sources = streamed_sources(args)
    n_val = args.eval_batches
    if sources is not None:
        infill_id = tok.mask_id if task == "infill" else None
        kwargs: dict[str, Any] = dict(max_len=max_len, batch_size=micro, sources=sources)
        kwargs["text_column"] = args.columns.get("text")
        kwargs["weights"] = parse_weights(args.data_weights)
        train_stream = PretrainStream(
            tok,
            split="train",
            seed=args.seed,
            rank=env.rank,
            world_size=env.world_size,
            num_workers=args.num_workers,
            **kwargs,
        )
        val_stream = PretrainStream(tok, split="val", seed=args.seed, **kwargs)
        val = list(islice(iter(val_stream), n_val))
        if infill_id is not None:  # fixed masks: every evaluation scores the same positions
            rng = np.random.default_rng([args.seed, 10**6])
            val = [mask_batch(b, infill_id, rng, InfillConfig()) for b in val]
        train = StreamShard(train_stream, env, infill_mask_id=infill_id, seed=args.seed)
        return RunData(train, val, f"streamed {', '.join(sources)} ({task})")
    if args.data_weights is not None:  # not an error: a script's default for its streams
        warnings.warn(
            f"--data-weights is ignored: --data {args.data!r} is read into memory, not mixed "
            "from streamed sources (--stream or finewiki,fineweb-edu)",
            stacklevel=2,
        )
    splits = main_first(
        lambda: prepare(
            args.data,
            task,
            tok,
            max_len=max_len,
            seed=args.seed,
            cache_dir=args.cache_dir,
            columns=args.columns or None,
            strict=args.strict,
            sample_by=args.sample_by,
        ),
        env,
    )
    n_train, n_val_ex = len(splits["train"]), len(splits.get("val", []))
    # one plan of global batches over the whole split, the same on every rank; each rank
    # builds (and reads) only its own slice of each (yan.data.global_plan)
    global_batch = env.world_size * args.grad_accum * micro
    plan = make_loaders(
        {"train": splits["train"]}, task, tok, batch_size=global_batch, seed=args.seed
    )
    val_loaders = make_loaders(
        {"val": splits.get("val", [])}, task, tok, batch_size=micro, seed=args.seed
    )
    val = list(islice(iter(val_loaders["val"]), n_val)) if "val" in val_loaders else []
    desc = f"{args.data} ({task}: {n_train} train / {n_val_ex} val examples)"
    return RunData(GlobalBatches(plan["train"], env, args.grad_accum), val, desc)


__all__ = [
    "MIN_BPE_VOCAB",
    "BatchSource",
    "RunData",
    "StreamShard",
    "bpe_vocab_size",
    "build_data",
    "corpus_texts",
    "fresh_tokenizer",
    "global_position",
    "mask_batch",
    "save_tokenizer_atomic",
    "streamed_sources",
]
