"""MoE-FM trajectory explorer: ``streamlit run app/explorer.py``.

Pick a 2D data set, a method (VFM, OT-CFM, MoE-FM or path-consistent MoE-FM), K and sigma of
eq. (5), a solver, a routing mode and T; see samples against data, trajectories coloured by their expert, the gate
pi(z, t), the responsibilities of eq. (12), and W2 / straightness against T. The default view
loads a shipped checkpoint; other settings train in seconds and are kept while the app
process runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# `streamlit run app/explorer.py` puts app/ on sys.path, not the project root
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from app import compute, figures  # noqa: E402
from app.state import (  # noqa: E402
    DATASETS,
    K_RANGE,
    METHOD_LABELS,
    PLANE_LIM,
    REF_POINTS,
    SEED_RANGE,
    SIGMAS,
    STEPS_RANGE,
    TRAIN_SEED_RANGE,
    Settings,
    curve_points,
    fast_mode,
    sample_points,
)
from app.store import ModelEntry, ModelStore, reference_data  # noqa: E402
from moefm import FlowModel  # noqa: E402
from moefm.sampling import ROUTINGS, SOLVERS  # noqa: E402
from moefm.train import METHODS  # noqa: E402

TITLE = "MoE-FM trajectory explorer"
DEFAULTS = Settings()


# ---------------------------------------------------------------- caches (shared by sessions)
@st.cache_resource(show_spinner=False)
def model_store() -> ModelStore:
    """One store per app process: shipped checkpoints and every model trained so far."""
    return ModelStore()


@st.cache_data(max_entries=8, show_spinner=False)
def cached_reference(dataset: str) -> torch.Tensor:
    return reference_data(dataset)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_samples(
    model_key: str,
    _model: FlowModel,
    dataset: str,
    steps: int,
    solver: str,
    routing: str,
    seed: int,
    n: int,
) -> tuple[compute.Samples, compute.Quality]:
    samples = compute.draw_samples(_model, steps, solver, routing, seed, n)
    return samples, compute.sample_quality(samples.z1, cached_reference(dataset), dataset)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_curve(
    model_key: str, _model: FlowModel, dataset: str, solver: str, routing: str, seed: int, n: int
) -> compute.StepCurve:
    reference = cached_reference(dataset)
    return compute.quality_vs_steps(_model, reference, solver, routing, seed, n)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_responsibilities(
    model_key: str, _model: FlowModel, z1: tuple[float, float], t: float, sigma: float
) -> compute.ResponsibilityMap:
    return compute.responsibility_map(_model, z1, t, sigma, lim=PLANE_LIM)


# ---------------------------------------------------------------- widgets
def sidebar() -> dict:
    """Model and sampling settings; every widget is bounded, so no invalid value exists."""
    sb = st.sidebar
    sb.header("Model")
    dataset = sb.selectbox(
        "Data set", DATASETS, index=DATASETS.index(DEFAULTS.dataset), key="dataset"
    )
    method = sb.selectbox(
        "Method",
        METHODS,
        index=METHODS.index(DEFAULTS.method),
        format_func=METHOD_LABELS.get,
        key="method",
    )
    K = sb.slider("Experts K", *K_RANGE, value=DEFAULTS.K, key="K", help="MoE-FM only.")
    sigma = sb.select_slider(
        "sigma (expert std, eq. 5)",
        SIGMAS,
        value=DEFAULTS.sigma,
        format_func=lambda s: f"{s:g}",
        key="sigma",
        help="MoE-FM only. Small: hard nearest-expert assignment; large: responsibilities "
        "approach the gate (App. A.3).",
    )
    train_seed = sb.number_input(
        "Training seed", *TRAIN_SEED_RANGE, value=DEFAULTS.train_seed, step=1, key="train_seed"
    )
    if not method.startswith("moefm"):
        sb.caption(f"{METHOD_LABELS[method]} has one expert: K and sigma do not apply.")
    elif method != "moefm":
        sb.caption(
            f"{METHOD_LABELS[method]}: K k-means clusters of the data, one expert each; sigma "
            "does not apply (moefm.clusters)."
        )
    sb.header("Sampling")
    solver = sb.selectbox("Solver", SOLVERS, index=SOLVERS.index(DEFAULTS.solver), key="solver")
    routing = sb.selectbox(
        "Routing",
        ROUTINGS,
        index=ROUTINGS.index(DEFAULTS.routing),
        key="routing",
        help="frozen: e ~ Cat(pi(z0, 0)) once per path (the paper's); argmax: the most "
        "probable expert at t = 0; resample: a new draw at every evaluation; mean: the "
        "mixture-mean field sum_k pi_k u_k.",
    )
    steps = sb.slider("Steps T", *STEPS_RANGE, value=DEFAULTS.steps, key="steps")
    seed = sb.number_input("Seed", *SEED_RANGE, value=DEFAULTS.seed, step=1, key="seed")
    return dict(
        dataset=dataset,
        method=method,
        K=int(K),
        sigma=float(sigma),
        train_seed=int(train_seed),
        solver=solver,
        routing=routing,
        steps=int(steps),
        seed=int(seed),
    )


def view_controls() -> dict:
    """The time shown by the panels and the pair (z0, z1) of the responsibility panel."""
    c_t, c_point, c_x, c_y = st.columns((3, 1, 1, 1))
    t = c_t.slider("Time t", 0.0, 1.0, DEFAULTS.t, step=0.05, key="t")
    point = c_point.number_input(
        "Data point z1 (index)",
        0,
        REF_POINTS - 1,
        DEFAULTS.point,
        step=1,
        key="point",
        help="A held-out data point: the target of the responsibility panel.",
    )
    x = c_x.number_input("Noise z0: x", -PLANE_LIM, PLANE_LIM, DEFAULTS.z0[0], step=0.1, key="z0x")
    y = c_y.number_input("Noise z0: y", -PLANE_LIM, PLANE_LIM, DEFAULTS.z0[1], step=0.1, key="z0y")
    return dict(t=float(t), point=int(point), z0=(float(x), float(y)))


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Show a failing panel as an error box and keep rendering the rest of the page.

    Streamlit's own stop/rerun signals derive from BaseException and pass through.
    """
    try:
        yield
    except Exception as err:
        st.error(f"{what} failed: {type(err).__name__}: {err}")


