"""yan.bench: FLOP counting against hand counts, timing, the latency bench end to end at tiny
sizes (records, report, figure), reference ratios, the quality summary and bad input."""

from __future__ import annotations

import json
import math
import time
import warnings

import pytest
import torch
import torch.nn.functional as F

from yan import precision
from yan.bench import REQUIRED_KEYS, LatencyConfig, count_flops, main, time_call
from yan.bench.cli import build_parser, latency_config
from yan.bench.isotropy import VARIANTS, IsotropyConfig, isotropy_main
from yan.bench.latency import add_reference_ratios, goal_check
from yan.bench.quality import QualityConfig, diversity, markdown_report, quality_main, summary
from yan.bench.report import QUICK_WORK
from yan.bench.timing import matmul_peak, resolve_device
from yan.bench.workloads import build_generator, random_source, supports

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("shape", [(10, 64), (3, 7, 64)])
def test_flops_of_a_linear_layer_match_the_hand_count(shape):
    layer = torch.nn.Linear(64, 32)
    rows = shape[0] * (shape[1] if len(shape) == 3 else 1)
    # one multiply-add per (row, input, output) = 2 FLOPs; the bias add is not a matmul FLOP
    assert count_flops(lambda: layer(torch.randn(shape))) == 2 * rows * 64 * 32


def test_flops_of_cpu_attention_match_the_hand_count():
    b, h, lq, lk, e = 2, 3, 5, 7, 8
    q, k, v = torch.randn(b, h, lq, e), torch.randn(b, h, lk, e), torch.randn(b, h, lk, e)
    mask = torch.ones(b, 1, 1, lk, dtype=torch.bool)
    # Q K^T and P V: 2 * lq * lk * e FLOPs each, per batch row and head
    expected = 2 * (2 * b * h * lq * lk * e)
    assert count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == expected
    assert count_flops(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)) == expected


def test_time_call_warms_up_and_respects_the_budget():
    calls = {"fn": 0, "warm": 0}

    def fn():
        calls["fn"] += 1
        time.sleep(0.01)

    timing = time_call(
        fn, CPU, repeats=5, warmup=2, warmup_fn=lambda: calls.__setitem__("warm", calls["warm"] + 1)
    )
    assert calls == {"fn": 5, "warm": 2} and len(timing.seconds) == 5
    assert timing.median >= 0.01
    calls["fn"] = 0
    short = time_call(fn, CPU, repeats=5, warmup=0, budget=0.005)
    assert calls["fn"] == 1 and len(short.seconds) == 1  # the first repeat already spent it
    with pytest.raises(ValueError, match="repeats"):
        time_call(fn, CPU, repeats=0)


def test_matmul_peak_is_a_plausible_rate():
    peak = matmul_peak(CPU, n=128, repeats=2)
    assert 1e6 < peak < 1e14


def test_yan_flops_grow_linearly_in_the_euler_steps():
    gen = build_generator("yan-trf", "tiny", max_len=8, device=CPU)
    src, mask = random_source(gen, 1, 8, CPU)
    f = {t: count_flops(lambda t=t: gen.generate(src, mask, 8, t)) for t in (1, 2, 5)}
    # encoder + decoder once, one trunk evaluation per step: f(T) = a + b T exactly
    assert f[5] - f[2] == 3 * (f[2] - f[1]) and f[2] > f[1] > 0


def test_supports_follows_gpt2_context():
    assert supports("gpt2", 512, 512) and not supports("gpt2", 1024, 1024)
    assert supports("bart", 1024, 1024) and supports("yan-trf", 1024, 1024)
    assert supports("yan-mamba", 2048, 2048)  # only YAN is timed beyond 1,024
    assert not supports("bart", 2048, 2048) and not supports("masked-diffusion", 2048, 2048)


def test_peak_memory_sees_a_temporary_allocation_on_cpu():
    from yan.bench.timing import peak_memory

    cpu = torch.device("cpu")
    with peak_memory(cpu) as big:
        x = torch.ones(16 * 2**20)  # 64 MiB, touched, then freed inside the block
        del x
    with peak_memory(cpu) as small:
        torch.ones(1000).sum()
    if big.bytes is None:  # not Linux: the reading is unknown, never a guess
        assert small.bytes is None
        return
    assert 60 * 2**20 <= big.bytes <= 120 * 2**20
    assert small.bytes < 16 * 2**20


