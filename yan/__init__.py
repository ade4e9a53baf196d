"""YAN: a non-autoregressive language model with a latent mixture-of-experts flow (moefm)."""

__version__ = "0.1.0"