@st.cache_data(max_entries=128, show_spinner=False)
def cached_png(name: str, key: tuple, _build: Callable[[], Figure]) -> bytes:
    """A figure rendered to PNG once per ``key`` (everything it depends on): moving a slider
    back, or a setting that does not change this panel, re-renders nothing."""
    return figures.figure_png(_build())


def show(name: str, key: tuple, build: Callable[[], Figure]) -> None:
    """Draw a panel's figure with a button that exports exactly that PNG."""
    png = cached_png(name, key, build)
    st.image(png)
    st.download_button(
        "Export PNG",
        data=png,
        file_name=f"moefm_{name}.png",
        mime="image/png",
        key=f"export_{name}",
        on_click="ignore",
        icon=":material/download:",
    )


# ---------------------------------------------------------------- model
def get_model(settings: Settings) -> ModelEntry | None:
    """The model of these settings: from memory, a shipped checkpoint, or trained now with a
    progress bar. A failed run shows its reason and returns ``None``."""
    store = model_store()
    cfg = settings.train_config(fast_mode())
    try:
        entry = store.lookup(settings.dataset, cfg, shipped_cfg=settings.train_config())
    except (OSError, ValueError) as err:  # an unreadable shipped checkpoint: train instead
        st.warning(f"Shipped checkpoint not usable ({err}); training this setting instead.")
        entry = None
    if entry is not None:
        return entry
    failure = store.failure(settings.dataset, cfg)
    if failure is None:
        label = f"{METHOD_LABELS[cfg.method]} (K={cfg.experts}) on {settings.dataset}"
        bar = st.progress(0.0, text=f"Training {label}...")

        def progress(step: int, loss: float) -> None:
            # each update is a Streamlit call: a widget change interrupts training right here
            text = f"Training {label}: step {step}/{cfg.steps}, loss {loss:.3f}"
            bar.progress(step / cfg.steps, text=text)

        try:
            entry = store.train(settings.dataset, cfg, progress)
        except Exception as err:  # divergence (FloatingPointError) or anything else
            failure = store.record_failure(settings.dataset, cfg, err)
        bar.empty()
        if entry is not None:
            return entry
    st.error(f"Training failed: {failure}. Change a setting, or retry.")
    if st.button("Retry training", key="retry"):
        store.forget_failure(settings.dataset, cfg)
        st.rerun()
    return None


def model_caption(entry: ModelEntry) -> str:
    cfg = entry.config
    where = (
        f"trained here in {entry.seconds:.1f} s"
        if entry.source == "trained"
        else f"shipped checkpoint `{entry.source}`"
    )
    return (
        f"Model: {METHOD_LABELS[cfg.method]}, K = {cfg.experts}, sigma = {cfg.sigma:g}, "
        f"{cfg.steps} training steps, {where}; final training loss {entry.final_loss:.3f}."
    )


def routing_caption(routing: str) -> str:
    return {
        "frozen": "coloured by their frozen expert",
        "argmax": "coloured by their argmax expert",
        "resample": "coloured by the expert drawn at t = 0",
        "mean": "follow the mixture-mean field (no expert to colour)",
    }[routing]


