"""The Streamlit explorer (app/): settings, checkpoints, panels, and the page via AppTest.

On-demand training runs in the fast mode (``MOEFM_APP_FAST=1``: a few hundred steps).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("streamlit")
import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from app import compute, figures, store  # noqa: E402
from app.pretrain import main as pretrain_main  # noqa: E402
from app.pretrain import pretrain  # noqa: E402
from app.state import SIGMAS, Settings  # noqa: E402
from moefm.sampling import ROUTINGS, SOLVERS  # noqa: E402
from moefm.train import METHODS, TrainConfig  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "app" / "explorer.py"
PANELS = 5  # samples, trajectories, gate, responsibilities, W2 / straightness


@pytest.fixture(autouse=True)
def fast_app(monkeypatch):
    """Short on-demand training, fresh Streamlit caches, one torch thread (restored after)."""
    monkeypatch.setenv("MOEFM_APP_FAST", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; a second thread only adds contention
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()
    torch.set_num_threads(threads)


@pytest.fixture
def trainings(monkeypatch):
    """Count on-demand training runs (they still run)."""
    calls: list[TrainConfig] = []
    real = store.train_model

    def counting(dataset, cfg, progress=None):
        calls.append(cfg)
        return real(dataset, cfg, progress)

    monkeypatch.setattr(store, "train_model", counting)
    return calls


def run_app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=120).run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def caption_text(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


# ---------------------------------------------------------------- the page
def test_default_view_uses_shipped_checkpoint(trainings):
    at = run_app()
    assert_clean(at)
    assert trainings == []
    assert at.title[0].value == "MoE-FM trajectory explorer"
    assert "shipped checkpoint `grid_moefm_K6_sigma0.1_seed0`" in caption_text(at)
    assert len(at.image) == PANELS
    assert all(img.value for img in at.image)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Field evaluations"] == "4"  # T = 4 Euler steps, routing included
    assert float(metrics["W2 to data"]) < 1.5
    # a download button per figure, plus the settings JSON
    assert len(at.download_button) == PANELS + 1


def test_widgets_are_bounded():
    at = run_app()
    K, steps = at.slider(key="K"), at.slider(key="steps")
    assert (K.min, K.max, K.value) == (1, 10, 6)
    assert (steps.min, steps.max, steps.value) == (1, 64, 4)
    sigma = at.select_slider(key="sigma")
    assert [float(o) for o in sigma.options] == list(SIGMAS)
    assert (min(SIGMAS), max(SIGMAS)) == (0.01, 10.0)
    assert at.selectbox(key="dataset").options == [
        "grid",
        "half-moons",
        "8-gaussians",
        "checkerboard",
    ]
    assert at.selectbox(key="solver").options == list(SOLVERS)
    assert at.selectbox(key="routing").options == list(ROUTINGS)
    for key, hi in (("seed", 10_000), ("train_seed", 99), ("point", 999)):
        w = at.number_input(key=key)
        assert (w.min, w.max) == (0, hi)
    for key in ("z0x", "z0y"):
        assert (at.number_input(key=key).min, at.number_input(key=key).max) == (-4.0, 4.0)


def test_every_widget_can_be_changed(trainings):
    at = run_app()
    # model settings: one on-demand training run for all four changes
    at.selectbox(key="dataset").set_value("half-moons")
    at.slider(key="K").set_value(3)
    at.select_slider(key="sigma").set_value(0.5)
    at.number_input(key="train_seed").set_value(1)
    at.run()
    assert_clean(at)
    assert len(trainings) == 1
    assert (trainings[0].K, trainings[0].sigma, trainings[0].seed) == (3, 0.5, 1)
    assert "K = 3, sigma = 0.5" in caption_text(at) and "trained here" in caption_text(at)
    assert "Modes covered" not in {m.label for m in at.metric}  # half-moons is no mixture

    # sampling and view settings: no training
    at.selectbox(key="solver").set_value("midpoint")
    at.selectbox(key="routing").set_value("argmax")
    at.slider(key="steps").set_value(8)
    at.number_input(key="seed").set_value(7)
    at.slider(key="t").set_value(1.0)
    at.number_input(key="point").set_value(5)
    at.number_input(key="z0x").set_value(1.5)
    at.number_input(key="z0y").set_value(-2.0)
    at.run()
    assert_clean(at)
    assert len(trainings) == 1
    assert {m.label: m.value for m in at.metric}["Field evaluations"] == "16"  # 2 per midpoint step
    assert "states at step 8 of 8 (t = 1.00)" in caption_text(at)
    assert "data point #5" in caption_text(at)
    assert len(at.image) == PANELS

    # a baseline ignores K and sigma: changing them trains nothing new
    at.selectbox(key="method").set_value("vfm").run()
    assert_clean(at)
    assert len(trainings) == 2 and trainings[1].experts == 1
    at.slider(key="K").set_value(9)
    at.select_slider(key="sigma").set_value(2.0)
    at.run()
    assert_clean(at)
    assert len(trainings) == 2
    assert "K and sigma do not apply" in caption_text(at)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_routing_solver_combination_renders(method, trainings):
    """The default data set has a shipped checkpoint per method, so this sweep trains nothing."""
    at = run_app()
    at.selectbox(key="method").set_value(method)
    for solver in SOLVERS:
        at.selectbox(key="solver").set_value(solver)
        for routing in ROUTINGS:
            at.selectbox(key="routing").set_value(routing).run()
            assert_clean(at)
            experts = method.startswith("moefm")  # MoE-FM and path-consistent MoE-FM
            if experts and solver == "dopri5" and routing == "resample":
                assert "adaptive solver cannot control" in at.warning[0].value
                assert len(at.image) == 2  # gate and responsibilities need no sampling
            else:
                assert not at.warning
                assert len(at.image) == PANELS, (method, solver, routing)
            if not experts and routing != "frozen":
                assert "same flow as 'frozen'" in caption_text(at)
    assert trainings == []


def test_failed_training_shows_error_and_the_app_keeps_working(monkeypatch):
    calls = []

    def diverging(data, cfg, progress=None):
        calls.append(cfg)
        progress(1, float("nan"))
        raise FloatingPointError("training diverged at step 1 (loss nan)")

    monkeypatch.setattr(store, "train", diverging)
    at = run_app()
    at.slider(key="K").set_value(2).run()
    assert not at.exception
    assert "FloatingPointError: training diverged at step 1" in at.error[0].value
    assert len(at.image) == 0 and len(calls) == 1
    # a rerun shows the remembered failure without training again
    at.slider(key="t").set_value(0.25).run()
    assert len(calls) == 1 and "diverged" in at.error[0].value
    # "Retry training" runs it again
    at.button(key="retry").click().run()
    assert len(calls) == 2 and "diverged" in at.error[0].value
    # other settings still work
    at.slider(key="K").set_value(6).run()
    assert_clean(at)
    assert len(at.image) == PANELS


# ---------------------------------------------------------------- settings
def test_settings_json_round_trip_and_validation():
    s = Settings(dataset="checkerboard", method="ot-cfm", K=4, sigma=2.0, steps=16, z0=(1, -1))
    exported = json.loads(s.to_json())
    assert Settings.from_dict(exported["settings"]) == s
    assert exported["train_config"]["method"] == "ot-cfm" and exported["train_config"]["K"] == 1
    for bad, name in (
        (dict(K=11), "K"),
        (dict(K=0), "K"),
        (dict(steps=65), "steps"),
        (dict(sigma=20.0), "sigma"),
        (dict(t=1.5), "t"),
        (dict(dataset="spiral"), "dataset"),
        (dict(routing="soft"), "routing"),
        (dict(z0=(0.0, 9.0)), "z0"),
    ):
        with pytest.raises(ValueError, match=name):
            Settings(**bad)
    with pytest.raises(ValueError, match="unknown settings keys: colour"):
        Settings.from_dict({"colour": "red"})


def test_baselines_ignore_k_and_sigma_in_their_training_config():
    a = Settings(method="vfm", K=3, sigma=0.01).train_config()
    b = Settings(method="vfm", K=9, sigma=5.0).train_config()
    assert a == b and a.experts == 1
    assert Settings(K=3).train_config() != Settings(K=4).train_config()
    assert Settings().train_config(fast=True).steps < Settings().train_config().steps


# ---------------------------------------------------------------- checkpoints
def test_shipped_checkpoints_match_the_default_settings_and_are_small():
    files = list(store.CHECKPOINT_DIR.glob("*"))
    assert sum(f.stat().st_size for f in files) < 300_000
    for method in METHODS:
        cfg = Settings(method=method).train_config()
        path = store.find_checkpoint("grid", cfg)
        assert path is not None, method
        entry = store.load_checkpoint(path)
        assert entry.config == cfg and entry.model.K == cfg.experts
        assert np.isfinite(entry.final_loss)


def test_checkpoint_round_trip(tmp_path):
    cfg = replace(Settings(K=3).train_config(), steps=5)
    entry = store.train_model("grid", cfg)
    path = store.save_checkpoint(tmp_path, entry.model, "grid", cfg, entry.final_loss)
    loaded = store.load_checkpoint(path)
    assert loaded.config == cfg and loaded.dataset == "grid"
    z, t = torch.randn(16, 2), torch.rand(16)
    with torch.no_grad():
        a, b = entry.model(z, t), loaded.model(z, t)
    assert torch.equal(a.u, b.u) and torch.equal(a.log_pi, b.log_pi)
    # a different config of the same name is not taken for it
    assert store.find_checkpoint("grid", cfg, tmp_path) == path
    assert store.find_checkpoint("grid", replace(cfg, lr=1e-3), tmp_path) is None


def test_checkpoint_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint config not found"):
        store.load_checkpoint(tmp_path / "missing.json")
    cfg = replace(Settings(K=3).train_config(), steps=2)
    entry = store.train_model("grid", cfg)
    path = store.save_checkpoint(tmp_path, entry.model, "grid", cfg, entry.final_loss)
    meta = json.loads(path.read_text())
    path.write_text(json.dumps(dict(meta, train_config=dict(meta["train_config"], K=4))))
    with pytest.raises(ValueError, match="do not match its config"):
        store.load_checkpoint(path)
    path.write_text(json.dumps(dict(meta, format=99)))
    with pytest.raises(ValueError, match="format 99"):
        store.load_checkpoint(path)
    path.with_suffix(".safetensors").unlink()
    path.write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="weights not found"):
        store.load_checkpoint(path)


def test_damaged_shipped_checkpoint_falls_back_to_training(tmp_path, monkeypatch, trainings):
    for f in store.CHECKPOINT_DIR.glob("grid_moefm_*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    weights = next(tmp_path.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match="unreadable"):
        store.load_checkpoint(weights)
    monkeypatch.setattr(store, "CHECKPOINT_DIR", tmp_path)
    at = run_app()
    assert not at.exception and not at.error
    assert "Shipped checkpoint not usable" in at.warning[0].value
    assert len(trainings) == 1 and "trained here" in caption_text(at)
    assert len(at.image) == PANELS


def test_pretrain_is_deterministic(tmp_path):
    first = pretrain(tmp_path / "a", methods=("moefm", "ot-cfm"), steps=15, log=lambda _: None)
    second = pretrain(tmp_path / "b", methods=("moefm", "ot-cfm"), steps=15, log=lambda _: None)
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second):
        for suffix in (".json", ".safetensors"):
            assert a.with_suffix(suffix).read_bytes() == b.with_suffix(suffix).read_bytes()
    with pytest.raises(SystemExit):
        pretrain_main(["--steps", "0"])


def test_store_reports_progress_and_keeps_models(tmp_path):
    s = store.ModelStore(tmp_path)  # no shipped checkpoints here
    cfg = replace(Settings(K=2).train_config(), steps=50)
    assert s.lookup("grid", cfg) is None
    seen: list[int] = []
    entry = s.train("grid", cfg, lambda step, loss: seen.append(step))
    assert seen == list(range(1, 51)) and entry.source == "trained"
    assert s.lookup("grid", cfg) is entry and len(s) == 1
    # the fast mode's shorter runs still start from the shipped checkpoint
    shipped = store.ModelStore().lookup("grid", cfg, shipped_cfg=Settings().train_config())
    assert shipped is not None and shipped.source == "grid_moefm_K6_sigma0.1_seed0"


# ---------------------------------------------------------------- panels
@pytest.fixture(scope="module")
def moefm_model():
    return store.load_checkpoint(store.find_checkpoint("grid", Settings().train_config())).model


def test_samples_and_routing(moefm_model):
    s = compute.draw_samples(moefm_model, 4, "rk4", "frozen", seed=3, n=64)
    assert s.trajectory.shape == (5, 64, 2) and s.nfe == 16
    assert s.experts.shape == (64,) and s.frozen_experts().shape == (64,)
    assert np.array_equal(s.trajectory[-1], s.z1)
    again = compute.draw_samples(moefm_model, 4, "rk4", "frozen", seed=3, n=64)
    assert np.array_equal(s.z1, again.z1)  # the seed fixes noise and expert draws
    r = compute.draw_samples(moefm_model, 3, "euler", "resample", seed=3, n=64)
    assert r.experts.shape == (3, 64) and np.array_equal(r.frozen_experts(), r.experts[0])
    assert compute.draw_samples(moefm_model, 2, "euler", "mean", 0, 8).frozen_experts() is None
    baseline = store.build_model(Settings(method="vfm").train_config())
    assert compute.effective_routing(baseline, "resample") == "frozen"
    assert compute.effective_routing(moefm_model, "resample") == "resample"


def test_quality_vs_steps(moefm_model):
    ref = store.reference_data("grid")
    curve = compute.quality_vs_steps(moefm_model, ref, "euler", "frozen", 0, n=64, steps=(1, 4))
    assert curve.steps == [1, 4] and len(curve.w2) == 2
    assert curve.straightness[0] == pytest.approx(0.0, abs=1e-10)  # one Euler step is straight
    assert curve.straightness[1] > 0 and all(w > 0 for w in curve.w2)
    q = compute.sample_quality(ref.numpy(), ref, "grid")
    assert q.w2 == pytest.approx(0.0, abs=1e-6) and q.coverage == 1.0
    assert q.off_mode < 0.03  # P(|N(0, I_2)| > 3) = exp(-4.5) = 1.1%


def test_responsibilities_sum_to_one_and_reduce_to_the_gate(moefm_model):
    rmap = compute.responsibility_map(moefm_model, (2.0, 2.0), 0.3, sigma=0.1, n=20)
    assert rmap.gamma.shape == (20, 20, 6)
    assert np.allclose(rmap.gamma.sum(-1), 1.0, atol=1e-5)
    bars = compute.responsibility_bars(moefm_model, (0.5, -0.5), (2.0, 2.0), 0.3, sigma=1e4)
    assert np.allclose(bars.gamma, bars.pi, atol=1e-4)  # sigma -> inf: gamma -> pi (App. A.3.2)
    assert bars.z_t == pytest.approx((0.3 * 2.0 + 0.7 * 0.5, 0.3 * 2.0 - 0.7 * 0.5))


def test_figures_export_png(moefm_model):
    s = compute.draw_samples(moefm_model, 2, "euler", "frozen", 0, 32)
    fig = figures.trajectories_figure(s, upto=1, title="x", lim=4.0)
    png = figures.figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
