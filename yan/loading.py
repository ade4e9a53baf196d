"""A trained checkpoint, ready for a task: the one loader behind ``yan eval`` and ``yan generate``.

:func:`load_checkpoint` returns the model, its tokenizer and what the training run recorded
(task, data, length, seed, tokenizer fingerprint); :func:`check_task` refuses a task the
checkpoint cannot do. Both commands call the pair, so a stage-1 autoencoder, a model trained for
another task, or a tokenizer that is not the checkpoint's own (even one of the same vocabulary
size) is an error with a message saying so, never a run that prints garbage.

Kept apart from :mod:`yan.evaluate` so that ``yan generate`` does not import the metrics
(ROUGE, NLTK, BERTScore) it never uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yan.data.tasks import EVAL_TASKS as TASKS
from yan.generation import GenerationModel
from yan.resolve import DEFAULT_TASK as DEFAULT_TASK_OF_STAGE  # the name callers import
from yan.run_state import RUN_FILE, STATE_FILE
from yan.tokenizer import META_FILE, YanTokenizer, get_tokenizer, read_json_object


@dataclass
class RunInfo:
    """What the training run recorded about a checkpoint (``None`` where nothing was recorded).

    Attributes:
        task: the framing the model was trained on (``pretrain`` for a stage-1 autoencoder).
        stage: ``"1"``, ``"2"`` or ``"finetune"``.
        data: the training data (corpus name or path).
        max_len: the token length the data was framed with.
        seed: the seed of the 90/5/5 split.
        tokenizer_fingerprint: :attr:`YanTokenizer.fingerprint` of the tokenizer the run
            trained with (run setting ``tokenizer_fingerprint``), when the run recorded it.
    """

    task: str | None = None
    stage: str | None = None
    data: str | None = None
    max_len: int | None = None
    seed: int | None = None
    tokenizer_fingerprint: str | None = None


def read_run_info(folder: str | Path) -> RunInfo:
    """Training metadata of a checkpoint folder; empty when it has none.

    A training output folder has ``run.json`` (the arguments) and ``checkpoints/step-N/
    trainer_state.json`` (the resolved settings, preferred); a ``step-N`` folder has the latter.
    """
    folder = Path(folder)
    run: dict[str, Any] = {}
    if (folder / RUN_FILE).is_file():
        run.update(read_json_object(folder / RUN_FILE))
    states = sorted((folder / "checkpoints").glob(f"step-*/{STATE_FILE}"))
    state_path = folder / STATE_FILE if (folder / STATE_FILE).is_file() else None
    if state_path is None and states:
        state_path = states[-1]
    if state_path is not None:
        run.update(
            {k: v for k, v in read_json_object(state_path).get("run", {}).items() if v is not None}
        )
    if not run:
        return RunInfo()
    stage = None if run.get("stage") is None else str(run["stage"])
    max_len, seed = run.get("max_len"), run.get("seed")
    fingerprint = run.get("tokenizer_fingerprint")
    return RunInfo(
        task=run.get("task") or DEFAULT_TASK_OF_STAGE.get(stage or ""),
        stage=stage,
        data=run.get("data"),
        max_len=int(max_len) if max_len is not None else None,
        seed=int(seed) if seed is not None else None,
        tokenizer_fingerprint=str(fingerprint) if fingerprint is not None else None,
    )


@dataclass
class Checkpoint:
    """A model ready to run, with its tokenizer and training metadata.

    Attributes:
        model: a :class:`yan.model.YAN` or a :class:`yan.baselines.Baseline`, in eval mode;
            both implement :class:`yan.generation.GenerationModel`.
        tokenizer: the tokenizer its ids belong to.
        kind: ``"yan"`` or the baseline's name.
        info: the training run's metadata.
        path: the folder it was loaded from.
    """

    model: GenerationModel
    tokenizer: YanTokenizer
    kind: str
    info: RunInfo
    path: Path

    @property
    def uses_steps(self) -> bool:
        """Whether generation takes a number of steps T (the model says: YAN, masked diffusion)."""
        return self.model.uses_steps

    @property
    def max_len(self) -> int:
        """Longest source or target the model takes (its own limit, before any data setting)."""
        return self.model.max_source_len


def _tokenizer_label(tok: YanTokenizer) -> set[str]:
    return {tok.name, tok.source}


def check_tokenizer(
    tok: YanTokenizer,
    vocab_size: int,
    label: str | None,
    where: str,
    fingerprint: str | None = None,
) -> None:
    """Refuse a tokenizer that is not the one a checkpoint was trained with.

    Compares the vocabulary size, the tokenizer name the config records (``label``) and,
    when the run recorded it, the fingerprint: only the last tells two trained BPEs of the same
    size apart, whose ids mean different words.
    """
    if tok.vocab_size != vocab_size:
        raise ValueError(
            f"tokenizer {tok.name!r} has {tok.vocab_size} ids but the checkpoint {where} was "
            f"built for {vocab_size}: they do not belong together"
        )
    if label is not None and label not in _tokenizer_label(tok):
        raise ValueError(
            f"the checkpoint {where} was trained with tokenizer {label!r}, not {tok.name!r}"
        )
    if fingerprint is not None and tok.fingerprint != fingerprint:
        raise ValueError(
            f"the tokenizer ({tok!r}, fingerprint {tok.fingerprint}) is not the one the "
            f"checkpoint {where} was trained with (fingerprint {fingerprint}), although it has "
            "the same size: its ids would decode to other words"
        )


def load_checkpoint(
    path: str | Path,
    *,
    baseline: str | None = None,
    tokenizer: str | Path | None = None,
    device: str | torch.device = "cpu",
    weights: str = "raw",
) -> Checkpoint:
    """Load a YAN checkpoint, or a baseline one with ``baseline=NAME``.

    Args:
        path: the checkpoint folder.
        baseline: ``gpt2``, ``bart`` or ``masked-diffusion`` for a :func:`save_baseline` folder.
        tokenizer: a tokenizer name or folder; required for a folder without tokenizer files
            whose tokenizer cannot be rebuilt by name, otherwise it must be the checkpoint's
            own (same fingerprint).
        device: where the model runs.
        weights: ``raw`` (the trained weights) or ``ema`` (their moving average, a YAN
            checkpoint trained with ``--ema-decay``).

    Raises:
        FileNotFoundError: the folder or its weights/config are missing.
        ValueError: the tokenizer does not match the checkpoint (size, name, or the fingerprint
            saved with its files or recorded by the run), the baseline kind differs, or a file
            is unreadable (the message names it).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"--checkpoint folder not found: {folder}")
    if weights != "raw" and baseline is not None:
        raise ValueError(f"--weights {weights}: baseline checkpoints hold only their raw weights")
    own = YanTokenizer.load(folder) if (folder / META_FILE).is_file() else None
    given = get_tokenizer(tokenizer) if tokenizer is not None else None
    if own is not None and given is not None and own.fingerprint != given.fingerprint:
        raise ValueError(
            f"--tokenizer {tokenizer} is not the tokenizer saved with the checkpoint {folder} "
            f"({own!r}); drop --tokenizer"
        )
    tok = own or given
    info = read_run_info(folder)
    if baseline is None:
        from yan.checkpoint import CONFIG_NAME, load_config
        from yan.model import YAN

        config = _named(folder / CONFIG_NAME, load_config, folder)
        if tok is None:
            if config.tokenizer in ("llama3", "gpt2"):
                tok = get_tokenizer(config.tokenizer)
            else:
                raise FileNotFoundError(
                    f"checkpoint {folder} has no tokenizer files ({META_FILE}) and its tokenizer "
                    f"{config.tokenizer!r} cannot be rebuilt by name: pass --tokenizer"
                )
        check_tokenizer(
            tok, config.vocab_size, config.tokenizer, str(folder), info.tokenizer_fingerprint
        )
        model: nn.Module = _named(
            folder, lambda f: YAN.from_pretrained(f, device=device, weights=weights), folder
        )
        return Checkpoint(model.eval(), tok, "yan", info, folder)

    from yan.baselines import BASELINES, load_baseline

    if baseline not in BASELINES:
        raise ValueError(f"unknown --baseline {baseline!r}; expected one of {BASELINES}")
    config_path = folder / "config.json"
    if config_path.is_file():
        saved = read_json_object(config_path).get("name")
        if saved is None:
            raise ValueError(
                f"checkpoint {folder} is not a baseline checkpoint (its config.json names no "
                "baseline): drop --baseline to evaluate a YAN checkpoint"
            )
        if saved != baseline:
            raise ValueError(
                f"checkpoint {folder} holds a {saved!r} model, not --baseline {baseline!r}"
            )
    model = _named(folder, lambda f: load_baseline(f, device=str(device)), folder)
    if tok is None:
        raise ValueError(
            f"baseline checkpoint {folder} has no tokenizer files: pass --tokenizer (the name or "
            "folder of the tokenizer it was trained with)"
        )
    cfg = model.config
    check_tokenizer(tok, cfg.vocab_size, None, str(folder), info.tokenizer_fingerprint)
    if (cfg.pad_id, cfg.mask_id) != (tok.pad_id, tok.mask_id):
        raise ValueError(
            f"baseline {folder} uses pad/mask ids {cfg.pad_id}/{cfg.mask_id}, the tokenizer "
            f"{tok.pad_id}/{tok.mask_id}: not the tokenizer it was trained with"
        )
    return Checkpoint(model, tok, baseline, info, folder)