def test_latency_bench_end_to_end_at_tiny_sizes(tmp_path, capsys):
    out, records_path = tmp_path / "reports", tmp_path / "records.json"
    main(
        [
            "latency",
            "--presets", "tiny",
            "--models", "yan-trf", "yan-mamba", "gpt2", "bart", "masked-diffusion",
            "--lengths", "8",
            "--steps", "1", "3",
            "--batch-sizes", "1", "2",
            "--repeats", "2",
            "--peak-size", "64",
            "--dtypes", "float32", "bf16",
            "--out", str(out),
            "--json", str(records_path),
        ]
    )  # fmt: skip
    records = json.loads(records_path.read_text())
    assert isinstance(records, list) and records
    for rec in records:
        assert set(REQUIRED_KEYS) <= set(rec)
        assert rec["preset"] == "tiny" and rec["L"] == 8 and rec["device"] == "cpu"
        assert rec["seconds"] > 0
        assert rec["tokens_per_s"] == pytest.approx(rec["batch"] * rec["L"] / rec["seconds"])
    assert {r["dtype"] for r in records} == {"float32", "bfloat16"}
    for rec in records:  # every dtype is paired with the bf16 reference
        assert rec["reference_dtype"] == "bfloat16" and rec["weights_mb"] > 0
        assert rec["peak_mem_mb"] is not None and rec["peak_mem_mb"] >= 0
    by32 = {(r["model"], r["T"], r["batch"]): r for r in records if r["dtype"] == "float32"}
    assert by32["gpt2", None, 1]["weights_mb"] == pytest.approx(
        2
        * {(r["model"], r["T"], r["batch"]): r for r in records if r["dtype"] == "bfloat16"}[
            "gpt2", None, 1
        ]["weights_mb"]
    )  # bf16 halves the weights
    assert by32["yan-trf", 3, 1]["reference_seconds"] > 0  # fp32 YAN paired with bf16 YAN
    by = {(r["model"], r["T"], r["batch"]): r for r in records if r["dtype"] == "bfloat16"}
    assert {r["model"] for r in records} == {
        "yan-trf", "yan-mamba", "gpt2", "bart", "masked-diffusion"
    }  # fmt: skip
    assert ("gpt2", None, 1) in by and ("bart", None, 2) in by  # autoregressive: no T
    assert {("yan-trf", 1, 1), ("yan-trf", 3, 1), ("yan-trf", 3, 2)} <= set(by)
    assert ("masked-diffusion", 8, 1) in by  # T = L, one token per step
    yan = by["yan-trf", 3, 1]
    assert yan["flops"] > by["yan-trf", 1, 1]["flops"] > 0
    assert yan["flops_per_s"] == pytest.approx(yan["flops"] / yan["seconds"])
    assert 0 < yan["frac_of_peak"] and yan["time_vs_reference"] == 1.0
    gpt2 = by["gpt2", None, 1]
    # YAN-TRF T=3 was timed right after every GPT-2 repeat: the ratio uses those pairs
    assert gpt2["reference_seconds"] > 0
    assert gpt2["time_vs_reference"] == pytest.approx(gpt2["seconds"] / gpt2["reference_seconds"])
    report = (out / "latency.md").read_text()
    assert "Tokens/s: preset `tiny`, batch 1" in report and "FLOP utilisation" in report
    assert "Peak memory above the weights" in report and "yan-trf T=3 bfloat16" in report
    assert (out / "latency.png").stat().st_size > 0
    meta = json.loads((out / "latency_meta.json").read_text())
    assert meta["threads"] == 1 and meta["matmul_peak_flops_per_s_start"] > 0
    assert "tok/s" in capsys.readouterr().out


def _rec(model, steps, seconds, preset="paper", length=512, batch=1, **extra):
    return {
        "model": model, "T": steps, "preset": preset, "L": length, "batch": batch,
        "device": "cpu", "seconds": seconds, "tokens_per_s": batch * length / seconds,
        "extrapolated": False, "frac_of_peak": None, **extra,
    }  # fmt: skip


def test_reference_ratios_and_goal_check():
    records = [
        _rec("yan-trf", 3, 2.0, flops=200e9, flops_per_s=100e9, peak_flops_per_s=125e9,
             frac_of_peak=0.8),
        _rec("gpt2", None, 40.0),
        _rec("gpt2", None, 10.0, preset="small"),  # no reference in its group
    ]  # fmt: skip
    add_reference_ratios(records)
    assert [r["time_vs_reference"] for r in records] == [1.0, 20.0, None]
    lines = goal_check(records)
    assert "**20.0x**" in lines[0] and "float32 20.0x" in lines[1] and "**80%**" in lines[2]
    # FLOP-bound tokens/s: peak / (FLOPs per token) = 125e9 / (200e9 / 512) = 320
    assert "FLOP-bound 320 tokens/s" in lines[2]


