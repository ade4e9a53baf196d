"""Deterministic train/val/test splits (App. B.1: 90% / 5% / 5% of every data set)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
SPLITS = ("train", "val", "test")


def split(
    records: Sequence[T],
    seed: int = 0,
    fractions: Sequence[float] = (0.9, 0.05, 0.05),
    group_by: str | None = None,
) -> dict[str, list[T]]:
    """Split ``records`` into ``{"train", "val", "test"}`` by a seeded permutation.

    With ``group_by`` (e.g. ``"doc"``) whole groups move together, so paragraphs of one article
    or reviews of one film never straddle train and test. Sizes are rounded; with three or more
    units every split with a positive fraction gets at least one. Within a split the original
    order is kept (shuffling is the batch iterator's job), so the result depends only on the
    records and ``seed``.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}"
        )
    if len(records) == 0:
        raise ValueError("split: no records (empty data set)")
    if group_by is None:
        keys: list[Any] = list(range(len(records)))
    else:
        missing = next((i for i, r in enumerate(records) if group_by not in r), None)  # type: ignore[operator]
        if missing is not None:
            raise ValueError(f"split: record {missing} has no {group_by!r} field to group by")
        keys = [r[group_by] for r in records]  # type: ignore[index]
    units = list(dict.fromkeys(keys))  # unique, in first-seen order
    n = len(units)
    sizes = [round(f * n) for f in fractions[1:]]
    if n >= 3:
        sizes = [max(1, s) if f > 0 else 0 for s, f in zip(sizes, fractions[1:])]
    n_val, n_test = sizes
    order = np.random.default_rng(seed).permutation(n)
    which: dict[Any, str] = {}
    for rank, u in enumerate(order.tolist()):
        which[units[u]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    out: dict[str, list[T]] = {name: [] for name in SPLITS}
    for key, rec in zip(keys, records):
        out[which[key]].append(rec)
    return out
