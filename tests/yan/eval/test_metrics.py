"""yan.eval: metric values against hand computations, failure modes, and report writers."""

from __future__ import annotations

import json

import pytest

from yan.eval import (
    TASKS,
    accuracy,
    bertscore_f1,
    dist2,
    distinct_n,
    evaluate,
    evaluate_generations,
    exact_match,
    markdown_table,
    metrics_for_task,
    normalize_answer,
    rouge,
    score_task,
    self_bleu,
    sem_dist,
    token_f1,
    write_report,
)

# ---------------------------------------------------------------------------------------------
# ROUGE


def test_rouge_hand_computed_pair():
    # pred: the cat sat on the mat / ref: the cat is on the mat (6 words each)
    # unigram overlap the x2, cat, on, mat = 5 -> P = R = 5/6; bigrams: the-cat, on-the, the-mat
    # = 3 of 5 -> 0.6; LCS "the cat on the mat" = 5 -> 5/6.
    r = rouge(["the cat sat on the mat"], ["the cat is on the mat"])
    assert r["rouge1"] == pytest.approx(100 * 5 / 6)
    assert r["rouge2"] == pytest.approx(60.0)
    assert r["rougeL"] == pytest.approx(100 * 5 / 6)


def test_rouge_stems_and_takes_best_reference():
    # Porter stemming maps cats->cat, running/runs->run, so the pair matches fully.
    assert rouge(["cats running"], ["cat runs"])["rouge1"] == pytest.approx(100.0)
    assert rouge(["cats running"], ["cat runs"], use_stemmer=False)["rouge1"] == 0.0
    r = rouge(["a b c d"], [["x y z w", "a b c d"]])
    assert r == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0})


# ---------------------------------------------------------------------------------------------
# EM / F1 / accuracy


def test_squad_normalisation():
    assert normalize_answer("the Cat sat.") == "cat sat"
    assert normalize_answer("  An  apple, a PEAR!  ") == "apple pear"
    assert (
        normalize_answer("<|start_header_id|>assistant<|end_header_id|>\n\nThe end<|eot_id|>")
        == "end"
    )
    # Articles are whole words only: "theatre" and "anna" survive.
    assert normalize_answer("Theatre Anna") == "theatre anna"


def test_exact_match_and_f1_squad_examples():
    assert exact_match(["the Cat sat."], ["cat sat"]) == 100.0
    assert exact_match(["cat sat down"], ["cat sat"]) == 0.0
    # "a cat sat here" -> [cat, sat, here] vs [cat, sat]: P = 2/3, R = 1 -> F1 = 0.8.
    assert token_f1(["a cat sat here"], ["cat sat"]) == pytest.approx(80.0)
    # Bag-of-tokens overlap counts repeated words at most min(count) times:
    # [x, x, y] vs [x, y, y]: common = 2, P = R = 2/3.
    assert token_f1(["x x y"], ["x y y"]) == pytest.approx(100 * 2 / 3)
    assert token_f1(["nothing shared"], ["cat sat"]) == 0.0


def test_multiple_references_take_the_max_and_average_over_examples():
    preds = ["a cat sat here", "Paris"]
    refs = [["dog", "cat sat"], ["London", "paris."]]
    assert token_f1(preds, refs) == pytest.approx((80.0 + 100.0) / 2)
    assert exact_match(preds, refs) == pytest.approx(50.0)


def test_accuracy_compares_only_the_label_word():
    preds = [
        "<|start_header_id|>assistant<|end_header_id|>\n\nSports, I think",  # header ignored
        "sports news about football",  # extra text after the label ignored
        "The Business",  # article stripped
        "World",  # wrong label
        "I think Sports",  # label not first: wrong
    ]
    labels = ["Sports", "Sports", "business", "Sports", "Sports"]
    assert accuracy(preds, labels) == pytest.approx(60.0)
    # Labels like "Sci/Tech" normalise to one word on both sides.
    assert accuracy(["Sci/Tech."], ["Sci/Tech"]) == 100.0


def test_empty_prediction_and_empty_label():
    assert token_f1([""], ["cat"]) == 0.0
    assert exact_match([""], ["the"]) == 100.0  # both normalise to the empty answer (SQuAD)
    with pytest.raises(ValueError, match="label"):
        accuracy(["x"], ["the"])


# ---------------------------------------------------------------------------------------------
# Diversity


