"""The labs: every notebook runs top to bottom (fast mode), every figure script writes its PNG and
CSV, and the shared helpers check their inputs and agree with closed forms."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from labs import common
from labs.figure2 import Figure2Config
from labs.routing import RoutingConfig
from labs.sigma_limits import SigmaConfig
from labs.vfm_blur import BlurConfig
from moefm import sample, toy

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "labs").glob("0[1-5]_*.ipynb"))


# ---- notebooks --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """A kernelspec named ``python3`` that launches *this* interpreter (the venv's), whatever
    kernels the machine has installed elsewhere."""
    root = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(root / "python3")
    return KernelSpecManager(kernel_dirs=[str(root)], ensure_native_kernel=False)


def execute(nb: nbformat.NotebookNode, specs: KernelSpecManager, cwd: Path) -> None:
    km = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
    client = NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(cwd)}})
    client.execute()


def test_notebook_names() -> None:
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_"]


def test_kernel_is_this_python(
    kernel_specs: KernelSpecManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOEFM_LAB_FAST", "1")
    code = "import os, sys\nprint(sys.executable)\nprint(os.environ['MOEFM_LAB_FAST'])"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    execute(nb, kernel_specs, tmp_path)
    out = nb.cells[0].outputs[0]["text"].split()
    assert Path(out[0]).resolve() == Path(sys.executable).resolve()
    assert out[1] == "1"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(
    path: Path, kernel_specs: KernelSpecManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    # stored clean: no outputs, no execution counts
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code_cells)
    assert any(c.cell_type == "markdown" and "Try this" in c.source for c in nb.cells)
    monkeypatch.setenv("MOEFM_LAB_FAST", "1")
    execute(nb, kernel_specs, tmp_path)  # raises CellExecutionError on any failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was rendered"
    assert "fast mode" in "".join(o.get("text", "") for o in outputs)


# ---- figure scripts ---------------------------------------------------------------------------


def run_script(name: str, out: Path) -> tuple[str, list[dict[str, str]]]:
    proc = subprocess.run(
        [sys.executable, "-m", f"labs.{name}", "--out", str(out), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    png, table = out / f"{name}.png", out / f"{name}.csv"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    with table.open() as f:
        rows = list(csv.DictReader(f))
    return proc.stdout, rows


def test_figure2_script(tmp_path: Path) -> None:
    stdout, rows = run_script("figure2", tmp_path)
    cfg = Figure2Config()
    assert list(rows[0]) == [
        "dataset",
        "method",
        "T",
        "w2",
        "w2_floor",
        "coverage",
        "off_mode",
        "straightness",
    ]
    keys = {(r["dataset"], r["method"], int(r["T"])) for r in rows}
    assert len(rows) == len(keys) == len(cfg.datasets) * len(cfg.methods) * len(cfg.steps)
    assert "straightness" in stdout.splitlines()[0]
    for r in rows:
        assert float(r["w2"]) > 0 and 0 <= float(r["coverage"]) <= 1
        assert 0 <= float(r["off_mode"]) <= 1
    s = {(r["dataset"], r["method"]): float(r["straightness"]) for r in rows}
    for d in cfg.datasets:
        # minibatch OT and the experts both straighten the flow relative to one averaged field
        assert s[d, "ot-cfm"] < s[d, "moefm"] < s[d, "vfm"]
    # one Euler step of VFM lands every sample at the data mean: the grid's centre mode only
    one = next(r for r in rows if (r["dataset"], r["method"], r["T"]) == ("grid", "vfm", "1"))
    assert float(one["coverage"]) == pytest.approx(1 / 9)


def test_vfm_blur_script(tmp_path: Path) -> None:
    _, rows = run_script("vfm_blur", tmp_path)
    assert [int(r["T"]) for r in rows] == list(BlurConfig().steps)
    # the exact optimum's single step is exactly E[z1] = (0, 0), the centre mode of the grid
    assert float(rows[0]["coverage"]) == pytest.approx(1 / 9) and float(rows[0]["off_mode"]) == 0
    w2 = [float(r["w2"]) for r in rows]
    assert w2 == sorted(w2, reverse=True)  # more steps, closer to the data
    assert float(rows[-1]["off_mode"]) < 0.05


def test_sigma_limits_script(tmp_path: Path) -> None:
    _, rows = run_script("sigma_limits", tmp_path)
    assert [float(r["sigma"]) for r in rows] == list(SigmaConfig().sigmas)
    for r in rows:  # Thm 3.2 summed over k: the mixture mean is the VFM optimum for every sigma
        assert float(r["mixture_mean_err"]) < 1e-8
    first, last = rows[0], rows[-1]
    assert float(first["hardness"]) == pytest.approx(1.0)  # sigma -> 0: hard assignment
    assert float(last["expert_spread"]) < 1e-6  # sigma -> inf: experts collapse ...
    assert float(last["gamma_pi_tv"]) < 1e-6  # ... and responsibilities equal the routing


def test_routing_script(tmp_path: Path) -> None:
    _, rows = run_script("routing", tmp_path)
    cfg = RoutingConfig()
    assert len(rows) == len(cfg.datasets) * len(cfg.routings) * len(cfg.steps)
    s = {(r["dataset"], r["routing"]): float(r["straightness"]) for r in rows}
    for d in cfg.datasets:
        assert s[d, "frozen"] < s[d, "mean"] < s[d, "resample"]
    for r in rows:  # per-expert straightness exists for frozen routing only
        assert math.isnan(float(r["straightness_worst_expert"])) == (r["routing"] != "frozen")


def test_script_rejects_a_file_as_out(tmp_path: Path) -> None:
    target = tmp_path / "not_a_dir"
    target.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "labs.sigma_limits", "--out", str(target), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "must be a directory" in proc.stderr


# ---- shared helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("", False), ("0", False), ("no", False), ("1", True), ("yes", True)]
)
def test_fast_mode(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv(common.FAST_ENV, value)
    assert common.fast_mode() is expected
    assert common.budget() is (common.QUICK if expected else common.FULL)


def test_bad_configs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="train_steps"):
        common.Budget(train_steps=0)
    with pytest.raises(ValueError, match="lr"):
        common.Budget(lr=-1.0)
    with pytest.raises(ValueError, match="checkerboard"):
        common.mode_anchors("checkerboard")
    with pytest.raises(ValueError, match="unknown method"):
        Figure2Config(methods=("vfm", "ddpm"))
    with pytest.raises(ValueError, match="unknown routing"):
        RoutingConfig(routings=("frozen", "sometimes"))
    with pytest.raises(ValueError, match="closed-form"):
        BlurConfig(dataset="half-moons")
    with pytest.raises(ValueError, match="sigmas"):
        SigmaConfig(sigmas=(-1.0,))


def test_exact_vfm_field_one_step_is_the_data_mean() -> None:
    gm = toy.eight_gaussians_mixture()
    field = common.ExactVFMField(gm)
    out = sample(field, torch.randn(64, 2), steps=1)
    # at t = 0, E[z1 - z0 | z0] = E[z1] - z0, so one Euler step lands on E[z1] = (0, 0)
    assert torch.allclose(out.z1, torch.zeros(64, 2), atol=1e-6)
    assert out.experts.shape == (64,) and out.nfe == 1
    with pytest.raises(ValueError, match="one time"):
        field.features(torch.zeros(2, 2), torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="GaussianMixture"):
        common.ExactVFMField(toy.grid(10))


def test_mode_anchors_hold_the_data() -> None:
    for name in ("grid", "half-moons"):
        anchors, radius = common.mode_anchors(name)
        d = torch.cdist(toy.make(name, 2000, seed=3), anchors).min(1).values
        assert float((d > radius).float().mean()) < 0.02


def test_table_and_csv_round_trip(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    rows = [{"name": "a", "x": 1.0, "n": 3}, {"name": "bb", "x": float("nan"), "n": 10}]
    text = common.format_table(rows, ("name", "x", "n"))
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1  # aligned
    assert "1.000" in text and "nan" in text
    result = common.FigureResult(Figure(), rows, ("name", "x", "n"))
    png, table = common.save_result(result, tmp_path / "new" / "dir", "t")
    assert png.exists()
    with table.open() as f:
        back = list(csv.DictReader(f))
    assert [r["name"] for r in back] == ["a", "bb"] and back[1]["n"] == "10"
