"""The labs: every notebook runs top to bottom (fast mode, exercises filled in with the solutions),
every exercise check accepts the solution and names the usual mistakes, every sentence notebook 03
says about our benchmark holds on reports/moefm_bench.json, every figure script writes its PNG and
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

from labs import bench_report, checks, common, floors, marginals, plots, solutions
from labs.figure2 import Figure2Config
from labs.routing import RoutingConfig
from labs.sigma_limits import SigmaConfig
from labs.vfm_blur import BlurConfig
from moefm import FlowModel, moefm_nll, responsibilities, sample, toy

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


def exercise_pairs(nb: nbformat.NotebookNode) -> list[tuple[str, str, str]]:
    """``(name, exercise source, check source)`` for every exercise cell of a notebook."""
    cells = nb.cells
    pairs = []
    for i, c in enumerate(cells):
        if "exercise" not in c.metadata.get("tags", []):
            continue
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        assert nxt is not None and "check" in nxt.metadata.get("tags", []), (
            f"exercise cell {i} must be followed by its check cell"
        )
        name = c.source.split("def ", 1)[1].split("(", 1)[0]
        assert "@exercise" in c.source and "raise NotImplementedError" in c.source
        assert f"check_{name}({name})" in nxt.source
        pairs.append((name, c.source, nxt.source))
    return pairs


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
    pairs = exercise_pairs(nb)
    assert len(pairs) >= 2, "every notebook has at least two checked exercises"
    assert {name for name, _, _ in pairs} <= set(checks.CHECKS)
    monkeypatch.setenv("MOEFM_LAB_FAST", "1")
    monkeypatch.setenv(checks.SOLUTIONS_ENV, "1")
    execute(nb, kernel_specs, tmp_path)  # raises CellExecutionError on any failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was rendered"
    assert "fast mode" in "".join(o.get("text", "") for o in outputs)
    for c in nb.cells:
        if "check" in c.metadata.get("tags", []):
            assert "passed:" in "".join(o.get("text", "") for o in c.outputs), c.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercise_cells_wait_for_the_student(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without MOEFM_LAB_SOLUTIONS an exercise is the student's stub and its check says so;
    with it, the exercise cell defines the solution."""
    for name, exercise_src, check_src in exercise_pairs(nbformat.read(path, as_version=4)):
        monkeypatch.delenv(checks.SOLUTIONS_ENV, raising=False)
        scope: dict[str, object] = {"torch": torch}
        exec(exercise_src, scope)
        with pytest.raises(AssertionError, match="not written yet"):
            exec(check_src, scope)
        monkeypatch.setenv(checks.SOLUTIONS_ENV, "1")
        scope = {"torch": torch}
        exec(exercise_src, scope)
        assert scope[name] is getattr(solutions, name)


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


# ---- exercises: the checks accept the solutions and name the mistakes -------------------------


