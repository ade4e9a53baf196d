"""KV-cache plumbing for Hugging Face models across transformers 4.x and 5.x.

transformers 5 renamed the ``past_key_values`` argument to ``cache`` (the old name is deprecated);
both versions update a :class:`~transformers.DynamicCache` in place, so we build the cache
ourselves, pass it under whichever name the model's ``forward`` takes, and never read it back.
"""

from __future__ import annotations

import inspect

from torch import nn


def cache_kwarg(model: nn.Module) -> str:
    """The keyword under which ``model.forward`` accepts a KV cache."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def new_cache(encoder_decoder: bool = False):
    """An empty dynamic cache (self- and cross-attention halves for encoder-decoders)."""
    from transformers import DynamicCache, EncoderDecoderCache

    if encoder_decoder:
        return EncoderDecoderCache(DynamicCache(), DynamicCache())
    return DynamicCache()
