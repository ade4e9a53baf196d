"""Write evaluation results as JSON and as a markdown table (one row per model / run)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from moefm import tables

Results = Mapping[str, Mapping[str, float]]


def _check(results: Results) -> dict[str, dict[str, float]]:
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping {row name: {metric: value}}")
    out: dict[str, dict[str, float]] = {}
    for row, metrics in results.items():
        if not isinstance(metrics, Mapping):
            raise ValueError(
                f"results[{row!r}] must be a mapping {{metric: value}}, got {type(metrics).__name__}"
            )
        try:
            out[str(row)] = {str(k): float(v) for k, v in metrics.items()}
        except (TypeError, ValueError) as err:
            raise ValueError(f"results[{row!r}] has a non-numeric value: {err}") from None
    return out


def markdown_table(results: Results, digits: int = 2) -> str:
    """A GitHub markdown table: rows are the keys of ``results``, columns the metric names.

    Columns appear in first-seen order; a metric a row lacks is shown as ``-``.
    """
    rows = _check(results)
    columns = list(dict.fromkeys(k for metrics in rows.values() for k in metrics))

    def cell(v: float | None) -> str:
        return "-" if v is None or math.isnan(v) else f"{v:.{digits}f}"

    body = [[row, *(cell(metrics.get(c)) for c in columns)] for row, metrics in rows.items()]
    return tables.markdown_table(["run", *columns], body) + "\n"


def write_report(
    results: Results, json_path: str | Path | None, md_path: str | Path | None, digits: int = 2
) -> None:
    """Write ``{row: {metric: value}}`` to ``json_path`` and a markdown table to ``md_path``.

    Either path may be ``None`` to skip that file; parent folders are created.
    """
    rows = _check(results)
    if json_path is None and md_path is None:
        raise ValueError("write_report: give json_path, md_path or both")
    if json_path is not None:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=2) + "\n")
    if md_path is not None:
        path = Path(md_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown_table(rows, digits))