def _sq(u: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (u - target[:, None]).pow(2).sum(-1)


def _unwritten(*args: object) -> None:
    raise NotImplementedError("your turn")


def _lsa_pairing(
    z0: torch.Tensor, z1: torch.Tensor, *, squared: bool, inverse: bool
) -> torch.Tensor:
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(z0, z1).pow(2 if squared else 1).numpy()
    rows, cols = linear_sum_assignment(cost)
    if not inverse:
        return z0[torch.as_tensor(cols)]
    perm = torch.empty(len(cols), dtype=torch.long)
    perm[torch.as_tensor(cols)] = torch.as_tensor(rows)
    return z0[perm]


def _euler(
    model: object, z0: torch.Tensor, steps: int, g: torch.Generator, *, mode: str
) -> torch.Tensor:
    from moefm.sampling import sample_experts

    z, e = z0, None
    for i in range(steps):
        t = (i + 1) / steps if mode == "late-grid" else i / steps
        feats = model.features(z, torch.full((len(z),), t))
        if mode == "resample" or e is None:
            e = sample_experts(model.log_pi(feats), g)
        if mode == "extra-call" and i == 0:
            model.features(z, torch.zeros(len(z)))
        if mode == "argmax":
            e = model.log_pi(feats).argmax(-1)
        z = z + model.field(feats, e) / steps
    return z


def _em_unweighted(pts, wts, u, log_pi, sigma):
    gamma = torch.softmax(log_pi - _sq(u.expand(len(pts), -1, -1), pts) / (2 * sigma**2), -1)
    mass = gamma.mean(0)
    return mass, (gamma.T @ pts) / gamma.sum(0)[:, None]


def _em_no_division(pts, wts, u, log_pi, sigma):
    gamma = torch.softmax(log_pi - _sq(u.expand(len(pts), -1, -1), pts) / (2 * sigma**2), -1)
    return wts @ gamma, (wts[:, None] * gamma).T @ pts


def _chord(traj: torch.Tensor, kind: str) -> torch.Tensor:
    T = traj.shape[0] - 1
    t = torch.linspace(0, 1, T + 1)[:, None, None]
    dev = traj - ((1 - t) * traj[0] + t * traj[-1])
    if kind == "norm":
        return dev.norm(dim=-1).mean()
    if kind == "interior":
        return dev.pow(2).sum(-1)[1:-1].mean()
    v = (traj[1:] - traj[:-1]) * T
    return ((traj[-1] - traj[0]) - v).pow(2).sum(-1).mean()


WRONG = {
    "linear_path": [
        (
            lambda z0, z1, t: ((1 - t[:, None]) * z1 + t[:, None] * z0, z1 - z0),
            "swapped t and 1 - t",
        ),
        (lambda z0, z1, t: (t[:, None] * z1 + (1 - t[:, None]) * z0, z0 - z1), "wrong sign"),
        (lambda z0, z1, t: (t * z1 + (1 - t) * z0, z1 - z0), r"trailing axis, t\[:, None\]"),
        (lambda z0, z1, t: t[:, None] * z1, "must return a pair"),
    ],
    "vfm_loss": [
        (lambda v, u: torch.nn.functional.mse_loss(v, u), "F.mse_loss"),
        (lambda v, u: (v - u).pow(2).sum(), "summed over the batch"),
        (lambda v, u: (v - u).norm(dim=-1).mean(), "square the norm"),
        (lambda v, u: torch.tensor((v - u).pow(2).sum(-1).mean().item()), "no gradient"),
    ],
    "marginal_field": [
        (
            lambda z, t, d: (
                (
                    torch.softmax(-(z[:, None] - d[None]).pow(2).sum(-1) / (2 * (1 - t) ** 2), -1)
                    @ d
                    - z
                )
                / (1 - t)
            ),
            "compare z with t z1",
        ),
        (lambda z, t, d: (d.mean(0) - z) / (1 - t), "equal weights"),
        (
            lambda z, t, d: (
                torch.softmax(-(z[:, None] - t * d[None]).pow(2).sum(-1) / (2 * (1 - t) ** 2), -1)
                @ d
                - z
            ),
            "divide by 1 - t",
        ),
        (
            lambda z, t, d: (
                (
                    torch.softmax(-(z[:, None] - t * d[None]).pow(2).sum(-1) / (2 * (1 - t)), -1)
                    @ d
                    - z
                )
                / (1 - t)
            ),
            r"\(1 - t\)\^2, not 1 - t",
        ),
        (
            lambda z, t, d: (
                (
                    (
                        w := torch.exp(
                            -(z[:, None] - t * d[None]).pow(2).sum(-1) / (2 * (1 - t) ** 2)
                        )
                    )
                    @ d
                    / w.sum(-1, keepdim=True)
                    - z
                )
                / (1 - t)
            ),
            "torch.softmax",
        ),
    ],
    "mode_posterior": [
        (
            lambda z, t, gm: torch.softmax(
                gm.weights.log()
                - 0.5
                * (z[:, None] - t * gm.means).pow(2).sum(-1)
                / (t**2 * gm.stds**2 + (1 - t) ** 2),
                -1,
            ),
            "normaliser",
        ),
        (
            lambda z, t, gm: torch.softmax(
                -0.5
                * (z[:, None] - t * gm.means).pow(2).sum(-1)
                / (v := t**2 * gm.stds**2 + (1 - t) ** 2)
                - torch.log(v),
                -1,
            ),
            "prior weights",
        ),
        (
            lambda z, t, gm: torch.softmax(
                gm.weights.log()
                - 0.5
                * (z[:, None] - gm.means).pow(2).sum(-1)
                / (v := t**2 * gm.stds**2 + (1 - t) ** 2)
                - torch.log(v),
                -1,
            ),
            r"centred at t mu_j",
        ),
    ],
    "vfm_optimum": [
        (
            lambda z, t, gm: (gm.velocity_posterior(z, t)[0] @ gm.means - z) / (1 - t),
            "within a component",
        ),
        (lambda z, t, gm: gm.velocity_posterior(z, t)[1].mean(1), "posterior weights"),
    ],
    "moefm_nll": [
        (
            lambda u, lp, y, s: torch.mean(
                -torch.log((lp.exp() * torch.exp(-_sq(u, y) / (2 * s**2))).sum(-1))
            ),
            "logsumexp",
        ),
        (lambda u, lp, y, s: moefm_nll(u, lp, y, s, include_normalizer=True), "normaliser"),
        (
            lambda u, lp, y, s: -torch.logsumexp(-_sq(u, y) / (2 * s**2), -1).mean(),
            "ignored the gate",
        ),
        (lambda u, lp, y, s: -torch.logsumexp(lp - _sq(u, y) / s**2, -1).mean(), "factor 2"),
        (
            lambda u, lp, y, s: -torch.logsumexp(lp - _sq(u, y) / (2 * s), -1).mean(),
            "sigma squared",
        ),
        (
            lambda u, lp, y, s: -torch.logsumexp(lp - _sq(u, y) / (2 * s**2), -1).sum(),
            "summed over the batch",
        ),
    ],
    "nll_gradient": [
        (lambda u, lp, y, s: (u - y[:, None]) / s**2, "own squared error"),
        (lambda u, lp, y, s: lp.exp()[..., None] * (u - y[:, None]) / s**2, "weighted by the gate"),
        (
            lambda u, lp, y, s: -responsibilities(u, lp, y, s)[..., None] * (u - y[:, None]) / s**2,
            "wrong sign",
        ),
        (
            lambda u, lp, y, s: responsibilities(u, lp, y, s)[..., None] * (u - y[:, None]),
            "sigma\\^2",
        ),
    ],
    "ot_pair": [
        (lambda z0, z1: z0, "unchanged"),
        (lambda z0, z1: _lsa_pairing(z0, z1, squared=True, inverse=False), "inverse permutation"),
        (lambda z0, z1: _lsa_pairing(z0, z1, squared=False, inverse=True), "squared distances"),
        (lambda z0, z1: z0 + 0.1, "permutation"),
    ],
    "responsibilities": [
        (lambda u, lp, y, s: torch.softmax(-_sq(u, y) / (2 * s**2), -1), "ignored the gate"),
        (lambda u, lp, y, s: torch.softmax(lp - _sq(u, y) / (2 * s**2), 0), "over the batch"),
        (lambda u, lp, y, s: torch.softmax(lp - _sq(u, y) / s**2, -1), "factor 2"),
        (
            lambda u, lp, y, s: (
                (w := lp.exp() * torch.exp(-_sq(u, y) / (2 * s**2))) / w.sum(-1, keepdim=True)
            ),
            "torch.softmax",
        ),
    ],
    "em_step": [
        (_em_unweighted, "quadrature weight"),
        (_em_no_division, "divide by the expert's mass"),
        (
            lambda p, w, u, lp, s: (
                w @ (g := torch.softmax(-_sq(u.expand(len(p), -1, -1), p) / (2 * s**2), -1)),
                (w[:, None] * g).T @ p / (w @ g)[:, None],
            ),
            "current routing",
        ),
        (lambda p, w, u, lp, s: w.sum(), "must return a pair"),
    ],
    "frozen_euler": [
        (lambda m, z0, T, g: _euler(m, z0, T, g, mode="resample"), "re-sampled routing"),
        (lambda m, z0, T, g: _euler(m, z0, T, g, mode="argmax"), "most probable expert"),
        (lambda m, z0, T, g: _euler(m, z0, T, g, mode="late-grid"), r"t_i = i / T"),
        (lambda m, z0, T, g: _euler(m, z0, T, g, mode="extra-call"), "evaluated the trunk"),
        (
            lambda m, z0, T, g: sample(m, z0, T, routing="mean").z1,
            "mixture mean",
        ),
    ],
    "chord_deviation": [
        (lambda tr: _chord(tr, "norm"), "square the distances"),
        (lambda tr: _chord(tr, "interior"), "all T \\+ 1 grid times"),
        (lambda tr: _chord(tr, "velocity"), "velocity-based straightness"),
        (lambda tr: (tr - tr[0]).pow(2).sum(-1).mean(), "constant speed must give 0"),
    ],
}


def test_every_exercise_has_a_check_and_wrong_answers() -> None:
    assert set(checks.CHECKS) == set(WRONG)
    for name in checks.CHECKS:
        assert callable(getattr(solutions, name)), name


@pytest.mark.parametrize("name", sorted(checks.CHECKS))
def test_check_accepts_the_solution(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    checks.CHECKS[name](getattr(solutions, name))
    assert capsys.readouterr().out.startswith("passed:")


@pytest.mark.parametrize(
    ("name", "i"), [(n, i) for n, ws in sorted(WRONG.items()) for i in range(len(ws))]
)
def test_check_names_the_mistake(name: str, i: int) -> None:
    wrong, message = WRONG[name][i]
    wrong.__name__ = name
    with pytest.raises(AssertionError, match=message):
        checks.CHECKS[name](wrong)


@pytest.mark.parametrize("name", sorted(checks.CHECKS))
def test_check_says_an_exercise_is_not_written(name: str) -> None:
    with pytest.raises(AssertionError, match="not written yet"):
        checks.CHECKS[name](_unwritten)


# ---- our benchmark, as notebook 03 reads it -----------------------------------------------------


def test_every_benchmark_sentence_of_notebook_03_holds() -> None:
    rows = bench_report.load()
    failed = [text for text, holds in bench_report.claims(rows).items() if not holds]
    assert not failed, (
        f"reports/moefm_bench.json no longer supports these sentences of notebook 03: {failed}"
    )


def test_a_claim_without_data_does_not_hold() -> None:
    rows = [r for r in bench_report.load() if r.get("sigma") in (None, 0.1)]  # no sigma sweep
    result = bench_report.claims(rows)
    assert not result[
        "on half-moons sigma = 1 is worse than sigma = 0.1 at T <= 4 and better at T >= 8"
    ]
    assert result["OT-CFM has a lower W2 than frozen MoE-FM at every T, on both data sets"]
    # and a made-up benchmark where frozen routing wins contradicts the first sentence
    flipped = [
        {**r, "w2": 0.01} if (r["method"], r["routing"]) == ("moefm", "frozen") else r for r in rows
    ]
    assert not bench_report.claims(flipped)[
        "OT-CFM has a lower W2 than frozen MoE-FM at every T, on both data sets"
    ]


def test_bench_report_reads_and_plots(tmp_path: Path) -> None:
    import json

    rows = bench_report.load()
    extra = {**next(r for r in rows if r["routing"] == "frozen"), "routing": "guided"}
    broken = {**extra, "routing": "diverged-one", "w2": None, "diverged": 3}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps([*rows, extra, broken]))
    more = bench_report.load(path)
    assert len(more) == len(rows) + 1  # the diverged record is dropped
    labels = [c.label for c in bench_report.curves(more)]
    assert (
        labels[:4] == [c.label for c in bench_report.CORE]
        and labels[-1] == "MoE-FM, guided routing"
    )
    T, mean, std = bench_report.series(rows, "grid", bench_report.OT)
    assert T == [1, 2, 3, 4, 8, 16, 32] and all(s > 0 for s in std)
    fig = bench_report.plot_w2(rows, {"grid": 0.4, "half-moons": 0.08})
    assert len(fig.axes) == 3
    assert "OT-CFM" in bench_report.summary(rows)
    with pytest.raises(ValueError, match="no benchmark records"):
        (tmp_path / "empty.json").write_text("[]")
        bench_report.load(tmp_path / "empty.json")


# ---- marginal paths, loss floors, plot helpers --------------------------------------------------


def test_path_and_flow_snapshots() -> None:
    data = toy.grid(300, seed=0)
    z0 = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    snaps = marginals.path_snapshots(data, z0, [0.0, 0.5, 1.0])
    assert torch.equal(snaps[0], z0) and len(snaps) == 3
    # the exact VFM field transports p_0 along p_t: at t = 1 its samples are near the modes
    field = common.ExactVFMField(toy.grid_mixture())
    flow = marginals.flow_snapshots(field, z0, [0.0, 0.5, 1.0], 32)
    assert torch.equal(flow[0], z0)
    d = marginals.distance_to_path(flow, snaps)
    assert d[0] == 0 and d[-1] < 0.8
    with pytest.raises(ValueError, match="not on the grid"):
        marginals.flow_snapshots(field, z0, [0.3], 4)
    with pytest.raises(ValueError, match="reference times"):
        marginals.distance_to_path(flow, snaps[:2])


def test_chord_deviation_closed_forms() -> None:
    T = 64
    t = torch.linspace(0, 1, T + 1)[:, None, None]
    line = (1 - t) * torch.zeros(1, 4, 2) + t * torch.ones(1, 4, 2)
    assert marginals.chord_deviation(line) == pytest.approx(0.0, abs=1e-12)
    bump = torch.cat([t, torch.sin(math.pi * t)], -1)  # (T + 1, 1, 2)
    expected = float(torch.sin(math.pi * t).pow(2).mean())
    assert marginals.chord_deviation(bump) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="T \\+ 1, B, m"):
        marginals.chord_deviation(torch.zeros(5, 2))


