"""--grad-checkpoint, --compile and the fused-AdamW choice: checkpointing leaves losses and
gradients as they were (stage 1 and 2, both archs), compiled blocks give the losses of the eager
ones, the chooser picks fused AdamW only where it can run, and the flags reach run.json."""

import json
import time
from types import SimpleNamespace

import pytest
import torch

from yan import train_speed
from yan.batch import Seq2SeqBatch
from yan.model import YAN
from yan.train_args import TrainArgs, check_args
from yan.train_speed import (
    apply_speed_options,
    compile_blocks,
    enable_grad_checkpoint,
    trunk_blocks,
    use_fused_adamw,
)


def tiny_batch(seed: int = 0) -> Seq2SeqBatch:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, 64, (3, 10), generator=g)
    tgt = torch.randint(5, 64, (3, 10), generator=g)
    src_mask = torch.arange(10) < torch.tensor([[10], [7], [4]])
    tgt_mask = torch.arange(10) < torch.tensor([[9], [10], [5]])
    return Seq2SeqBatch(src, src_mask, tgt, tgt_mask)


def loss_and_grads(model: YAN, stage: int, batch: Seq2SeqBatch) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # dropout masks
    generator = torch.Generator().manual_seed(2)  # noise, t, z0
    if stage == 1:
        loss = model.stage1_loss(batch, generator=generator).loss
    else:
        loss = model.stage2_loss(batch, generator=generator, ce_steps=3).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


@pytest.mark.parametrize("arch", ["transformer", "mamba"])
@pytest.mark.parametrize("stage", [1, 2])
def test_grad_checkpoint_gives_the_same_loss_and_gradients(arch, stage):
    torch.manual_seed(0)
    # dropout on: the recomputed forward must replay the same masks
    model = YAN.from_preset("tiny", arch=arch, dropout=0.1, freeze_autoencoder=False)
    model.stage_parameters(stage)
    model.train()
    batch = tiny_batch()
    loss, grads = loss_and_grads(model, stage, batch)
    assert enable_grad_checkpoint(model) == len(trunk_blocks(model)) == 4
    calls = []
    original = torch.utils.checkpoint.checkpoint

    def spy(*args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.utils.checkpoint, "checkpoint", spy)
        loss_ckpt, grads_ckpt = loss_and_grads(model, stage, batch)
    # stage 1: 2 encoder blocks; stage 2: encoder x 2 (src, tgt) + trunk x (NLL + 3 Euler steps)
    assert len(calls) == (2 if stage == 1 else 2 * 2 + 2 * 4) and set(calls) == {False}
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    assert grads_ckpt.keys() == grads.keys() and grads
    for name, g in grads.items():
        torch.testing.assert_close(grads_ckpt[name], g, atol=1e-6, rtol=1e-5, msg=name)


def test_grad_checkpoint_is_skipped_without_grad():
    model = YAN.from_preset("tiny")
    enable_grad_checkpoint(model)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: pytest.fail("called"))
        with torch.no_grad():
            model.stage1_loss(tiny_batch(), noise=False)


