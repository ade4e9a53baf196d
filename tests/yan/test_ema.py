"""The EMA of the weights (``yan train --ema-decay``): the closed form, the file beside the
weights, resume, and loading or generating with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from yan import train as yan_train
from yan.checkpoint import CHECKSUMS_NAME, EMA_NAME, WEIGHTS_NAME
from yan.ema import WeightsEMA, check_decay
from yan.generate import main as generate_main
from yan.model import YAN
from yan.run_state import checkpoint_dirs

FAST = ["--batch-size", "4", "--warmup", "2", "--log-every", "1", "--eval-every", "0"]
FAST += ["--eval-batches", "1", "--no-progress", "--threads", "1", "--save-every", "2"]
pytestmark = pytest.mark.usefixtures("isolated_data_cache")


def test_ema_equals_the_closed_form():
    """ema_k = D^(k-1) w_1 + (1 - D) sum_{j=2..k} D^(k-j) w_j, w_j the weights after step j."""
    torch.manual_seed(0)
    model = YAN.from_preset("tiny")
    decay = 0.9
    ema = WeightsEMA(model, decay)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    history: list[dict[str, torch.Tensor]] = []
    for _ in range(5):
        opt.zero_grad()
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
        ema.update(model)
        history.append({k: v.detach().clone().double() for k, v in model.state_dict().items()})
    k = len(history)
    for name, averaged in ema.state_dict().items():
        expected = decay ** (k - 1) * history[0][name]
        for j in range(2, k + 1):
            expected = expected + (1 - decay) * decay ** (k - j) * history[j - 1][name]
        torch.testing.assert_close(averaged.double(), expected, rtol=1e-5, atol=1e-6)
    assert ema.updates == 5
    # the live weights moved away from their average (the test would pass trivially otherwise)
    assert not torch.allclose(model.encoder.embed.weight, ema.averaged.module.encoder.embed.weight)


def test_ema_of_a_compiled_model_averages_its_weights(tmp_path):
    """--compile compiles the blocks in place before the EMA copies the model: the copy still
    averages the live weights and saves under the model's own keys."""
    from yan.train_speed import compile_blocks

    model = YAN.from_preset("tiny")
    assert compile_blocks(model, backend="aot_eager") > 0
    ema = WeightsEMA(model, 0.5)
    ema.update(model)  # the first update copies the weights
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    averaged = ema.state_dict()
    assert set(averaged) == set(model.state_dict())
    name = "encoder.embed.weight"
    torch.testing.assert_close(averaged[name], before[name] + 0.5)
    ema.save(tmp_path)
    assert (tmp_path / EMA_NAME).is_file()


def test_ema_file_round_trip(tmp_path):
    model = YAN.from_preset("tiny")
    ema = WeightsEMA(model, 0.99)
    ema.update(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    ema.save(tmp_path)
    again = WeightsEMA(YAN.from_preset("tiny"), 0.99)
    again.load(tmp_path)
    assert again.updates == 2
    a, b = ema.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in tmp_path.iterdir()] == [EMA_NAME]  # no temporary file left


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, float("nan"), True])
def test_decay_must_be_in_the_open_unit_interval(bad):
    with pytest.raises(ValueError, match="--ema-decay"):
        check_decay(bad)


def _train(corpus: Path, out: Path, steps: int, *extra: str) -> yan_train.TrainResult:
    argv = ["--preset", "tiny", "--data", str(corpus), "--max-steps", str(steps)]
    return yan_train.main([*argv, "--out", str(out), *FAST, *extra])


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_keeps_saves_and_resumes_the_ema(line_corpus, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    _train(line_corpus, straight, 4, "--ema-decay", "0.5")
    _train(line_corpus, split, 2, "--ema-decay", "0.5")
    _train(line_corpus, split, 4, "--ema-decay", "0.5", "--resume")

    for folder in (straight, *checkpoint_dirs(straight)):
        assert (folder / EMA_NAME).is_file()
        assert EMA_NAME in json.loads((folder / CHECKSUMS_NAME).read_text())["files"]
    # resumed: the average continues exactly where it stopped (not restarted at step 3)
    assert _equal(_tensors(straight / EMA_NAME), _tensors(split / EMA_NAME))
    assert _equal(_tensors(straight / WEIGHTS_NAME), _tensors(split / WEIGHTS_NAME))

    raw = _tensors(straight / WEIGHTS_NAME)
    ema = _tensors(straight / EMA_NAME)
    assert not _equal(raw, ema)
    loaded = YAN.from_pretrained(straight, weights="ema")
    assert _equal({k: v for k, v in loaded.state_dict().items()}, ema)
    assert _equal(YAN.from_pretrained(straight).state_dict(), raw)


@pytest.mark.filterwarnings("ignore:stage 2 without --init")
def test_generate_uses_either_weights_and_names_a_missing_ema(line_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    _train(line_corpus, out, 2, "--stage", "2", "--ema-decay", "0.9")
    argv = ["--checkpoint", str(out), "--task", "infill", "--text", "a <|mask|> b", "--seed", "0"]
    raw = generate_main([*argv, "--weights", "raw"])
    ema = generate_main([*argv, "--weights", "ema"])
    assert len(raw) == len(ema) == 1
    plain = tmp_path / "plain"
    _train(line_corpus, plain, 2, "--stage", "2")
    assert not (plain / EMA_NAME).exists()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        generate_main(["--checkpoint", str(plain), *argv[2:], "--weights", "ema"])
    err = capsys.readouterr().err
    assert "no EMA weights" in err and "--ema-decay" in err
    with pytest.raises(FileNotFoundError, match="no EMA weights"):
        YAN.from_pretrained(plain, weights="ema")


def test_overwrite_removes_an_old_runs_ema(line_corpus, tmp_path):
    out = tmp_path / "run"
    _train(line_corpus, out, 2, "--ema-decay", "0.9")
    with pytest.warns(UserWarning, match="deleted"):
        _train(line_corpus, out, 2, "--overwrite")
    assert not (out / EMA_NAME).exists()  # a stale average would load as this run's
    assert np.all([not (c / EMA_NAME).exists() for c in checkpoint_dirs(out)])
