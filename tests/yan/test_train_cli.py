"""yan.train_cli: the ``yan train`` flags derived from TrainArgs keep their names, defaults and
meaning; ``--config FILE`` (JSON / YAML, a run's run.json) with flags winning over the file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from yan import train as yan_train
from yan.config import PAPER_LITERAL
from yan.train_args import TrainArgs
from yan.train_cli import MissingArguments, args_from_cli, build_parser, read_config

REQUIRED = ["--out", "o", "--data", "d"]

# Every flag of `yan train` as it was before the parser was derived from the dataclass: the
# tokens that set a field to something other than its default, and the value they give.
GIVEN = {
    "out": (["--out", "o2"], Path("o2")),
    "data": (["--data", "d2"], "d2"),
    "stage": (["--stage", "finetune"], "finetune"),
    "preset": (["--preset", "small"], "small"),
    "model": (["--model", "gpt2"], "gpt2"),
    "task": (["--task", "qa"], "qa"),
    "max_steps": (["--max-steps", "7"], 7),
    "init": (["--init", "ckpt"], Path("ckpt")),
    "resume": (["--resume"], True),
    "batch_size": (["--batch-size", "8"], 8),
    "grad_accum": (["--grad-accum", "2"], 2),
    "lr": (["--lr", "3e-4"], 3e-4),
    "warmup": (["--warmup", "5"], 5),
    "weight_decay": (["--weight-decay", "0.1"], 0.1),
    "grad_clip": (["--grad-clip", "0.5"], 0.5),
    "max_len": (["--max-len", "64"], 64),
    "tokenizer": (["--tokenizer", "gpt2"], "gpt2"),
    "seed": (["--seed", "3"], 3),
    "eval_every": (["--eval-every", "0"], 0),
    "eval_batches": (["--eval-batches", "2"], 2),
    "eval_steps": (["--eval-steps", "8"], 8),
    "save_every": (["--save-every", "50"], 50),
    "log_every": (["--log-every", "1"], 1),
    "keep_checkpoints": (["--keep-checkpoints", "3"], 3),
    "overrides": (["--set", "K=4", "--set", "arch=mamba"], {"K": 4, "arch": "mamba"}),
    "columns": (["--column", "text=review"], {"text": "review"}),
    "sample_by": (["--sample-by", "document"], "document"),
    "stream": (["--stream"], True),
    "strict": (["--strict"], True),
    "data_weights": (["--data-weights", "3,1"], "3,1"),
    "num_workers": (["--num-workers", "2"], 2),
    "device": (["--device", "cpu"], "cpu"),
    "threads": (["--threads", "2"], 2),
    "precision": (["--precision", "bf16"], "bf16"),
    "compile": (["--compile"], True),
    "grad_checkpoint": (["--grad-checkpoint"], True),
    "fused_adamw": (["--fused-adamw", "off"], "off"),
    "progress": (["--no-progress"], False),
    "report_to": (["--report-to", "tensorboard"], "tensorboard"),
    "log_level": (["--log-level", "debug"], "debug"),
    "cache_dir": (["--cache-dir", "cache"], "cache"),
    "debug_rank_dump": (["--debug-rank-dump", "dump"], Path("dump")),
    "overwrite": (["--overwrite"], True),
    "allow_stage1_over_flow": (["--allow-stage1-over-flow"], True),
    "ema_decay": (["--ema-decay", "0.999"], 0.999),
}
# and the defaults those flags had (App. B.3 where the paper gives one)
DEFAULTS = {
    "stage": "1",
    "model": "yan",
    "max_steps": 1000,
    "batch_size": 32,
    "grad_accum": 1,
    "warmup": 1000,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "seed": 0,
    "eval_every": 500,
    "eval_batches": 20,
    "eval_steps": 4,
    "save_every": 1000,
    "log_every": 10,
    "keep_checkpoints": 2,
    "overrides": {},
    "columns": {},
    "sample_by": "line",
    "num_workers": 0,
    "device": "auto",
    "precision": "auto",
    "fused_adamw": "auto",
    "progress": True,
    "report_to": "none",
    "log_level": "info",
}
FALSE_BY_DEFAULT = (
    "resume",
    "stream",
    "strict",
    "overwrite",
    "allow_stage1_over_flow",
    "compile",
    "grad_checkpoint",
)


def parse(*argv: str | Path) -> TrainArgs:
    return args_from_cli(build_parser().parse_args([str(a) for a in argv]))


def every_flag() -> list[str]:
    return [token for tokens, _ in GIVEN.values() for token in tokens]


def test_the_parser_has_one_flag_per_field_with_the_historical_defaults():
    assert set(GIVEN) == {f.name for f in dataclasses.fields(TrainArgs)}
    args = parse(*REQUIRED)
    assert args == TrainArgs(out="o", data="d")
    for f in dataclasses.fields(TrainArgs):
        if f.name in ("out", "data"):
            continue
        want = DEFAULTS.get(f.name, False if f.name in FALSE_BY_DEFAULT else None)
        assert getattr(args, f.name) == want, f.name
    help_text = build_parser().format_help()
    for tokens, _ in GIVEN.values():
        assert tokens[0] in help_text
    assert "optimiser steps in total (default: 1000)" in " ".join(help_text.split())


@pytest.mark.parametrize("name", list(GIVEN))
def test_each_flag_sets_its_field_and_only_that(name):
    tokens, value = GIVEN[name]
    args = parse(*REQUIRED, *tokens)
    assert getattr(args, name) == value
    others = {k: v for k, v in dataclasses.asdict(args).items() if k not in (name, "out", "data")}
    plain = {k: v for k, v in dataclasses.asdict(parse(*REQUIRED)).items() if k in others}
    assert others == plain


def test_paper_literal_flag_sets_the_paper_values_and_set_still_wins():
    args = parse(*REQUIRED, "--paper-literal", "--set", "flow_start=source")
    assert args.overrides == {**PAPER_LITERAL, "flow_start": "source"}
    assert parse(*REQUIRED).overrides == {}


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_run_json_given_to_config_repeats_the_run_arguments(tmp_path, suffix):
    args = parse(*every_flag())
    path = tmp_path / f"run{suffix}"
    if suffix == ".json":  # as the trainer writes DIR/run.json
        path.write_text(json.dumps(args.to_dict(), indent=2) + "\n")
    else:
        yaml = pytest.importorskip("yaml")
        path.write_text(yaml.safe_dump(args.to_dict()))
    again = parse("--config", path)
    assert again == args and again.to_dict() == args.to_dict()


def test_flags_given_win_over_the_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "out": "from-file",
                "data": "wiki-mini",
                "max_steps": 5,
                "seed": 1,
                "progress": False,
                "overrides": {"K": 2, "sigma": 0.5, "flow_start": "source"},
                "columns": {"text": "body"},
            }
        )
    )
    args = parse("--config", path, "--max-steps", "7", "--set", "K=3", "--column", "label=y")
    assert args.out == Path("from-file") and args.data == "wiki-mini"
    assert args.max_steps == 7 and args.seed == 1 and args.progress is False
    assert args.overrides == {"K": 3, "sigma": 0.5, "flow_start": "source"}
    assert args.columns == {"text": "body", "label": "y"}
    # field default < file < --paper-literal < --set
    literal = parse("--config", path, "--paper-literal")
    assert literal.overrides == {"K": 2, "sigma": 0.5, **PAPER_LITERAL}
    again = parse("--config", path, "--paper-literal", "--set", "flow_start=source")
    assert again.overrides["flow_start"] == "source"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"max_step": 3},
            "unknown key 'max_step', not a TrainArgs field; did you mean 'max_steps'",
        ),
        ({"max-steps": 3}, "did you mean 'max_steps'"),
        ({"paper_literal": True}, "unknown key 'paper_literal'"),
        ({"max_steps": "ten"}, "max_steps must be int, got 'ten'"),
        ({"progress": "yes"}, "progress must be bool"),
        ({"stage": "3"}, "stage must be one of 1, 2, finetune, got '3'"),
        ({"out": None}, "out must be Path, got None"),
        ({"columns": {"text": 1}}, "columns must be dict"),
        ([1, 2], "expected a mapping of TrainArgs fields, got list"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_key(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as err:
        read_config(path)
    assert message in str(err.value) and str(path) in str(err.value)
    with pytest.raises(SystemExit) as exit_:
        yan_train.main(["--config", str(path), "--out", str(tmp_path / "o"), "--data", "x"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("yan train: error: --config")
        and message in lines[0]
    )
    assert not (tmp_path / "o").exists()


def test_unreadable_or_missing_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such.json"):
        read_config(tmp_path / "no-such.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"max_steps": 3,')
    with pytest.raises(ValueError, match="not valid JSON"):
        read_config(broken)
    pytest.importorskip("yaml")
    yaml_file = tmp_path / "c.yml"
    yaml_file.write_text("stage: 2\nmax_steps: 9\nlr: 1\n")
    # YAML reads `stage: 2` as a number and `lr: 1` as an integer: both read as meant
    assert read_config(yaml_file) == {"stage": "2", "max_steps": 9, "lr": 1.0}


def test_required_flags_are_reported_as_argparse_did_unless_the_file_gives_them(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        yan_train.main(["--preset", "tiny"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage: yan train" in err
    assert "yan train: error: the following arguments are required: --out, --data" in err
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"out": str(tmp_path / "o")}))
    with pytest.raises(MissingArguments, match="required: --data$"):
        parse("--config", path)
    assert parse("--config", path, "--data", "d") == TrainArgs(out=tmp_path / "o", data="d")