def _named(where: Path, load: Any, folder: Path) -> Any:
    """``load(folder)``, with a bad file's errors turned into one line naming it.

    A config.json with a string where a number belongs fails in ``YANConfig`` with the field's
    name; a truncated ``model.safetensors`` fails inside safetensors with neither.
    """
    from safetensors import SafetensorError

    try:
        return load(folder)
    except SafetensorError as err:
        raise ValueError(
            f"{folder}: the weights file is unreadable ({err}); is it truncated?"
        ) from None
    except (ValueError, TypeError) as err:
        if str(where) in str(err) or str(folder) in str(err):
            raise
        raise ValueError(f"{where}: {err}") from None


def check_task(ckpt: Checkpoint, task: str) -> None:
    """Raise ``ValueError`` for an unknown task or one the checkpoint was not trained for.

    Used by ``yan eval`` and ``yan generate`` alike: a stage-1 autoencoder's latent flow is
    untrained, and a model fine-tuned for one task frames its inputs for that task only.
    Checkpoints without training metadata (a bare ``save_pretrained`` folder) are not refused.
    """
    if task not in TASKS:
        raise ValueError(f"unknown --task {task!r}; expected one of {', '.join(TASKS)}")
    trained = ckpt.info.task
    if trained == "pretrain":
        raise ValueError(
            f"checkpoint {ckpt.path} is a stage-1 autoencoder (task 'pretrain'): its latent flow "
            "is untrained; use a stage-2 or fine-tuned checkpoint"
        )
    if trained is not None and trained != task:
        raise ValueError(
            f"checkpoint {ckpt.path} was trained for task {trained!r}, not --task {task!r}; "
            f"fine-tune it first (yan train --stage finetune --task {task} --init {ckpt.path})"
        )


__all__ = [
    "DEFAULT_TASK_OF_STAGE",
    "TASKS",
    "Checkpoint",
    "RunInfo",
    "check_task",
    "check_tokenizer",
    "load_checkpoint",
    "read_run_info",
]
