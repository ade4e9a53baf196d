"""yan bench learn: scoring against hand counts, the last-word framing, the trivial references,
and the whole benchmark end to end at tiny sizes (records, report, figure, reuse of runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from yan.bench.cli import main as bench_main
from yan.bench.learn import (
    MODELS,
    TASKS,
    LearnConfig,
    TaskData,
    label_share,
    last_word_examples,
    markdown_report,
    score_task,
    token_scores,
    trivial_records,
)
from yan.data.tasks import Example

MASK = 9


class CharTok:
    """Ids are characters 'a' + id; 8 is padding, 9 is <|mask|>."""

    pad_id, mask_id, vocab_size = 8, MASK, 10

    def decode(self, ids):
        return "".join("" if i in (8, 9) else chr(ord("a") + i) for i in ids)


def test_token_scores_count_all_and_masked_positions():
    examples = [
        Example([0, MASK, 2, MASK], [0, 1, 2, 3]),
        Example([4, 5], [4, 5]),
    ]
    generated = [[0, 1, 7, 7], [4]]  # second row is one token short: a miss
    scores = token_scores(examples, generated, MASK)
    assert scores["token_acc"] == pytest.approx(3 / 6)
    assert scores["masked_acc"] == pytest.approx(1 / 2)
    assert "masked_acc" not in token_scores(examples[1:], [[4, 5]], MASK)


def test_last_word_examples_mask_the_word_at_the_end_and_fit_max_len():
    pairs = [Example(list(range(10)), [11, 12]), Example([], [1]), Example([1, 2], [])]
    out = last_word_examples(pairs, MASK, max_len=6)
    assert len(out) == 1, "empty sources or targets are skipped"
    (ex,) = out
    assert ex.src_ids == [6, 7, 8, 9, MASK, MASK] and ex.tgt_ids == [6, 7, 8, 9, 11, 12]
    assert ex.meta["masked"] == [4, 5]


def test_score_task_last_word_exact_match_and_classification_labels():
    tok = CharTok()
    ex = Example([0, 1, MASK, MASK], [0, 1, 2, 3], {"masked": [2, 3]})
    right = score_task("last-word", [ex], [[0, 1, 2, 3]], tok)
    assert right["exact_match"] == 1.0 and right["masked_acc"] == 1.0
    assert right["rouge1"] == pytest.approx(100.0)
    wrong = score_task("last-word", [ex], [[0, 1, 2, 4]], tok)
    assert wrong["exact_match"] == 0.0 and wrong["masked_acc"] == 0.5
    cls = [Example([0], [1, 8], {"target": "b"}), Example([0], [2, 8], {"target": "c"})]
    assert score_task("classify", cls, [[1, 8], [1, 8]], tok) == {"label_acc": 0.5}


def test_trivial_references():
    tok = CharTok()
    infill = [Example([0, MASK, 2], [0, 1, 2]), Example([MASK, 4], [1, 4])]
    cls = [Example([0], [1], {"target": lab}) for lab in ("good", "good", "bad")]
    data = TaskData(
        examples={
            "copy": [Example(e.tgt_ids, e.tgt_ids) for e in infill],
            "infill": infill,
            "last-word": [Example([0, MASK], [0, 1], {"masked": [1]})],
            "classify": cls,
        },
        unigram_id=1,
        train_texts=["great fun", "great film", "dull film", "really great"],
        train_labels=["good", "good", "bad", "good"],
    )
    recs = {(r["task"], r["model"], r["metric"]): r["value"] for r in trivial_records(data, tok)}
    assert recs["copy", "copy-source", "token_acc"] == 1.0
    assert recs["infill", "copy-source", "token_acc"] == pytest.approx(3 / 5)
    assert recs["infill", "copy-source", "masked_acc"] == 0.0
    assert recs["infill", "unigram", "masked_acc"] == 1.0  # every masked token is the unigram
    assert recs["last-word", "unigram", "exact_match"] == 1.0
    assert recs["classify", "majority", "label_acc"] == pytest.approx(2 / 3)
    assert 0.0 <= recs["classify", "tfidf-logreg", "label_acc"] <= 1.0
    assert recs["classify", "majority", "label_share"] == 1.0
    assert 1 / 3 <= recs["classify", "tfidf-logreg", "label_share"] <= 1.0


def test_label_share_flags_a_constant_classifier():
    assert label_share([[1, 8]] * 4) == 1.0
    assert label_share([[1, 8], [2, 8], [1, 8], [2, 8]]) == 0.5
    assert label_share(["good", "good", "bad"]) == pytest.approx(2 / 3)
    assert label_share([]) == 0.0


def write_corpora(folder):
    rng = np.random.default_rng(0)
    words = "river mountain city music science history water light garden winter".split()
    text = folder / "text.txt"
    text.write_text(
        "\n".join(f"The {' '.join(rng.choice(words, 8))} ends {w}." for w in rng.choice(words, 80))
        + "\n"
    )
    labelled = folder / "labels.jsonl"
    rows = [
        {
            "text": f"a {'fine' if i % 2 else 'poor'} {' '.join(rng.choice(words, 5))}",
            "label": "positive" if i % 2 else "negative",
        }
        for i in range(80)
    ]
    labelled.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return text, labelled


def test_learn_bench_label_choices_are_the_padded_training_labels(tmp_path, monkeypatch):
    from yan.bench.learn import task_data
    from yan.tokenizer import YanTokenizer

    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path / "cache"))
    text, labelled = write_corpora(tmp_path)
    # "positive" is frequent enough to become fewer tokens than "negative"
    tok = YanTokenizer.train(text.read_text().splitlines() + ["positive"] * 50, vocab_size=300)
    assert len(tok.encode("positive")) < len(tok.encode("negative"))
    cfg = LearnConfig(data=str(text), classify_data=str(labelled), max_len=24, eval_examples=6)
    data = task_data(cfg, tok)
    # both labels padded to one length
    assert len(data.label_choices) == 2 and len({len(c) for c in data.label_choices}) == 1
    assert any(tok.pad_id in c for c in data.label_choices)
    assert sorted(tok.decode(c) for c in data.label_choices) == ["negative", "positive"]
    # a padded candidate decodes to its label: choosing the right one scores 1
    test = data.examples["classify"]
    right = [next(c for c in data.label_choices if tok.decode(c) == e.meta["target"]) for e in test]
    assert score_task("classify", test, right, tok) == {"label_acc": 1.0}


def test_learn_bench_end_to_end_at_tiny_size(tmp_path, monkeypatch):
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path / "cache"))
    text, labelled = write_corpora(tmp_path)
    cfg = LearnConfig(
        preset="tiny",
        data=str(text),
        classify_data=str(labelled),
        max_len=24,
        batch_size=4,
        warmup=1,
        stage1_steps=2,
        stage2_steps=2,
        finetune_steps=1,
        T=(1, 2),
        routings=("frozen", "argmax"),
        diffusion_T=(2,),
        eval_examples=6,
        work=tmp_path / "work",
        progress=False,
    )
    from yan.bench.learn import learn_main

    paths = learn_main(cfg, tmp_path / "out", tmp_path / "records.json")
    records = json.loads((tmp_path / "records.json").read_text())
    assert isinstance(records, list) and records
    for r in records:
        assert {
            "task",
            "model",
            "metric",
            "value",
            "T",
            "routing",
            "steps",
            "train_seconds",
        } <= set(r)
        assert r["task"] in TASKS
        assert r["model"] in MODELS or r["model"].endswith(("-no-flow", "-keep-visible"))
        assert 0.0 <= r["value"] <= (100.0 if r["metric"].startswith("rouge") else 1.0)
    models = {r["model"] for r in records}
    assert set(MODELS) <= models
    yan = [r for r in records if r["model"] == "yan-trf" and r["task"] == "infill"]
    assert {(r["T"], r["routing"]) for r in yan if r["metric"] == "masked_acc"} == {
        (1, "frozen"),
        (1, "argmax"),
        (2, "frozen"),
        (2, "argmax"),
    }
    assert {r["steps"] for r in yan if r["metric"] != "expert_share"} == {4}
    shares = [r for r in yan if r["metric"] == "expert_share"]
    for t in (0.0, 0.5):
        assert sum(r["value"] for r in shares if r["t"] == t) == pytest.approx(1.0, abs=1e-4)
    baseline = [r for r in records if r["model"] == "gpt2" and r["task"] == "infill"]
    assert {r["steps"] for r in baseline} == {4}, "baselines get YAN's two stages' steps"
    classify = [r for r in records if r["model"] == "masked-diffusion" and r["task"] == "classify"]
    assert {r["steps"] for r in classify} == {5}
    for name in ("gpt2", "masked-diffusion"):  # trained by YAN's trainer, as YAN is
        infill = json.loads((cfg.work / name / "infill" / "run.json").read_text())
        tuned = json.loads((cfg.work / name / "classify" / "run.json").read_text())
        assert (infill["model"], infill["stage"], infill["max_steps"]) == (name, "2", 4)
        assert (tuned["model"], tuned["stage"], tuned["max_steps"]) == (name, "finetune", 1)
        assert Path(tuned["init"]) == cfg.work / name / "infill"
        assert infill["lr"] == tuned["lr"] == cfg.lr and infill["batch_size"] == cfg.batch_size
    # every generative model: rank classification and free generation, per T
    settings = {"yan-trf": (1, 2), "yan-mamba": (1, 2), "masked-diffusion": (2,), "gpt2": (None,)}
    for model, Ts in settings.items():
        got = {
            (r["T"], r["metric"]) for r in records if (r["model"], r["task"]) == (model, "classify")
        }
        metrics = ("label_acc", "label_share", "label_acc_free")
        assert got == {(T, m) for T in Ts for m in metrics}, model
        for r in records:
            if (r["model"], r["task"], r["metric"]) == (model, "classify", "label_share"):
                assert 0.5 <= r["value"] <= 1.0  # two labels: the most frequent has >= half
    assert paths["figure"].stat().st_size > 0
    report = paths["markdown"].read_text()
    for task in TASKS:
        assert f"## {task}" in report
    assert "label_acc_free" in report and "rank classification" in report
    assert "Gate: mean expert probability" in report
    # a rerun reuses every trained model and gives the same numbers
    stamps = {p: p.stat().st_mtime_ns for p in cfg.work.rglob("model.safetensors")}
    again = learn_main(cfg, tmp_path / "out2")
    assert {p: p.stat().st_mtime_ns for p in cfg.work.rglob("model.safetensors")} == stamps
    rerun = json.loads(again["json"].read_text())

    def without_fit_time(recs):  # TF-IDF is refitted (a second); everything else is reused
        return [{**r, "train_seconds": 0} if r["model"] == "tfidf-logreg" else r for r in recs]

    assert without_fit_time(rerun) == without_fit_time(records)


def test_learn_config_rejects_bad_values():
    with pytest.raises(ValueError, match="stage2_steps"):
        LearnConfig(stage2_steps=0)
    with pytest.raises(ValueError, match="unknown archs"):
        LearnConfig(archs=("rnn",))
    with pytest.raises(ValueError, match="unknown baselines"):
        LearnConfig(baselines=("bart",))


def test_learn_report_from_records_alone():
    recs = [
        {
            "task": "infill",
            "model": "yan-trf",
            "metric": "masked_acc",
            "value": 0.1,
            "T": 3,
            "routing": "frozen",
            "steps": 10,
            "train_seconds": 1.0,
        },
        {
            "task": "infill",
            "model": "yan-trf",
            "metric": "masked_acc",
            "value": 0.2,
            "T": 1,
            "routing": "argmax",
            "steps": 10,
            "train_seconds": 1.0,
        },
        {
            "task": "infill",
            "model": "unigram",
            "metric": "masked_acc",
            "value": 0.05,
            "T": None,
            "routing": None,
            "steps": 0,
            "train_seconds": 0.0,
        },
    ]
    meta = {
        "config": LearnConfig().__dict__ | {"work": "w"},
        "examples": {},
        "unigram_token": "x",
        "threads": 1,
        "seconds": 1.0,
    }
    report = markdown_report(recs, meta)
    headline = report.split("## YAN")[0]
    assert "| yan-trf | 3 | frozen | 10.0" in headline and "argmax" not in headline
    assert "| unigram | - | - | 5.0" in headline


def test_cli_runs_learn(monkeypatch, tmp_path):
    called = {}

    def fake(cfg, out, json_path):
        called.update(cfg=cfg, out=out, json=json_path)
        return {}

    monkeypatch.setattr("yan.bench.learn.learn_main", fake)
    bench_main(["learn", "--quick", "--json", str(tmp_path / "r.json"), "--work", str(tmp_path)])
    assert called["cfg"].stage2_steps == LearnConfig.quick().stage2_steps
    assert called["cfg"].work == tmp_path and called["json"] == tmp_path / "r.json"
    assert called["cfg"].overrides == {}
    assert torch.get_num_threads() >= 1
    bench_main(["learn", "--quick", "--set", "expert_assignment=cluster", "--set", "K=12"])
    assert called["cfg"].overrides == {"expert_assignment": "cluster", "K": 12}


def test_ngram_filler_backs_off_from_pair_to_left_neighbour_to_unigram():
    from yan.bench.learn import NgramFiller

    M = 99
    ngram = NgramFiller([[1, 2, 3], [1, 2, 3], [1, 4, 5], [7, 7, 7, 7]])
    assert ngram.top == 7
    # both neighbours visible and seen as a pair: the token seen between them
    assert ngram.fill([1, M, 5], M) == [1, 4, 5]
    assert ngram.fill([1, M, 3], M) == [1, 2, 3]
    # right neighbour masked or unseen pair: the most frequent successor of the left one
    assert ngram.fill([1, M, M], M)[1] == 2
    assert ngram.fill([1, M, 8], M)[1] == 2
    # no visible left neighbour: the unigram token
    assert ngram.fill([M, 2, 3], M) == [7, 2, 3]
    with pytest.raises(ValueError, match="at least one"):
        NgramFiller([])
