"""yan.resolve: the task and objective of a stage, and the run's config from a preset or an
--init checkpoint plus --set."""

from __future__ import annotations

import pytest

from yan.config import preset
from yan.resolve import TRAINING_FIELDS, loss_stage, resolve_config, start_for_task, task_of
from yan.tokenizer import get_tokenizer
from yan.train_args import TrainArgs


def test_each_stage_has_its_default_task_and_objective():
    assert task_of(TrainArgs(out="o", data="d", stage="1")) == "pretrain"
    assert task_of(TrainArgs(out="o", data="d", stage="2")) == "infill"
    assert task_of(TrainArgs(out="o", data="d", stage="finetune", task="qa")) == "qa"
    assert [loss_stage(s) for s in ("1", "2", "finetune")] == [1, 2, 2]  # eq. (8), eq. (11)


def test_resolve_config_rules():
    tok = get_tokenizer("gpt2")
    cfg = resolve_config("tiny", {"K": 2}, tok)
    assert cfg.vocab_size == tok.vocab_size and cfg.K == 2 and cfg.tokenizer == "gpt2"
    with pytest.raises(ValueError, match="vocab_size"):
        resolve_config("tiny", {"vocab_size": 10}, tok)
    init = preset("tiny", vocab_size=tok.vocab_size)
    same = resolve_config("tiny", {"alpha_ce": 0.5}, tok, init)
    assert same.alpha_ce == 0.5 and same.d_model == init.d_model
    with pytest.raises(ValueError, match="d_model"):
        resolve_config(None, {"d_model": 64}, tok, init)
    with pytest.raises(ValueError, match="colour"):
        resolve_config(None, {"colour": "blue"}, tok, init)
    # only fields that shape the loss may differ from the checkpoint; the rest keep its values
    assert "alpha_ce" in TRAINING_FIELDS and "d_model" not in TRAINING_FIELDS
    assert resolve_config(None, {"sigma": 0.5}, tok, init) == init.replace(sigma=0.5)


def test_unaligned_tasks_start_from_noise_unless_told_otherwise():
    cfg = preset("tiny")
    assert cfg.flow_start == "source"
    assert start_for_task(cfg, "infill").flow_start == "source"
    assert start_for_task(cfg, "classify").flow_start == "noise"
    assert start_for_task(cfg, "qa", explicit=True).flow_start == "source"
