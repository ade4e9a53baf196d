"""yan.eval.validate: the in-training validation pass, its named totals and metrics, against
the per-batch losses it sums."""

from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch

from yan.batch import Seq2SeqBatch
from yan.distributed import DistEnv
from yan.eval.validate import ValidationSums, validate
from yan.model import YAN

MASK_ID = 63  # any id of the tiny vocabulary (64) that the targets below never use
ENV = DistEnv()  # one process on the CPU


def batches(n: int = 3, infill: bool = False) -> list[Seq2SeqBatch]:
    """Right-padded text batches of different lengths; infill: source = target, some masked."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        tgt = torch.randint(1, 60, (2, 10), generator=gen)
        mask = torch.ones(2, 10, dtype=torch.bool)
        mask[1, 6 + i :] = False
        if infill:
            src = tgt.clone()
            src[:, 1:3] = MASK_ID
            out.append(Seq2SeqBatch(src, mask.clone(), tgt, mask))
        else:
            empty = torch.zeros(2, 0, dtype=torch.long)
            out.append(Seq2SeqBatch(empty, empty.bool(), tgt, mask))
    return out


def run(model: YAN, data: list[Seq2SeqBatch], stage: int, mask_id: int | None = None) -> dict:
    return validate(model, data, stage, ENV, mask_id=mask_id, steps=2, seed=7, autocast=nullcontext)


@pytest.fixture(scope="module")
def model() -> YAN:
    torch.manual_seed(0)
    return YAN.from_preset("tiny").train()


def t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_named_totals_give_the_token_weighted_metrics():
    sums = ValidationSums(t(10), t(25), t(5), t(3), t(6), t(0), t(0))
    assert sums.metrics(stage=2) == {"val_loss": 2.5, "val_ce": 0.5, "val_token_acc": 0.5}
    sums.masked_hits, sums.masked = t(1), t(4)
    assert sums.metrics(stage=1) == {
        "val_loss": 2.5,
        "val_ce": 0.5,
        "val_recon_acc": 0.5,
        "val_masked_acc": 0.25,
    }
    zero = ValidationSums.zeros(torch.device("cpu"))
    assert zero.metrics(stage=1) == {"val_loss": 0.0, "val_ce": 0.0, "val_recon_acc": 0.0}


def test_stage1_metrics_are_the_token_weighted_means_of_the_batch_losses(model):
    data = batches()
    rng = torch.get_rng_state()
    metrics = run(model, data, stage=1)
    assert torch.equal(torch.get_rng_state(), rng)  # validating leaves training's RNG alone
    assert model.training  # and gives the model back in training mode
    gen = torch.Generator().manual_seed(7)
    model.eval()
    with torch.no_grad():
        outs = [(model.stage1_loss(b, noise=False, generator=gen), b.tgt_mask.sum()) for b in data]
    model.train()
    n = sum(float(k) for _, k in outs)
    expect = {
        "val_loss": sum(float(o.loss.double() * k) for o, k in outs) / n,
        "val_ce": sum(float(o.ce.double() * k) for o, k in outs) / n,
        "val_recon_acc": sum(float(o.accuracy.double() * k) for o, k in outs) / n,
    }
    assert metrics.keys() == expect.keys()
    for key, value in expect.items():
        assert metrics[key] == pytest.approx(value, rel=1e-12), key


def test_stage2_scores_generated_tokens_and_masked_positions_only_when_asked(model):
    infill = batches(infill=True)
    with_mask = run(model, infill, stage=2, mask_id=MASK_ID)
    assert set(with_mask) == {"val_loss", "val_ce", "val_token_acc", "val_masked_acc"}
    assert all(math.isfinite(v) for v in with_mask.values())
    assert 0 <= with_mask["val_masked_acc"] <= 1 and 0 <= with_mask["val_token_acc"] <= 1
    assert run(model, infill, stage=2, mask_id=MASK_ID) == with_mask  # seeded: repeatable
    plain = run(model, infill, stage=2)
    assert set(plain) == {"val_loss", "val_ce", "val_token_acc"}
    assert plain["val_loss"] == with_mask["val_loss"]
