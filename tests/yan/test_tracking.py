"""--report-to: tensorboard event files hold the logged scalars, wandb without the package is a
clear error (and with a stand-in package gets the same scalars), bad values are refused; the
training run's console lines come through logging."""

import json
import logging
import sys
import types
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from yan import train as yan_train
from yan.logs import configure_logging, level_of
from yan.run_state import METRICS_FILE, MetricsLog, read_metrics
from yan.tracking import TENSORBOARD_DIR, TrackedLog, parse_report_to, scalars
from yan.train_args import TrainArgs, check_args


def event_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_parse_report_to():
    assert parse_report_to("none") == () and parse_report_to("") == ()
    assert parse_report_to("tensorboard") == ("tensorboard",)
    assert parse_report_to(" TensorBoard, wandb,tensorboard") == ("tensorboard", "wandb")
    with pytest.raises(ValueError, match="--report-to takes none or a comma list"):
        parse_report_to("mlflow")
    with pytest.raises(ValueError, match="none together with a tracker"):
        parse_report_to("none,tensorboard")


def test_scalars_keep_numbers_only():
    record = {"kind": "val", "step": 3, "stage": "2", "val_ce": 1.5, "n": 2, "ok": True, "s": "x"}
    assert scalars(record) == {"val/val_ce": 1.5, "val/n": 2.0}


def test_tensorboard_event_files_hold_the_logged_scalars(tmp_path):
    log = TrackedLog(MetricsLog(tmp_path / METRICS_FILE, True), ("tensorboard",), tmp_path)
    log.truncate_after(0)
    for step in (1, 2, 3):
        log.write({"kind": "train", "step": step, "stage": "1", "loss": 1.0 / step})
    log.write({"kind": "val", "step": 3, "stage": "1", "val_ce": 0.25})
    log.close()
    found = event_scalars(tmp_path / TENSORBOARD_DIR)
    assert [s for s, _ in found["train/loss"]] == [1, 2, 3]
    assert [v for _, v in found["train/loss"]] == pytest.approx([1.0, 0.5, 1 / 3])
    assert found["val/val_ce"] == [(3, 0.25)]
    assert len(read_metrics(tmp_path)) == 4  # metrics.jsonl as before


def test_a_disabled_log_opens_no_tracker(tmp_path):
    log = TrackedLog(MetricsLog(tmp_path / METRICS_FILE, False), ("tensorboard",), tmp_path)
    log.write({"kind": "train", "step": 1, "loss": 1.0})
    log.close()
    assert not (tmp_path / TENSORBOARD_DIR).exists() and not (tmp_path / METRICS_FILE).exists()


def test_wandb_requested_without_the_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails even where it is installed
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    args = TrainArgs(out="o", data="d", preset="tiny", report_to="tensorboard,wandb")
    with pytest.raises(ImportError, match="--report-to wandb needs the wandb package"):
        check_args(args)


def test_wandb_gets_the_scalars_when_installed(tmp_path, monkeypatch):
    calls = []
    run = types.SimpleNamespace(
        log=lambda values, step: calls.append((step, values)), finish=lambda: calls.append("end")
    )
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(kw) or run
    monkeypatch.setitem(sys.modules, "wandb", fake)
    log = TrackedLog(MetricsLog(tmp_path / METRICS_FILE, True), ("wandb",), tmp_path, {"a": 1})
    log.write({"kind": "train", "step": 5, "loss": 2.0})
    log.close()
    assert calls[0]["config"] == {"a": 1} and calls[0]["dir"] == str(tmp_path)
    assert calls[1:] == [(5, {"train/loss": 2.0}), "end"]


def test_bad_log_level_is_refused():
    assert level_of("DEBUG") == logging.DEBUG
    with pytest.raises(ValueError, match="--log-level must be one of debug, info"):
        check_args(TrainArgs(out="o", data="d", preset="tiny", log_level="loud"))


def test_training_reports_to_tensorboard_and_logs_to_the_console(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path / "cache"))
    words = "river mountain city music science history water light garden winter".split()
    rows = [f"Item {i}: the " + " ".join(words[(i + k) % 10] for k in range(8)) for i in range(60)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    argv = ["--preset", "tiny", "--data", str(corpus), "--out", str(out), "--max-steps", "3"]
    argv += ["--batch-size", "4", "--eval-batches", "1", "--log-every", "1", "--no-progress"]
    yan_train.main([*argv, "--report-to", "tensorboard", "--log-level", "debug"])
    console = capsys.readouterr().out
    assert "yan train: stage 1 | transformer" in console  # the banner, as before
    assert "yan train: step 3: val_" in console
    assert "yan train: step 2: loss " in console  # --log-level debug: every logged step
    assert json.loads((out / "run.json").read_text())["report_to"] == "tensorboard"
    found = event_scalars(out / TENSORBOARD_DIR)
    train = [r for r in read_metrics(out) if r["kind"] == "train"]
    assert [s for s, _ in found["train/loss"]] == [1, 2, 3]
    assert [v for _, v in found["train/loss"]] == pytest.approx([r["loss"] for r in train])
    assert "val/val_ce" in found or any(t.startswith("val/") for t in found)


def test_log_level_warning_silences_the_banner(tmp_path, monkeypatch, capsys, caplog):
    configure_logging("warning")
    logging.getLogger("yan.train").info("hidden")
    logging.getLogger("yan.train").warning("shown")
    assert capsys.readouterr().out == "shown\n"
    configure_logging("info")
    with caplog.at_level(logging.INFO, logger="yan"):
        logging.getLogger("yan.train").info("yan train: a line")
    assert "yan train: a line" in caplog.text