def test_dist2_hand_example():
    # bigrams: (a b) (b a) (a b) | (a b) (b c): 3 distinct of 5; n-grams do not span texts.
    assert dist2(["a b a b", "a b c"]) == pytest.approx(0.6)
    assert distinct_n(["a b a b"], n=1) == pytest.approx(0.5)
    assert dist2(["x y", "x y"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2-grams"):
        dist2(["one", "two"])


def test_self_bleu_limits():
    assert self_bleu(["the cat sat on the mat"] * 3) == pytest.approx(100.0)
    disjoint = ["alpha beta gamma delta", "one two three four", "red green blue yellow"]
    assert self_bleu(disjoint) == pytest.approx(0.0, abs=1.0)
    partial = self_bleu(["the cat sat on the mat", "the cat sat on a rug"])
    assert 1.0 < partial < 100.0
    with pytest.raises(ValueError, match="at least 2"):
        self_bleu(["alone"])


# ---------------------------------------------------------------------------------------------
# Embedding-based metrics (the offline MiniLM is loaded once per process and cached)


def test_semdist_identical_zero_and_different_positive():
    assert sem_dist(["a man rides a horse"] * 3) == pytest.approx(0.0, abs=1e-5)
    d = sem_dist(["a man rides a horse", "quarterly tax filing deadlines", "the soup is too salty"])
    assert 0.3 < d <= 2.0


def test_bertscore_identical_and_unrelated():
    same = bertscore_f1(["the cat sat on the mat"], ["the cat sat on the mat"])
    close = bertscore_f1(["the cat sat on the mat"], ["a cat was sitting on the mat"])
    unrelated = bertscore_f1(["quantum chromodynamics"], ["a recipe for banana bread"])
    assert same > 99.0
    assert unrelated < close < same
    # Max over references: adding the exact reference lifts the score to the identical case.
    multi = bertscore_f1(["quantum chromodynamics"], [["banana bread", "quantum chromodynamics"]])
    assert multi > 99.0


def test_bertscore_unknown_layer_for_custom_model():
    with pytest.raises(ValueError, match="num_layers"):
        bertscore_f1(["a"], ["a"], model_type="/some/local/model")


# ---------------------------------------------------------------------------------------------
# Task mapping, score_task(), failure modes


def test_metrics_for_task_mapping():
    assert metrics_for_task("infill") == ("rouge1", "rouge2", "rougeL")
    assert metrics_for_task("last-word") == ("em", "bertscore_f1")
    assert metrics_for_task("qa") == ("f1", "bertscore_f1", "em")
    assert metrics_for_task("classify") == ("accuracy",)
    assert set(TASKS) == {"infill", "last-word", "qa", "classify"}


def test_evaluate_per_task_without_bertscore():
    assert score_task("qa", ["the Cat sat."], ["cat sat"], bertscore=False) == {
        "f1": 100.0,
        "em": 100.0,
    }
    assert score_task("last-word", ["mat.", "dog"], ["mat", "cat"], bertscore=False) == {"em": 50.0}
    assert score_task("classify", ["World news", "Sports"], ["world", "business"]) == {
        "accuracy": 50.0
    }
    infill = score_task("infill", ["the cat sat on the mat"], ["the cat is on the mat"])
    assert list(infill) == ["rouge1", "rouge2", "rougeL"]


def test_evaluate_with_bertscore_and_diversity(tmp_path):
    res = evaluate_generations(
        "qa",
        ["on the mat", "a big dog", "near the old tree"],
        ["on the mat", "the cat", "in the house"],
        diversity=True,
        json_path=tmp_path / "r.json",
        md_path=tmp_path / "r.md",
        name="gpt2",
    )
    assert list(res) == ["f1", "bertscore_f1", "em", "dist2", "self_bleu", "semdist"]
    assert res["em"] == pytest.approx(100 / 3)
    assert res["f1"] == pytest.approx(100 / 3)  # the other two share no token with their refs
    assert 100 / 3 < res["bertscore_f1"] < 100.0
    assert res["dist2"] == pytest.approx(1.0)  # 1 + 2 + 3 bigrams, all distinct
    assert json.loads((tmp_path / "r.json").read_text())["gpt2"]["em"] == pytest.approx(100 / 3)
    assert "| gpt2 | 33.33 |" in (tmp_path / "r.md").read_text()


@pytest.mark.parametrize(
    ("task", "preds", "refs", "match"),
    [
        ("qa", ["a", "b"], ["a"], "differ in count"),
        ("summarise", ["a"], ["a"], "unknown task"),
        ("qa", [], [], "empty"),
        ("qa", ["a"], [[]], r"references\[0\]"),
        ("qa", "a", "a", "lists of strings"),
    ],
)
def test_evaluate_bad_input(task, preds, refs, match):
    with pytest.raises(ValueError, match=match):
        score_task(task, preds, refs, bertscore=False)


# ---------------------------------------------------------------------------------------------
# Report writers


def test_write_report_round_trip(tmp_path):
    results = {"yan": {"rouge1": 94.6, "rougeL": 93.61}, "gpt2": {"rouge1": 68.9}}
    write_report(results, tmp_path / "a" / "r.json", tmp_path / "a" / "r.md")
    assert json.loads((tmp_path / "a" / "r.json").read_text()) == results
    md = (tmp_path / "a" / "r.md").read_text().splitlines()
    assert md[0] == "| run | rouge1 | rougeL |"
    assert md[2] == "| yan | 94.60 | 93.61 |"
    assert md[3] == "| gpt2 | 68.90 | - |"
    assert markdown_table(results, digits=1).splitlines()[2] == "| yan | 94.6 | 93.6 |"


def test_write_report_bad_input(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        write_report({}, tmp_path / "r.json", None)
    with pytest.raises(ValueError, match="non-numeric"):
        write_report({"m": {"f1": "high"}}, tmp_path / "r.json", None)
    with pytest.raises(ValueError, match="json_path"):
        write_report({"m": {"f1": 1.0}}, None, None)


def test_evaluate_is_the_earlier_name_of_score_task():
    assert evaluate is score_task
    scores = evaluate_generations("last-word", ["mat.", "dog"], ["mat", "cat"], bertscore=False)
    assert scores == score_task("last-word", ["mat.", "dog"], ["mat", "cat"], bertscore=False)
