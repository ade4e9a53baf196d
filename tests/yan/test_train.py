"""yan.train: stage 1 -> stage 2 -> fine-tune on tiny offline data, resume, atomic checkpoints,
metrics, plot-run and bad-input errors. Everything runs in-process with the ``tiny`` preset."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from yan import train as yan_train
from yan.demo import main as demo_main
from yan.generate import main as generate_main
from yan.model import YAN
from yan.optim import warmup_factor
from yan.plot_run import main as plot_main
from yan.run_state import checkpoint_dirs, read_metrics
from yan.tokenizer import YanTokenizer, get_tokenizer

WORDS = (
    "river mountain city music science history water light garden winter summer forest "
    "engine village market language story teacher ocean island bridge castle painter"
).split()


def write_corpus(path: Path, lines: int = 120, seed: int = 0) -> Path:
    """Distinct sentences of a small vocabulary: quick to tokenise, learnable structure."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(lines):
        words = rng.choice(WORDS, size=int(rng.integers(8, 14)))
        rows.append(f"Item {i}: the " + " ".join(words) + ".")
    path.write_text("\n".join(rows) + "\n")
    return path


FAST = [
    "--batch-size",
    "4",
    "--warmup",
    "2",
    "--log-every",
    "1",
    "--eval-batches",
    "2",
    "--no-progress",
]


def run(*argv: str | Path) -> yan_train.TrainResult:
    return yan_train.main([str(a) for a in argv])


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path_factory.getbasetemp() / "yan-cache"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("data") / "corpus.txt")


@pytest.fixture(scope="module")
def stages(tmp_path_factory, corpus) -> dict[str, Path]:
    """Stage 1 (6 steps) then stage 2 from it (4 steps), shared by several tests."""
    root = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("YAN_DATA_CACHE", str(tmp_path_factory.getbasetemp() / "yan-cache"))
    try:
        run(
            "--preset",
            "tiny",
            "--data",
            corpus,
            "--stage",
            "1",
            "--max-steps",
            "6",
            "--out",
            root / "s1",
            "--eval-every",
            "3",
            *FAST,
        )
        run(
            "--preset",
            "tiny",
            "--data",
            corpus,
            "--stage",
            "2",
            "--init",
            root / "s1",
            "--max-steps",
            "4",
            "--out",
            root / "s2",
            *FAST,
        )
    finally:
        mp.undo()
    return {"s1": root / "s1", "s2": root / "s2"}


def test_stage1_output_is_loadable_and_trains_only_the_autoencoder(stages):
    model = YAN.from_pretrained(stages["s1"])
    tok = YanTokenizer.load(stages["s1"])
    assert tok.name == "bpe" and model.config.vocab_size == tok.vocab_size
    torch.manual_seed(0)  # the run's seed: the initial weights are reproducible
    init = YAN(model.config)
    trained, start = model.state_dict(), init.state_dict()
    assert all(torch.equal(trained[k], start[k]) for k in start if k.startswith("flow."))
    assert any(not torch.equal(trained[k], start[k]) for k in start if k.startswith("encoder."))
    rows = read_metrics(stages["s1"])
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 7))
    assert {"loss", "ce", "mmd", "scale", "lr", "tokens_per_s", "elapsed", "stage"} <= set(
        train_rows[0]
    )
    # linear warm-up over 2 steps from 0, then constant (App. B.3)
    assert [r["lr"] for r in train_rows[:3]] == pytest.approx([5e-5, 1e-4, 1e-4])
    val = [r for r in rows if r["kind"] == "val"]
    assert [r["step"] for r in val] == [3, 6] and 0 <= val[-1]["val_recon_acc"] <= 1


def test_stage2_keeps_the_autoencoder_frozen_and_trains_the_flow(stages):
    s1, s2 = (YAN.from_pretrained(stages[k]).state_dict() for k in ("s1", "s2"))
    for k in s1:
        if k.startswith(("encoder.", "decoder.")):
            assert torch.equal(s1[k], s2[k]), k
    assert any(not torch.equal(s1[k], s2[k]) for k in s1 if k.startswith("flow."))
    last = [r for r in read_metrics(stages["s2"]) if r["kind"] == "val"][-1]
    assert {"val_loss", "val_token_acc", "val_masked_acc"} <= set(last)