def test_loss_floors_match_their_limits() -> None:
    gm = toy.grid_mixture()
    f = floors.vfm_floor(gm, n_t=50, n_z=400)
    # t -> 0: z0 says nothing, the variance left is tr Var(z1); t -> 1: tr Var(z0) = 2
    assert float(f.per_t[0]) == pytest.approx(2 * (8 / 3 + 0.01), rel=0.05)
    assert float(f.per_t[-1]) == pytest.approx(2.0, rel=0.1)
    six = floors.moefm_floor(gm, K=6, sigma=0.1, n_t=4, n_z=4)
    nine = floors.moefm_floor(gm, K=9, sigma=0.1, n_t=4, n_z=4)
    assert nine.mean < six.mean  # one expert per mode: no expert straddles two clusters
    assert floors.normalizer(0.1) == pytest.approx(math.log(2 * math.pi * 0.01))
    model = FlowModel.mlp(2, K=3)
    losses = floors.loss_per_t(model, gm, torch.tensor([0.25, 0.75]), n=64)
    assert losses.shape == (2,) and torch.isfinite(losses).all()


def test_plot_helpers() -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    probs = torch.tensor([[[0.2, 0.3, 0.5], [0.34, 0.33, 0.33]]])  # (1, 2, K = 3)
    plots.expert_map(ax, probs, (0, 2, 0, 1))
    rgba = ax.images[0].get_array()
    # opacity is max_k gamma_k itself, not rescaled per panel
    assert rgba[0, 0, 3] == pytest.approx(0.5) and rgba[0, 1, 3] == pytest.approx(0.34)
    plots.confidence_colorbar(fig, ax, 3)
    with pytest.raises(ValueError, match="ny, nx, K"):
        plots.expert_map(ax, torch.zeros(2, 3), (0, 1, 0, 1))
    v = [torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0]])]
    assert plots.shared_quiver_scale(v, spacing=0.5) == pytest.approx(5.0 / 0.45)
    tr = torch.randn(5, 3, 2)
    plots.trajectory_panel(ax, tr, torch.zeros(4, 3, dtype=torch.long))  # per-step experts
    labels = ax.get_legend_handles_labels()[1]
    assert "start z0 (noise)" in labels and "end (sample)" in labels
    ax2 = fig.add_subplot(2, 2, 4)
    plots.sample_panel(ax2, torch.randn(10, 2), torch.randn(10, 2))
    assert ax2.get_legend_handles_labels()[1] == ["data (held out)", "samples"]
    assert len(ax2.get_xticks()) > 0