def compiled_losses(options: dict | None) -> list[float]:
    """Three AdamW steps of a tiny stage 1 from fixed weights, eager (``None``) or compiled."""
    torch.manual_seed(0)
    model = YAN.from_preset("tiny")
    params = model.stage_parameters(1)
    if options is not None:
        assert compile_blocks(model, **options) == 4
    opt = torch.optim.AdamW(params, lr=1e-3)
    out = []
    for step in range(3):
        loss = model.stage1_loss(tiny_batch(step), generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.loss.backward()
        opt.step()
        out.append(loss.loss.item())
    return out


def test_compiled_blocks_match_eager_losses_over_a_few_steps():
    """torch.compile's graph capture and autograd (the aot_eager backend: everything but
    inductor's C++ code generation) on a tiny model gives the eager losses."""
    eager = compiled_losses(None)
    assert compiled_losses({"backend": "aot_eager"}) == pytest.approx(eager, rel=1e-5)


@pytest.mark.slow
def test_inductor_compiled_blocks_match_eager_losses():
    """The default backend (inductor, which builds C++ with the system compiler on CPU): 37 s
    here with a cold inductor cache, hence slow."""
    eager = compiled_losses(None)
    start = time.perf_counter()
    compiled = compiled_losses({})
    assert time.perf_counter() - start < 180, "torch.compile took over 3 minutes on CPU"
    assert compiled == pytest.approx(eager, rel=1e-4)


def test_compile_keeps_state_dict_keys():
    model = YAN.from_preset("tiny")
    keys = list(model.state_dict())
    compile_blocks(model)
    assert list(model.state_dict()) == keys  # checkpoints load either way


def test_fused_adamw_chooser():
    cpu = [torch.nn.Parameter(torch.zeros(2))]
    assert not use_fused_adamw(cpu, "auto") and not use_fused_adamw(cpu, "off")
    with pytest.raises(ValueError, match="--fused-adamw on needs every trainable parameter"):
        use_fused_adamw(cpu, "on")
    with pytest.raises(ValueError, match="--fused-adamw must be one of auto, on, off"):
        use_fused_adamw(cpu, "yes")
    # CUDA parameters as the chooser sees them (no GPU needed)
    cuda = SimpleNamespace(is_cuda=True, is_floating_point=lambda: True, device=None)
    half_on_cpu = [
        cuda,
        SimpleNamespace(is_cuda=False, is_floating_point=lambda: True, device=torch.device("cpu")),
    ]
    assert use_fused_adamw([cuda, cuda], "auto") and use_fused_adamw([cuda], "on")
    assert not use_fused_adamw(half_on_cpu, "auto") and not use_fused_adamw([cuda], "off")
    assert not use_fused_adamw([], "auto")


def test_apply_speed_options_on_cpu():
    model = YAN.from_preset("tiny")
    args = TrainArgs(out="x", data="y", preset="tiny", grad_checkpoint=True)
    speed = apply_speed_options(model, model.stage_parameters(1), args)
    assert speed.checkpointed == 4 and speed.compiled == 0 and speed.fused_adamw is None
    assert all(b.grad_checkpoint for b in trunk_blocks(model))
    assert speed.describe() == "checkpointing 4 blocks, AdamW"


def test_fused_adamw_is_passed_to_torch(monkeypatch):
    seen = {}
    real = torch.optim.AdamW

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **{**kwargs, "fused": None})

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    from yan.optim import build_optimizer

    build_optimizer([torch.nn.Parameter(torch.zeros(2, 2))], fused=True)
    assert seen["fused"] is True


def test_speed_flags_are_run_arguments():
    args = TrainArgs(out="x", data="y", preset="tiny", compile=True, fused_adamw="off")
    check_args(args)
    recorded = args.to_dict()
    assert recorded["compile"] is True and recorded["grad_checkpoint"] is False
    assert recorded["fused_adamw"] == "off"
    with pytest.raises(ValueError, match="--fused-adamw must be one of"):
        check_args(TrainArgs(out="x", data="y", preset="tiny", fused_adamw="maybe"))
    assert train_speed.FUSED_ADAMW == ("auto", "on", "off")


def test_a_training_run_with_the_speed_flags(tmp_path, monkeypatch, capsys):
    """yan train --compile --grad-checkpoint: every block compiled (mocked: the real compile is
    tested above) and checkpointed, the flags in run.json, the choice in the banner."""
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path / "cache"))
    words = "river mountain city music science history water light garden winter".split()
    rows = [f"Item {i}: the " + " ".join(words[(i + k) % 10] for k in range(8)) for i in range(60)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(rows) + "\n")
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append(self))
    from yan import train as yan_train

    out = tmp_path / "run"
    argv = ["--preset", "tiny", "--data", str(corpus), "--out", str(out), "--max-steps", "2"]
    argv += ["--batch-size", "4", "--eval-batches", "1", "--no-progress", "--compile"]
    result = yan_train.main([*argv, "--grad-checkpoint"])
    assert result.step == 2
    assert len(compiled) == 4 and all(isinstance(b, train_speed.Block) for b in compiled)
    recorded = json.loads((out / "run.json").read_text())
    assert recorded["compile"] is True and recorded["grad_checkpoint"] is True
    assert recorded["fused_adamw"] == "auto"
    assert "compiled 4 blocks, checkpointing 4 blocks, AdamW" in capsys.readouterr().out
