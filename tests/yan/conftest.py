"""Fixtures shared by the run-folder tests: an isolated data cache and a small text corpus."""

from pathlib import Path

import numpy as np
import pytest

WORDS = "river mountain city music science history water light garden winter forest".split()


@pytest.fixture
def isolated_data_cache(tmp_path_factory, monkeypatch) -> None:
    """Prepared data goes to this session's temporary folder, not the user's cache."""
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path_factory.getbasetemp() / "yan-cache"))


@pytest.fixture(scope="module")
def line_corpus(tmp_path_factory) -> Path:
    """80 lines of random words: enough for a ``tiny`` run with a validation split."""
    rng = np.random.default_rng(5)
    rows = [f"Line {i}: " + " ".join(rng.choice(WORDS, size=9)) + "." for i in range(80)]
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n".join(rows) + "\n")
    return path