def test_ratios_across_dtypes_go_through_one_reference():
    """Every record is paired with YAN-TRF T=3 in the reference dtype (bf16 here): GPT-2 vs
    YAN in one dtype and each at its fastest are ratios of those paired ratios."""
    ref = dict(reference_dtype="bfloat16", reference_seconds=1.0)
    records = [
        _rec("yan-trf", 3, 1.0, dtype="bfloat16", reference_dtype="bfloat16"),
        _rec("yan-trf", 3, 3.0, dtype="float32", **ref),
        _rec("gpt2", None, 40.0, dtype="float32", **ref),
        _rec("gpt2", None, 30.0, dtype="bfloat16", **ref),
        _rec("masked-diffusion", 512, 2000.0, dtype="bfloat16", **{**ref, "extrapolated": True}),
    ]
    add_reference_ratios(records)
    assert [r["time_vs_reference"] for r in records] == [1.0, 3.0, 40.0, 30.0, 2000.0]
    lines = goal_check(records)
    assert "(T=3, bfloat16)" in lines[0] and "(bfloat16) 17.1 tokens/s" in lines[0]
    assert "**30.0x** (paired runs)" in lines[0]
    assert "bfloat16 30.0x, float32 13.3x" in lines[1]  # 40 / 3 in float32
    assert "**2,000x** slower (extrapolated" in lines[2]


def test_quality_summary_averages_over_seeds():
    base = dict(model="yan-trf", T_label="3", rouge1=0, masked_acc=0, dist2=0, self_bleu=0,
                semdist=0, tokens_per_s=1)  # fmt: skip
    rows = summary([{**base, "seed": 0, "rougeL": 10.0}, {**base, "seed": 1, "rougeL": 20.0}])
    assert len(rows) == 1 and rows[0]["rougeL"] == 15.0 and rows[0]["seeds"] == 2
    assert rows[0]["rougeL_std"] == pytest.approx(7.0710678)


def test_quick_runs_train_their_own_models_on_their_own_budget(monkeypatch, tmp_path):
    full_q, quick_q = QualityConfig(), QualityConfig.quick()
    full_i, quick_i = IsotropyConfig(), IsotropyConfig.quick()
    # apart from the full runs' models: a quick run never overwrites nor reuses them
    assert quick_q.work == quick_i.work == QUICK_WORK != full_q.work == full_i.work
    assert quick_q.quick_run and quick_i.quick_run and not (full_q.quick_run or full_i.quick_run)
    # masked diffusion's quick budget is fixed, not the (demo) YAN checkpoint's 2,100 steps
    assert full_q.diffusion_steps_budget is None and quick_q.diffusion_steps_budget == 100
    assert quick_q.limit < full_q.limit and quick_i.steps < full_i.steps
    got = {}
    monkeypatch.setattr("yan.bench.cli.latency_main", lambda cfg, out, js: got.update(lat=cfg))
    monkeypatch.setattr("yan.bench.quality.quality_main", lambda cfg, out: got.update(q=cfg))
    monkeypatch.setattr("yan.bench.isotropy.isotropy_main", lambda cfg, out: got.update(i=cfg))
    main(["all", "--quick"])
    assert got["q"] == quick_q and got["i"] == quick_i and "lat" in got
    main(["all"])
    assert got["q"] == full_q and got["i"] == full_i
    main(["quality", "--quick", "--work", str(tmp_path)])  # --work still wins
    assert got["q"].work == tmp_path and got["q"].quick_run


def test_quality_report_of_a_quick_run_says_so():
    record = dict(model="yan-trf", T_label="3", seed=0, rougeL=1.0, rouge1=0, masked_acc=0,
                  dist2=0, self_bleu=0, semdist=0, tokens_per_s=1)  # fmt: skip
    meta = dict(yan_checkpoint="y", yan_training_steps=2100, diffusion_checkpoint="m",
                diffusion_training_steps=100, examples=32, data="d", max_len=64)  # fmt: skip
    assert "Quick run" not in markdown_report([record], {**meta, "quick": False})
    quick = markdown_report([record], {**meta, "quick": True})
    assert "**Quick run** (`--quick`)" in quick and "not the benchmark's numbers" in quick


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(models=("gpt3",)), "models must be"),
        (dict(lengths={"huge": (8,)}), "lengths must map presets"),
        (dict(lengths={"tiny": (0,)}), "lengths must be integers"),
        (dict(steps=(2.5,)), "steps must be integers"),
        (dict(repeats=0), "repeats"),
        (dict(peak_size=0), "peak_size"),
    ],
)
def test_bad_latency_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LatencyConfig(**kwargs)