# ---------------------------------------------------------------- page
def main() -> None:
    st.set_page_config(page_title=TITLE, layout="wide")
    # tiny MLPs gain nothing from a second thread, and lose much to contention on a busy CPU
    torch.set_num_threads(1)
    st.title(TITLE)
    st.caption(
        "Mixture-of-experts flow matching on 2D data: K expert fields and a gate pi(z, t), "
        "trained with the mixture NLL of eq. (5); sampling draws one expert per path at t = 0 "
        "and integrates it alone (frozen routing)."
    )
    settings = Settings(**sidebar(), **view_controls())
    st.sidebar.header("Export")
    st.sidebar.download_button(
        "Settings (JSON)",
        data=settings.to_json(fast_mode()),
        file_name="moefm_settings.json",
        mime="application/json",
        key="export_settings",
        on_click="ignore",
        icon=":material/download:",
    )

    entry = get_model(settings)
    if entry is None:
        return
    model = entry.model
    st.caption(model_caption(entry))
    key = f"{settings.dataset}:{json.dumps(entry.config.to_dict(), sort_keys=True)}"
    reference = cached_reference(settings.dataset)
    routing = compute.effective_routing(model, settings.routing)
    if routing != settings.routing:
        st.caption(
            f"K = 1: every routing mode integrates the one expert field, so "
            f"'{settings.routing}' is the same flow as 'frozen'."
        )

    samples = quality = None
    sample_key = (key, settings.steps, settings.solver, routing, settings.seed, sample_points())
    if settings.solver == "dopri5" and routing == "resample":
        st.warning(
            "Resample routing draws a new expert at every field evaluation, a discontinuous "
            "field that an adaptive solver cannot control. Pick a fixed-step solver (euler, "
            "midpoint, rk4) or another routing to see samples; the gate and the "
            "responsibilities below do not depend on it."
        )
    else:
        with guarded("Sampling"):
            samples, quality = cached_samples(key, model, settings.dataset, *sample_key[1:])
    upto = round(settings.t * settings.steps)

    if samples is not None and quality is not None:
        left, right = st.columns(2)
        with left, guarded("Samples panel"):
            st.subheader("Samples vs data")
            cols = st.columns(4)
            cols[0].metric("W2 to data", f"{quality.w2:.3f}")
            cols[1].metric("Energy distance", f"{quality.energy:.4f}")
            cols[2].metric("Field evaluations", samples.nfe)
            if quality.coverage is not None:
                cols[3].metric(
                    "Modes covered",
                    f"{quality.coverage:.0%}",
                    help=f"Samples farther than 3 std from every mode: {quality.off_mode:.1%}",
                )
            title = f"{len(samples.z1)} samples, T = {settings.steps}, {settings.solver}"
            show(
                "samples",
                (sample_key, title),
                lambda: figures.samples_figure(samples, reference.numpy(), title, PLANE_LIM),
            )
        with right, guarded("Trajectory panel"):
            st.subheader("Trajectories by expert")
            st.caption(
                f"Markers: the states at step {upto} of {settings.steps} "
                f"(t = {upto / settings.steps:.2f}); paths {routing_caption(routing)}."
            )
            title = f"{routing} routing, {settings.solver}"
            show(
                "trajectories",
                (sample_key, upto, title),
                lambda: figures.trajectories_figure(samples, upto, title, PLANE_LIM),
            )

    left, right = st.columns(2)
    with left, guarded("Gate panel"):
        st.subheader("Gate pi(z, t)")
        st.caption(
            "The constant pi = 1 of a single expert."
            if model.K == 1
            else "Most probable expert at each z, shaded by its probability; dots: the sampled "
            "states at the shown step, in their expert's colour."
        )
        show(
            "gate",
            (key, settings.t, sample_key if samples is not None else None, upto),
            lambda: figures.gate_figure(model, settings.t, samples, upto, PLANE_LIM),
        )
    with right, guarded("Responsibility panel"):
        st.subheader("Responsibilities (eq. 12)")
        z1 = (float(reference[settings.point, 0]), float(reference[settings.point, 1]))
        sigma = entry.config.sigma
        rmap = cached_responsibilities(key, model, z1, settings.t, sigma)
        st.caption(
            f"Which expert explains the target u* = z1 - z0 seen from z_t = t z1 + (1 - t) z0 "
            f"as the noise z0 ranges over the plane, for data point #{settings.point} "
            f"({z1[0]:.2f}, {z1[1]:.2f}) and sigma = {sigma:g}."
        )
        show(
            "responsibilities",
            (key, z1, settings.z0, settings.t, sigma),
            lambda: figures.responsibility_figure(
                rmap,
                compute.responsibility_bars(model, settings.z0, z1, settings.t, sigma),
                settings.z0,
                PLANE_LIM,
            ),
        )

    with guarded("W2 / straightness chart"):
        st.subheader("W2 and straightness vs T")
        if samples is None:
            st.info("Not available for this solver and routing.")
        else:
            n = curve_points()
            curve = cached_curve(
                key, model, settings.dataset, settings.solver, routing, settings.seed, n
            )
            st.caption(
                f"W2 of {n} samples to held-out data with the chosen solver "
                "and routing; straightness S = int E||(Z1 - Z0) - v(Z_t, t)||^2 dt on T Euler "
                "steps of the model's own ODE (0 for straight paths at constant speed)."
            )
            show(
                "w2_vs_steps",
                (key, settings.solver, routing, settings.seed, n, settings.steps),
                lambda: figures.curve_figure(curve, settings.steps, settings.solver),
            )


main()