@pytest.mark.filterwarnings("ignore:qa. .* truncated")
def test_finetune_on_an_offline_qa_corpus_then_generate(stages, tmp_path, capsys):
    out = tmp_path / "ft"
    res = run(
        "--stage", "finetune", "--task", "qa", "--data", "chatterbot-qa", "--init", stages["s2"],
        "--max-steps", "3", "--out", out, "--batch-size", "4", "--log-every", "1",
        "--eval-batches", "1", "--no-progress",
    )  # fmt: skip
    assert res.step == 3
    rows = [r for r in read_metrics(out) if r["kind"] == "train"]
    assert rows[0]["lr"] == pytest.approx(1e-5 / 1000)  # fine-tuning rate, 1000 warm-up steps
    capsys.readouterr()
    records = generate_main(
        ["--checkpoint", str(out), "--task", "qa", "--text", "What is AI?", "--length", "3"]
    )
    assert records[0]["length"] == 3
    assert capsys.readouterr().out.strip() == records[0]["generation"].strip()


def test_resume_continues_exactly(corpus, tmp_path):
    common = [
        "--preset",
        "tiny",
        "--data",
        corpus,
        "--stage",
        "1",
        "--grad-accum",
        "2",
        "--eval-every",
        "2",
        "--save-every",
        "0",
        *FAST,
    ]
    run(*common, "--max-steps", "6", "--out", tmp_path / "straight")
    run(*common, "--max-steps", "3", "--out", tmp_path / "split")
    res = run(*common, "--max-steps", "6", "--out", tmp_path / "split", "--resume")
    assert res.step == 6
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def losses(folder):
        return [
            (r["step"], r["loss"], r["mmd"]) for r in read_metrics(folder) if r["kind"] == "train"
        ]

    assert losses(tmp_path / "straight") == losses(tmp_path / "split")
    # a finished run resumed again does nothing
    again = run(*common, "--max-steps", "6", "--out", tmp_path / "split", "--resume")
    assert again.step == 6 and losses(tmp_path / "split") == losses(tmp_path / "straight")