@pytest.mark.parametrize("has_bf16", [False, True])
def test_latency_times_bfloat16_by_default_only_where_it_is_native(monkeypatch, has_bf16):
    """A CPU without AVX512-BF16 or AMX emulates bf16 matmuls many times slower than float32:
    the default dtypes leave it out there; asked for by name, it is timed anyway."""
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: has_bf16)
    native = ("float32", "bfloat16") if has_bf16 else ("float32",)
    cfg = LatencyConfig(device="cpu")
    assert cfg.dtypes == native and cfg.reference_dtype == native[-1]
    assert LatencyConfig.quick(device="cpu").dtypes == native
    assert LatencyConfig(device="cpu", dtypes=("bf16",)).dtypes == ("bfloat16",)
    for argv, dtypes in (([], native), (["--dtypes", "fp32", "bf16"], ("float32", "bfloat16"))):
        ns = build_parser().parse_args(["latency", "--quick", "--device", "cpu", *argv])
        got = latency_config(ns)
        assert got.dtypes == dtypes and got.reference_dtype == dtypes[-1]


def test_bad_command_line_exits_with_a_message(capsys):
    with pytest.raises(SystemExit):
        main(["latency", "--threads", "0", "--presets", "tiny", "--lengths", "8"])
    assert "--threads must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["speed"])
    assert "invalid choice" in capsys.readouterr().err


def test_unknown_model_or_device_is_refused():
    with pytest.raises(ValueError, match="unknown model"):
        build_generator("gpt3", "tiny", max_len=8, device=CPU)
    with pytest.raises(ValueError, match="unknown preset"):
        build_generator("gpt2", "huge", max_len=8, device=CPU)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


WORDS = "river mountain city music garden winter forest engine village market ocean".split()


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path / "cache"))
    gen = torch.Generator().manual_seed(0)
    rows = [
        f"Item {i}: the " + " ".join(WORDS[j] for j in torch.randint(0, 11, (9,), generator=gen))
        for i in range(80)
    ]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_isotropy_bench_end_to_end_at_tiny_sizes(corpus, tmp_path):
    cfg = IsotropyConfig(
        preset="tiny", data=str(corpus), max_len=16, steps=2, batch_size=4, warmup=1,
        eval_texts=6, components=3, work=tmp_path / "work", quick_run=True,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = isotropy_main(cfg, tmp_path / "out")
    records = json.loads(paths["json"].read_text())
    assert [r["variant"] for r in records] == list(VARIANTS)
    ce, full = records[0], records[-1]
    assert ce["lambda_mmd"] == ce["lambda_scale"] == ce["latent_noise_std"] == 0
    assert full["lambda_mmd"] > 0 and full["lambda_scale"] > 0 and full["latent_noise_std"] > 0
    for r in records:
        assert 0 < r["pc2_share"] <= r["pc1_share"] <= r["topk_share"] <= 100
        assert 0 < r["participation_ratio"] <= 1 and 0 <= r["recon_acc"] <= 100
    assert all(r["quick"] for r in records)
    report = paths["markdown"].read_text()
    assert paths["figure"].stat().st_size > 0 and "CE+MMD" in report and "Quick run" in report


def test_quality_bench_end_to_end_at_tiny_sizes(corpus, tmp_path):
    cfg = QualityConfig(
        preset="tiny", data=str(corpus), max_len=16, work=tmp_path / "work", yan_steps=(1, 3),
        diffusion_steps=(2,), seeds=(0, 1), limit=6, stage1_steps=2, stage2_steps=2,
        batch_size=4, warmup=1,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = quality_main(cfg, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    keys = {(r["model"], r["T_label"], r["seed"]) for r in data["records"]}
    assert keys == {
        ("yan-trf", "1", 0), ("yan-trf", "1", 1), ("yan-trf", "3", 0), ("yan-trf", "3", 1),
        ("masked-diffusion", "2", 0), ("masked-diffusion", "L", 0),
    }  # fmt: skip
    assert data["meta"]["yan_training_steps"] == data["meta"]["diffusion_training_steps"] == 4
    run = json.loads((cfg.work / "masked-diffusion-tiny" / "run.json").read_text())
    assert (run["model"], run["task"], run["max_steps"]) == ("masked-diffusion", "infill", 4)
    for name in ("quality_vs_T", "quality_diversity"):
        assert paths[name].stat().st_size > 0


def test_diversity_of_one_word_generations_has_no_dist2():
    out = diversity(["alpha", "beta", "alpha"])  # no bigrams at all: Dist-2 is undefined
    assert math.isnan(out["dist2"]) and 0 <= out["self_bleu"] <= 100 and out["semdist"] >= 0


def test_profile_of_one_generation_accounts_for_its_whole_time():
    from yan.bench.profile import profile_generation

    rows = profile_generation("yan-trf", "tiny", length=8, steps=2, rows=5)
    assert [r["operator"] for r in rows[-2:]] == ["(all others)", "total"]
    total = rows[-1]["self ms"]
    assert total > 0 and sum(r["self ms"] for r in rows[:-1]) == pytest.approx(total)
    assert all(r["share %"] >= 0 for r in rows) and rows[0]["self ms"] >= rows[1]["self ms"]
    assert any("addmm" in r["operator"] or "mm" in r["operator"] for r in rows[:-2])
