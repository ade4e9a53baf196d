"""Output of the benchmarks: flat JSON records, markdown tables, run metadata, figures."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from moefm import tables
from yan.bench.timing import load_average

# Where ``--quick`` runs keep the models they train: apart from the full runs' (``outputs/bench``),
# so a quick run never overwrites a full run's models nor is reused by one
QUICK_WORK = Path("outputs/bench-quick")


def quick_note(what: str) -> str:
    """The line a ``--quick`` report opens with, so nobody takes it for the full numbers."""
    return f"**Quick run** (`--quick`): a smoke test with {what}; not the benchmark's numbers.\n"


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: numbers with ``digits`` decimals (big ones with thousands separators)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], digits: int = 2
) -> str:
    """A GitHub markdown table of ``rows`` (dicts) with the given column order, cells by
    :func:`fmt` (:func:`moefm.tables.markdown_table` lays them out)."""
    body = [[fmt(row.get(c), digits) for c in columns] for row in rows]
    return tables.markdown_table(columns, body) + "\n"


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def announce(report: str, paths: dict[str, Path]) -> dict[str, Path]:
    """Print a benchmark's markdown report and the files it wrote; returns ``paths``."""
    print(report)
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return paths


def write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_outputs(stem: str | Path, data: Any, report: str) -> dict[str, Path]:
    """A benchmark's two records: ``data`` as ``STEM.json`` (:func:`write_json`) and its markdown
    ``report`` as ``STEM.md``; returns ``{"json": ..., "markdown": ...}`` for :func:`announce`."""
    return {
        "json": write_json(f"{stem}.json", data),
        "markdown": write_text(f"{stem}.md", report),
    }


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on: device, threads, torch version, CPU/GPU name, load."""
    info: dict[str, Any] = {
        "device": device.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "load_1min": load_average(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def new_figure(ncols: int, width: float = 5.0, height: float = 4.0):
    """A row of ``ncols`` matplotlib axes on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig: Any, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = [
    "QUICK_WORK",
    "fmt",
    "machine_info",
    "markdown_table",
    "new_figure",
    "quick_note",
    "save_figure",
    "write_json",
    "write_outputs",
    "write_text",
]