def test_crash_during_save_keeps_the_previous_checkpoint(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    common = [
        "--preset",
        "tiny",
        "--data",
        corpus,
        "--stage",
        "1",
        "--save-every",
        "2",
        "--eval-every",
        "0",
        *FAST,
    ]
    real_save, calls = torch.save, []

    def crashing_save(obj, path, *a, **kw):
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint dies half-written
            Path(path).write_bytes(b"partial")
            raise OSError("disk full (simulated)")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(yan_train.torch, "save", crashing_save)
    with pytest.raises(OSError, match="simulated"):
        run(*common, "--max-steps", "4", "--out", out)
    monkeypatch.setattr(yan_train.torch, "save", real_save)
    assert [p.name for p in checkpoint_dirs(out)] == ["step-00000002"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000002"]
    exported = YAN.from_pretrained(out).state_dict()
    kept = YAN.from_pretrained(out / "checkpoints" / "step-00000002").state_dict()
    assert all(torch.equal(exported[k], kept[k]) for k in kept)
    res = run(*common, "--max-steps", "4", "--out", out, "--resume")
    assert res.step == 4
    run(*common, "--max-steps", "4", "--out", tmp_path / "straight")
    a, b = (
        load_file(str(out / "model.safetensors")),
        load_file(str(tmp_path / "straight" / "model.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--set", "K=2"], "config.K"),
        (["--batch-size", "8"], "batch_size"),
        (["--lr", "3e-4"], "lr"),
    ],
)
def test_incompatible_resume_is_refused_and_nothing_is_lost(
    stages, tmp_path, capsys, change, message
):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(stages["s1"], out)
    before = _snapshot(out)
    with pytest.raises(SystemExit) as err:
        run(
            "--preset",
            "tiny",
            "--data",
            "unused.txt",
            "--stage",
            "1",
            "--max-steps",
            "8",
            "--out",
            out,
            "--resume",
            *FAST,
            *change,
        )
    assert err.value.code == 2
    text = capsys.readouterr().err
    assert "--resume" in text and message in text
    assert _snapshot(out) == before


def test_run_json_given_to_config_repeats_the_run(stages, tmp_path):
    saved = json.loads((stages["s1"] / "run.json").read_text())
    args = yan_train.args_from_cli(
        yan_train.build_parser().parse_args(["--config", str(stages["s1"] / "run.json")])
    )
    assert args.to_dict() == saved
    assert (args.out, args.stage, args.max_steps, args.eval_every) == (stages["s1"], "1", 6, 3)
    assert args.progress is False and args.batch_size == 4
    # the flags given win: the same run, continued in another folder for more steps
    more = yan_train.args_from_cli(
        yan_train.build_parser().parse_args(
            ["--config", str(stages["s1"] / "run.json"), "--out", str(tmp_path), "--max-steps", "9"]
        )
    )
    assert more.out == tmp_path and more.max_steps == 9 and more.eval_every == 3


def test_names_imported_from_yan_train_are_still_there():
    from yan import config, resolve, train_args, train_cli
    from yan.data import training

    homes = {
        "TrainArgs": train_args,
        "build_parser": train_cli,
        "args_from_cli": train_cli,
        "resolve_config": resolve,
        "start_for_task": resolve,
        "TRAINING_FIELDS": resolve,
        "ALIGNED_TASKS": resolve,
        "mask_batch": training,
        "parse_override": config,
    }
    for name, home in homes.items():
        assert getattr(yan_train, name) is getattr(home, name), name
    assert callable(yan_train.Trainer.validate)  # was Trainer.evaluate


def test_out_with_a_run_needs_resume(stages, capsys):
    with pytest.raises(SystemExit):
        run("--preset", "tiny", "--data", "x.txt", "--max-steps", "1", "--out", stages["s1"])
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "nope"], "invalid choice"),
        (["--task", "poetry"], "invalid choice"),
        (["--data", "missing.txt"], "not found"),
        (["--data", "{corpus}", "--column", "text=review"], "column 'review'"),
        (["--data", "{empty}"], "empty"),
        (["--stage", "finetune"], "needs --task"),
        (["--stage", "finetune", "--task", "qa"], "needs --init"),
        (["--stage", "2", "--task", "pretrain"], "--task infill"),
        (["--grad-accum", "3"], "divisible"),
        (["--set", "colour=blue"], "colour"),
        (["--max-len", "1000"], "max_len"),
        (["--init", "no/such/dir"], "--init"),
        (["--max-steps", "0"], "--max-steps"),
    ],
)
def test_bad_input_gives_a_clear_error(tmp_path, corpus, capsys, argv, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    argv = [a.format(corpus=corpus, empty=empty) for a in argv]
    with pytest.raises(SystemExit) as err:  # argparse: the last of a repeated flag wins
        run(
            "--preset",
            "tiny",
            "--data",
            corpus,
            "--max-steps",
            "1",
            *argv,
            "--out",
            tmp_path / "out",
            *FAST,
        )
    assert err.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_init_with_another_preset_is_refused(stages, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(
            "--preset",
            "small",
            "--data",
            "x.txt",
            "--stage",
            "2",
            "--init",
            stages["s1"],
            "--max-steps",
            "1",
            "--out",
            tmp_path / "o",
            *FAST,
        )
    assert "architecture of the --init checkpoint" in capsys.readouterr().err


def test_long_texts_truncate_with_a_warning_or_fail_with_strict(tmp_path, capsys):
    qa = tmp_path / "qa.jsonl"
    long_context = " ".join(WORDS * 20)
    qa.write_text(
        "\n".join(
            json.dumps({"context": long_context, "question": f"q{i}?", "answer": "a"})
            for i in range(12)
        )
        + "\n"
    )
    tok = get_tokenizer("gpt2")
    tok_dir = tmp_path / "tok"
    tok.save(tok_dir)
    common = [
        "--preset",
        "tiny",
        "--data",
        qa,
        "--stage",
        "1",
        "--task",
        "qa",
        "--max-steps",
        "1",
        "--tokenizer",
        tok_dir,
        "--set",
        "d_model=16",
        "--set",
        "n_heads=2",
    ]
    with pytest.raises(SystemExit):
        run(*common, "--strict", "--out", tmp_path / "strict", *FAST)
    assert "strict" in capsys.readouterr().err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(*common, "--out", tmp_path / "lenient", *FAST)
    assert any("truncated" in str(w.message) for w in caught)


@pytest.mark.filterwarnings("ignore:stage 2 without --init")
def test_streamed_pretraining_with_infill_framing(tmp_path):
    corpus = write_corpus(tmp_path / "stream.txt", lines=300)
    tok_dir = tmp_path / "tok"
    YanTokenizer.train(corpus.read_text().splitlines(), vocab_size=300).save(tok_dir)
    res = run(
        "--preset",
        "tiny",
        "--data",
        corpus,
        "--stream",
        "--stage",
        "2",
        "--max-steps",
        "2",
        "--tokenizer",
        tok_dir,
        "--out",
        tmp_path / "s",
        *FAST,
    )
    assert res.step == 2 and "val_masked_acc" in res.val


def test_warmup_is_linear_from_zero_then_constant():
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_plot_run_writes_a_png(stages, tmp_path, capsys):
    out = plot_main([str(stages["s2"]), "--out", str(tmp_path / "curves.png")])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    with pytest.raises(SystemExit):
        plot_main([str(tmp_path)])
    assert "metrics.jsonl" in capsys.readouterr().err


def test_demo_trains_both_stages_and_reruns_without_training(corpus, tmp_path, capsys):
    argv = ["--out", str(tmp_path / "demo"), "--preset", "tiny", "--data", str(corpus),
            "--stage1-steps", "3", "--stage2-steps", "2", "--eval-examples", "8",
            "--examples", "1", "--threads", "1", "--no-progress", "--warmup", "1"]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        first = demo_main(argv)
    finally:
        torch.set_num_threads(threads)  # the demo sets the process-wide thread count
    text = capsys.readouterr().out
    assert "source:" in text and "reference:" in text and "masked tokens" in text
    for key in ("stage1_reconstruction_acc", "stage2_infill_masked_acc", "stage2_infill_all_acc"):
        assert 0.0 <= first[key] <= 1.0
    assert (tmp_path / "demo" / "stage2_loss.png").is_file()
    try:
        second = demo_main(argv)  # finished stages are reused, the evaluation is the same
    finally:
        torch.set_num_threads(threads)
    assert second["stage2_train_seconds"] == first["stage2_train_seconds"]
    assert second["stage2_infill_all_acc"] == first["stage2_infill_all_acc"]


def test_weight_decay_skips_biases_norms_and_marked_parameters():
    from yan.optim import build_optimizer

    model = YAN.from_preset("tiny", arch="mamba")
    opt = build_optimizer(model.parameters(), 1e-3, weight_decay=0.1)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    named = dict(model.named_parameters())
    assert id(named["flow.head.weight"]) in decayed
    assert id(named["encoder.embed.weight"]) in decayed
    for name, p in named.items():
        if name.endswith((".A_log", ".D", ".bias")) or "norm" in name:
            assert id(p) not in decayed, name
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)


def test_every_rank_and_micro_batch_of_a_step_unrolls_the_same_ce_steps(
    stages, corpus, tmp_path, monkeypatch
):
    seen: list[int | None] = []
    loss = YAN.stage2_loss

    def spy(self, batch, *, generator=None, ce_steps=None):
        if self.training:  # validation draws its own, seeded
            seen.append(ce_steps)
        return loss(self, batch, generator=generator, ce_steps=ce_steps)

    monkeypatch.setattr(YAN, "stage2_loss", spy)
    argv = ["--data", corpus, "--stage", "2", "--init", stages["s1"], "--grad-accum", "2"]
    argv += ["--max-steps", "6", "--eval-every", "0", "--set", "ce_steps=[1,2,3,8]", *FAST]
    run(*argv, "--out", tmp_path / "a")
    first = list(seen)
    assert first[0::2] == first[1::2]  # the two micro-batches of a step
    assert set(first) <= {1, 2, 3, 8} and len(set(first)) > 1
    seen.clear()
    run(*argv, "--out", tmp_path / "b", "--seed", "0")
    assert seen == first  # a function of the seed and the step, as a resume needs


def test_a_resumed_run_trains_with_the_thread_count_it_was_saved_with(
    corpus, tmp_path, monkeypatch
):
    from yan.run_state import STATE_FILE

    out = tmp_path / "run"
    base = ["--preset", "tiny", "--data", corpus, "--out", out, "--save-every", "2", *FAST]
    before = torch.get_num_threads()
    run(*base, "--max-steps", "2", "--threads", "1")
    assert torch.get_num_threads() == before  # the CLI gives the caller its setting back
    saved = json.loads((checkpoint_dirs(out)[-1] / STATE_FILE).read_text())
    assert saved["threads"] == 1
    seen = []
    loss = YAN.stage1_loss

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return loss(self, *args, **kwargs)

    monkeypatch.setattr(YAN, "stage1_loss", spy)
    monkeypatch.setattr(yan_train, "apply_threads", lambda n: torch.set_num_threads(2) or 2)
    run(*base, "--max-steps", "4", "--resume")  # no --threads: the checkpoint's count
    assert seen and set(seen) == {1}
