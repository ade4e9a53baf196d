"""YAN as a PyTorchModelHubMixin model: local and hub loading, the model card, the version in
config.json, push_to_hub. Offline: the hub's download and upload functions are replaced."""

from __future__ import annotations

import hashlib
import json
import types
from pathlib import Path

import huggingface_hub
import huggingface_hub.hub_mixin
import pytest
import torch
from huggingface_hub import PyTorchModelHubMixin
from huggingface_hub.errors import LocalEntryNotFoundError

import yan
import yan.hub
from yan.checkpoint import (
    CARD_NAME,
    CHECKSUMS_NAME,
    CONFIG_NAME,
    VERSION_KEY,
    WEIGHTS_NAME,
    load_config,
    write_checksums,
)
from yan.hub import push_checkpoint
from yan.model import YAN
from yan.tokenizer import YanTokenizer

CORPUS = [f"line {i} about the river and the {w}" for i in range(60) for w in ("cat", "hill")]


@pytest.fixture(scope="module")
def tok() -> YanTokenizer:
    return YanTokenizer.train(CORPUS, vocab_size=300)


@pytest.fixture
def model(tok) -> YAN:
    torch.manual_seed(0)
    return YAN.from_preset("tiny", vocab_size=tok.vocab_size).eval()


def _same_weights(a: YAN, b: YAN) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def no_network(monkeypatch):
    """Every download the mixin or YAN could make fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)


def test_yan_is_a_hub_mixin_model():
    assert issubclass(YAN, PyTorchModelHubMixin)
    assert YAN._hub_mixin_info.model_card_data.library_name == "yan"


def test_local_round_trip_goes_through_the_mixin(tmp_path, model, tok, monkeypatch, no_network):
    seen = []
    original = PyTorchModelHubMixin.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(PyTorchModelHubMixin, "from_pretrained", classmethod(spy))
    folder = model.save_pretrained(tmp_path / "ckpt", tokenizer=tok)
    loaded = YAN.from_pretrained(folder)
    assert seen == [str(folder)]  # the mixin's from_pretrained read the folder
    assert isinstance(loaded, YAN) and not loaded.training
    assert loaded.config == model.config and _same_weights(loaded, model)
    src = torch.tensor([[5, 6, 7]])
    a = model.generate(src, tgt_len=4, steps=3, seed=1)
    b = loaded.generate(src, tgt_len=4, steps=3, seed=1)
    assert torch.equal(a.tokens, b.tokens)
    # the old keyword-less signature: (path, device, dtype)
    half = YAN.from_pretrained(folder, "cpu", "bfloat16")
    assert half.encoder.embed.weight.dtype == torch.bfloat16


def test_hub_id_is_downloaded_then_loaded(tmp_path, model, tok, monkeypatch):
    folder = model.save_pretrained(tmp_path / "snapshot", tokenizer=tok)
    write_checksums(folder)
    calls = []

    def hf_hub_download(repo_id, filename, **kwargs):
        calls.append(("file", repo_id, filename, kwargs.get("revision")))
        return str(folder / filename)

    def snapshot_download(repo_id, **kwargs):
        calls.append(("snapshot", repo_id, None, kwargs.get("revision")))
        return str(folder)

    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    loaded = YAN.from_pretrained("org/yan-tiny", revision="v1")
    assert _same_weights(loaded, model)
    assert calls == [
        ("file", "org/yan-tiny", CONFIG_NAME, "v1"),
        ("snapshot", "org/yan-tiny", None, "v1"),
    ]
    # a downloaded repository is verified like a folder
    (folder / WEIGHTS_NAME).write_bytes((folder / WEIGHTS_NAME).read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="model.safetensors is damaged"):
        YAN.from_pretrained("org/yan-tiny")


def test_neither_folder_nor_repository(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        YAN.from_pretrained(tmp_path / "nope")

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot reach the hub")

    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", offline)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder nor a model"):
        YAN.from_pretrained("org/missing")
    with pytest.raises(ValueError, match="weights must be one of"):
        YAN.from_pretrained(tmp_path, weights="best")


def test_version_is_recorded_in_config_json(tmp_path, model):
    folder = model.save_pretrained(tmp_path / "ckpt")
    record = json.loads((folder / CONFIG_NAME).read_text())
    assert record[VERSION_KEY] == yan.__version__
    assert load_config(folder) == model.config  # the version is not a config field


def test_card_has_config_parameter_counts_and_run_settings(tmp_path, model, tok):
    out = tmp_path / "run"
    out.mkdir()
    run = {"stage": "2", "data": "wiki-mini", "max_steps": 300, "lr": 1e-4, "ema_decay": 0.999}
    (out / "run.json").write_text(json.dumps(run))
    folder = model.save_pretrained(out / "checkpoints" / "step-00000300", tokenizer=tok)
    card = (folder / CARD_NAME).read_text()
    counts = model.param_counts()
    assert f"**{counts['total']:,}**" in card
    assert f"| MoE head (K experts + gate) | {counts['moe_head']:,} |" in card
    assert json.dumps(model.config.to_dict(), indent=2) in card
    assert "| data | `wiki-mini` |" in card and "| ema_decay | `0.999` |" in card
    assert "library_name: yan" in card and "## Evaluation" not in card


class FakeApi:
    """Records what would be uploaded (file name -> bytes) instead of talking to the hub."""

    pushed: dict[str, bytes] = {}
    repos: list[tuple[str, bool | None]] = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        FakeApi.repos.append((repo_id, private))
        return types.SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, commit_message, **kwargs):
        FakeApi.pushed = {}
        for op in operations:
            with op.as_file() as f:
                FakeApi.pushed[op.path_in_repo] = f.read()
        return types.SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")


@pytest.fixture
def fake_api(monkeypatch):
    FakeApi.pushed, FakeApi.repos = {}, []
    monkeypatch.setattr(yan.hub, "HfApi", FakeApi)
    return FakeApi


def test_push_to_hub_uploads_a_self_contained_folder(model, tok, fake_api):
    url = model.push_to_hub("org/yan-tiny", tokenizer=tok, private=True)
    assert url == "https://huggingface.co/org/yan-tiny/commit/0"
    assert fake_api.repos == [("org/yan-tiny", True)]
    pushed = fake_api.pushed
    assert {WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, CHECKSUMS_NAME, "tokenizer.json"} <= set(pushed)
    assert 'YAN.from_pretrained("org/yan-tiny")' in pushed[CARD_NAME].decode()
    files = json.loads(pushed[CHECKSUMS_NAME])["files"]
    for name, entry in files.items():  # the record matches what was uploaded
        assert hashlib.sha256(pushed[name]).hexdigest() == entry["sha256"]


def test_push_checkpoint_refreshes_the_card_and_skips_resume_state(tmp_path, model, tok, fake_api):
    folder = model.save_pretrained(tmp_path / "step-00000010", tokenizer=tok)
    (folder / "optimizer.pt").write_bytes(b"resume state")
    (folder / "eval_qa.md").write_text("| T | rougeL |\n|---|---|\n| 3 | 0.1234 |\n")
    write_checksums(folder)
    push_checkpoint(folder, "org/yan-tiny")
    pushed = fake_api.pushed
    assert "optimizer.pt" not in pushed
    card = pushed[CARD_NAME].decode()
    assert "## Evaluation" in card and "| 3 | 0.1234 |" in card
    assert json.loads(pushed[CHECKSUMS_NAME])["files"][CARD_NAME]["bytes"] == len(card.encode())
    # damaged weights are not published
    (folder / WEIGHTS_NAME).write_bytes(b"\0" * (folder / WEIGHTS_NAME).stat().st_size)
    with pytest.raises(ValueError, match="model.safetensors is damaged"):
        push_checkpoint(folder, "org/yan-tiny")


def test_save_pretrained_is_still_atomic(tmp_path, model):
    class Broken:
        def save(self, folder: Path) -> None:
            raise OSError("disk full")

    folder = model.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(OSError, match="disk full"):
        YAN.from_preset("tiny", K=2).save_pretrained(folder, tokenizer=Broken())
    assert YAN.from_pretrained(folder).config.K == model.config.K
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_yan_push_command(tmp_path, model, tok, fake_api, capsys):
    from yan.cli import main as yan_main

    folder = model.save_pretrained(tmp_path / "ckpt", tokenizer=tok)
    yan_main(["push", "--checkpoint", str(folder), "--repo", "org/yan-tiny", "--private"])
    assert capsys.readouterr().out.strip() == "https://huggingface.co/org/yan-tiny/commit/0"
    assert fake_api.repos == [("org/yan-tiny", True)] and WEIGHTS_NAME in fake_api.pushed
    with pytest.raises(SystemExit):
        yan_main(["push", "--checkpoint", str(tmp_path / "none"), "--repo", "org/x"])
    assert "does not exist" in capsys.readouterr().err
