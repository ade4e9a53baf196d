"""Markdown tables: the one place that lays out ``| a | b |`` rows, for every report.

The benchmark tables of :mod:`moefm.bench`, ``yan.bench`` and the evaluation tables of
``yan.eval`` format their cells their own way and hand the strings here, so every committed
report in ``reports/`` shares one layout: a header row, a ``|---|`` rule per column (left
aligned) and one line per row.

Example:
    >>> print(markdown_table(["method", "W2"], [["vfm", "0.31"], ["moefm", "0.12"]]))
    | method | W2 |
    |---|---|
    | vfm | 0.31 |
    | moefm | 0.12 |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub markdown table of already formatted cells, lines joined without a final newline.

    Raises:
        ValueError: a row has another number of cells than ``head`` (the table would not render).
    """
    lines = [_line(head), "|" + "---|" * len(head)]
    for i, cells in enumerate(rows):
        if len(cells) != len(head):
            raise ValueError(f"row {i} has {len(cells)} cells for {len(head)} columns: {cells!r}")
        lines.append(_line(cells))
    return "\n".join(lines)


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


__all__ = ["markdown_table"]
