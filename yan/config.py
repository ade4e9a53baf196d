"""Typed configuration of a YAN model and its presets (paper App. B.3).

One flat dataclass, :class:`YANConfig`, describes the architecture (sec. 5.1, App. B.3) and the
loss weights of both training stages (eq. 8 and eq. 11). A checkpoint stores it as JSON next to
its weights (``to_dict`` / ``from_dict``), so a model can be rebuilt without the code that
trained it guessing.

Where the paper gives no value (latent noise, the lambda/alpha weights, the length head) the
default is our choice and its field says so.

Example:
    >>> cfg = preset("paper-trf")                 # d=512, 6 + 8 blocks, K=6, sigma=0.1
    >>> cfg = preset("tiny", arch="mamba", K=2)   # overrides are validated
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, TypeVar

from moefm.losses import MIN_SIGMA

C = TypeVar("C")

ARCHS = ("transformer", "mamba")
NLL_REDUCTIONS = ("mean", "dim", "sum")
FLOW_PARAMS = ("velocity", "endpoint")
FLOW_STARTS = ("noise", "source")
EXPERT_ASSIGNMENTS = ("responsibility", "cluster")


@dataclass
class YANConfig:
    """Architecture and loss weights of YAN.

    Architecture (sec. 5.1, App. B.3):
        arch: ``"transformer"`` (YAN-TRF) or ``"mamba"`` (YAN-M: bidirectional Mamba mixers
            in place of self-attention, explicit cross-attention for the source).
        vocab_size: output classes of the decoder; LLaMA-3 + ``<|padding|>`` + ``<|mask|>`` is
            128,258 in the paper. Set it from the tokenizer in use.
        d_model: hidden width of every block (paper: 512).
        n_heads: attention heads (self- and cross-attention).
        enc_layers: encoder blocks (paper: 6 Transformer / 4 Mamba).
        flow_layers: vector-field trunk blocks (paper: 8 Transformer / 6 Mamba).
        cross_attn_layers: 1-based indices of flow blocks with cross-attention to the encoded
            source (paper: 1, 2, 3, 5).
        mlp_ratio: width of every block's MLP (and of the decoder's residual FFN) over its input.
        latent_dim: size m of a token latent z; ``None`` means ``d_model`` (the paper's z in
            R^{L x d}).
        max_len: longest source or target sequence (paper: 2048); also the number of classes
            of the length head.
        dropout: dropout on residual branches and embeddings.
        mamba_d_state, mamba_d_conv, mamba_expand: the Mamba (v1) mixer's sizes, as in
            ``mamba_ssm.Mamba`` defaults.
        tokenizer: name or folder of the tokenizer the model is meant for (see
            ``yan.tokenizer.get_tokenizer``); informational, the model itself only sees ids.
        conv_kernel: our addition: YAN-TRF's token mixer adds a depthwise convolution of this
            odd width (each channel mixes with the same channel of its neighbours) to
            self-attention, in the encoder and the flow trunk; 0 turns it off (the paper's
            plain Transformer). Attention with sinusoidal positions must first learn to look
            at the neighbouring positions, which the CPU budget does not give it: without the
            convolution the encoder of a masked input sits at the unigram level on masked
            tokens (5.8% after 400 stage-1 steps, unigram 5.7%, 1,915 masked tokens of 500
            held-out infilling examples), with a width of 3 it reaches 9.1% (the Mamba mixer
            of YAN-M has a causal convolution of its own, ``mamba_d_conv``). Ignored by
            YAN-M. [0]

    MoE-FM flow (sec. 3.2, eq. 4-5):
        K: number of experts (paper: 6); ``K = 1`` is vanilla flow matching.
        sigma: expert standard deviation in eq. (4)-(5) (paper: 0.1).
        gate_hidden: hidden width of the 2-layer gate MLP; ``None`` means ``d_model``.
        train_steps: Euler steps of the unrolled solver for the stage-2 CE term (paper: 4).
        ce_steps: when not empty, each batch draws the unrolled solver's
            steps from these values instead of using ``train_steps``, so the frozen paths
            are trained on the time grids of every T they will be sampled with. With the
            fixed 4 steps the CE trains the frozen paths of T = 4 only: frozen routing then
            matches argmax at T = 1 and 4 and falls behind at T = 3 and 8 (copy at T = 8:
            97.3% against 99.4%), as the 11% of tokens the gate sends at t = 0 to a second
            expert follow paths nothing trained. Measured (small, wiki-mini, 400 stage-1 +
            100 stage-2 steps, 100 held-out examples, frozen / argmax, percent), fixed 4 ->
            ``(1, 2, 3, 4, 6, 8)``: copy at T = 8 97.3 / 99.4 -> 99.0 / 99.4; infilling all
            tokens at T = 3 91.8 / 92.6 -> 92.5 / 92.5, at T = 8 90.1 / 92.6 -> 92.0 / 92.6;
            masked tokens at T = 3 frozen 7.0 -> 8.3. The mean T is 4, the paper's cost.
            [(): always ``train_steps``]

    Stage 1, eq. (8)-(10) (weights not given in the paper; ours):
        lambda_ce, lambda_mmd, lambda_scale: weights of the reconstruction CE, the MMD^2 to
            N(0, I) and the latent scale penalty.
        latent_noise_std: std of the Gaussian noise added to the encoder output before decoding
            in stage-1 training (sec. 4.2, "small Gaussian perturbations").
        mmd_max_tokens: at most this many real tokens per batch enter the O(n^2) MMD kernel.

    Stage 1, our additions (paper-literal values in brackets):
        stage1_mask_rate: the encoder also learns to read ``<|mask|>``: each stage-1 row has
            about a fraction U(0, stage1_mask_rate) of its input tokens replaced by
            ``mask_id`` (in spans, see ``stage1_mask_span``), while the decoder must still
            output the clean text. The
            paper's encoder never sees a mask, so E(src) at masked positions carries nothing
            (measured: 0% of them decode right) and the flow has to learn every masked token
            from a CE signal thousands of times weaker than its NLL. [0]
        stage1_mask_span: longest masked span in stage 1: ``1`` masks tokens independently,
            ``3`` masks spans of U{1, 2, 3} tokens like the infilling task (App. B.2), so the
            encoder learns to fill whole spans, not only single tokens between known ones. [1]
        masked_ce_weight: weight of a masked input position's cross-entropy relative to a
            visible one's, in stage 1 (positions the encoder read as ``<|mask|>``) and in the
            stage-2 CE of the decoded endpoint (positions where the source holds
            ``<|mask|>``). At 1 every token counts the same, so 90-95% of the CE is spent on
            visible tokens that copying already gets right and the few masked ones, the
            only part that must be learnt, get 5-10% of the signal. [1]

            Measured (small, wiki-mini, 400 stage-1 steps, 766 masked tokens of 200 held-out
            infilling examples decoded from E(src) without a flow; one seed, +-0.8 points
            standard error): tokens U(0, 0.3) 5.5%, spans U(0, 0.5) 5.7%, spans + weight 5
            6.0% (the unigram reference: 5.6%); after 100 stage-2 steps (T = 3, frozen)
            4.6% with weight 1 in stage 2, 4.8% with 5. Within noise at this budget, never
            worse; the defaults are spans of 1-3, rate 0.5, weight 5.
        mmd_scale_bandwidths: multiply the MMD bandwidths {0.2, 0.5, 1, 2, 5} by sqrt(m).
            For N(0, I) latents ``||z - z'||^2 ~ 2 m``, so at m >= 256 the paper's unscaled
            kernels are ~0 for every pair of distinct tokens and MMD^2 only sees duplicates
            (99.7% of the kernel mass of real latents, measured at m = 256). [False]
        mask_id: the ``<|mask|>`` id; ``None`` means ``vocab_size - 1`` (YAN's tokenizers put it
            last, see ``yan.tokenizer``).

    Stage 2, eq. (11) (weights not given in the paper; ours):
        alpha_moefm, alpha_ce: weights of the MoE-FM NLL and of the CE of the decoded endpoint.
        alpha_length: weight of the length head's CE (an addition to the paper, which uses
            oracle lengths; 0 disables its training).
        freeze_autoencoder: keep encoder and decoder fixed in stage 2 (the paper's two-stage
            scheme); ``False`` fine-tunes them jointly with the flow.

    Stage 2, our additions where the paper is silent (paper-literal values in brackets; the
    README gives the ablation behind each default):
        nll_reduction: how eq. (5) treats the m latent dimensions of a token. ``"sum"``: the
            squared distances are summed over m (the paper's text). Summed over 256-512 dims
            at sigma = 0.1 the NLL's gradient is 400-2500x the CE-through-Euler one, which then
            does nothing (App. A.5 describes the failure), and the responsibilities (eq. 12)
            are winner-take-all, so all but one expert stay untrained. ``"mean"``: the same
            NLL divided by m (same responsibilities, comparable scale). ``"dim"``: sigma
            applies per dimension, to the mean squared distance ``||u_k - u*||^2 / m`` (eq. 5
            with sigma * sqrt(m)), which gives the same scale and soft responsibilities.
            ["sum"]
        memory_positions: add sinusoidal positions to the cross-attention memory (and to the
            flow's queries for Mamba), so a target position can find its source position. At
            t = 0 the flow's input is noise and this alignment is all the first step has.
            [False: the paper does not say]
        flow_start: ``"noise"``: z0 ~ N(0, I) (the paper); ``"source"``: a bridge from the
            source, z0 = E(src)_l + start_noise * N(0, I) at target position l (zero where the
            source is shorter). For aligned tasks (copy, infilling) the flow then starts at the
            copy-the-source answer and learns the change, not the whole text. ["noise"]
        start_noise: std of the Gaussian part of a ``"source"`` start.
        source_input: add a projection of the aligned source latent E(src)_l to the trunk's
            input at target position l (zero where the source is shorter), next to z_t. On
            aligned tasks the flow can then keep or denoise a visible token locally and spend
            its cross-attention on the context of masked ones; on unaligned tasks it is an
            extra input the flow learns to ignore. Off by default: measured after 400 + 100
            steps (small, 200 held-out infilling examples, T = 3, frozen) it changes all-token
            accuracy within noise (92.4% vs 92.1%) and does not help masked tokens (3.3% vs
            4.8%). [False]
        flow_param: what each expert head outputs. ``"velocity"``: u_k itself (the paper).
            ``"endpoint"``: a prediction of the endpoint z1, relative to the clean part of
            the start (the aligned source for a source start, 0 for a noise start), turned
            into the velocity ``u_k = (x1_k - z_t) / (1 - t)`` (``1 - t`` floored at 0.05),
            so eq. (5) is unchanged. The last Euler step then lands exactly on the chosen
            expert's endpoint, and cancelling the start's noise is built in instead of
            learnt (a velocity head must learn ``u ~ -z0``, a 256-d identity map).
            ["velocity"]
        expert_assignment: which expert a training pair teaches (see
            :mod:`moefm.clusters`). ``"responsibility"``: eq. (5), every expert in proportion
            to its responsibility (eq. 12), computed afresh at each (z_t, t); at sigma = 0.1
            they are winner-take-all, one expert takes almost every token and the gate still
            gives the others 10-15% at t = 0, which frozen routing samples and keeps for the
            whole path. ``"cluster"``: path-consistent MoE-FM. Before stage 2, k-means
            splits the target latents E(tgt) of the first training batches into K clusters
            (their centres are a buffer of the flow, saved with it); a pair then trains only
            the expert of its target's cluster (eq. 5 with the assignment known: the
            squared error of that expert at sigma, minus log pi of it), so the gate learns
            by cross-entropy which cluster each target token falls in, and the expert that
            frozen routing draws at t = 0 is the one trained on that token's paths.
            ["responsibility"]

            Measured (small, wiki-mini, 400 stage-1 + 100 stage-2 steps, 100 held-out
            examples, frozen / argmax routing, percent): ``"cluster"`` closes the frozen vs
            argmax gap (copy at T = 8: 99.4 / 99.4, with responsibilities 97.3 / 99.4;
            infilling, all tokens at T = 8: 92.2 / 92.0, with responsibilities 90.1 / 92.6)
            but loses masked tokens at T >= 3 (2.6% frozen at T = 3 and 8 against 7.0%; at
            T = 1 7.5% against 8.1%): a path-consistent flow carries a masked token to a token of the
            drawn cluster, and the gate names the right cluster for only 43% of them (given
            the true cluster the same flow fills 14-15% of masked tokens). So it stays off.
        expert_floor: with responsibilities, every expert also regresses every training pair
            with weight ``expert_floor / K`` (``expert_floor`` times
            :func:`moefm.losses.expert_floor_loss`, at the NLL's sigma and reduction, added
            to eq. 5): an expert's
            weight on a pair is then at least that, instead of its responsibility, which is ~0
            on the pairs another expert owns. Frozen routing keeps the expert it draws at
            t = 0 for the whole path, so a minority expert must also be a usable flow where it
            is not responsible. A clustered flow (``"cluster"``) trains each pair's own expert
            only and ignores it. ``0``: eq. (5) alone (the paper). [0.1]

            Measured (small, wiki-mini, the learn bench's 400-step stage 1, then 100 stage-2
            steps, 500 held-out infilling examples, two stage-2 seeds, frozen / argmax routing,
            percent): at T = 8 ``0`` puts frozen routing 0.8-1.3 points of all tokens behind
            argmax (91.5 / 92.7 and 92.0 / 92.8) and 0.1 closes it (92.6 / 92.6, 92.7 / 92.7);
            copy at T = 8 goes from 98.4-98.8 frozen to 99.4. At the paper's T = 3 frozen
            routing is unchanged (all tokens 92.7 / 92.5 -> 92.7 / 92.7, masked tokens 9.1 /
            8.9 -> 9.1 / 8.8). The cost is the masked tokens at T = 8: frozen 8.1 / 8.7 ->
            7.0 / 8.0, argmax 9.0 / 9.2 -> 6.7 / 7.9. Larger floors cost more (1.0: masked at
            T = 3 8.8, at T = 8 7.1; 3.0 on 100 examples: 4.9 at T = 3).
    """

    arch: str = "transformer"
    vocab_size: int = 128_258
    d_model: int = 512
    n_heads: int = 8
    enc_layers: int = 6
    flow_layers: int = 8
    cross_attn_layers: tuple[int, ...] = (1, 2, 3, 5)
    mlp_ratio: float = 4.0
    latent_dim: int | None = None
    max_len: int = 2048
    dropout: float = 0.0
    mamba_d_state: int = 16
    mamba_d_conv: int = 4
    mamba_expand: int = 2
    tokenizer: str = "llama3"
    conv_kernel: int = 3
    K: int = 6
    sigma: float = 0.1
    gate_hidden: int | None = None
    train_steps: int = 4
    ce_steps: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    lambda_ce: float = 1.0
    lambda_mmd: float = 1.0
    lambda_scale: float = 0.01
    latent_noise_std: float = 0.1
    mmd_max_tokens: int = 512
    alpha_moefm: float = 1.0
    alpha_ce: float = 1.0
    alpha_length: float = 0.1
    freeze_autoencoder: bool = True
    stage1_mask_rate: float = 0.5
    stage1_mask_span: int = 3
    masked_ce_weight: float = 5.0
    mmd_scale_bandwidths: bool = True
    mask_id: int | None = None
    nll_reduction: str = "dim"
    memory_positions: bool = True
    flow_start: str = "source"
    start_noise: float = 0.5
    source_input: bool = False
    flow_param: str = "velocity"
    expert_assignment: str = "responsibility"
    expert_floor: float = 0.1

    def __post_init__(self) -> None:
        self._check_types()
        # JSON gives lists; keep the tuple so configs compare equal after a round trip
        self.cross_attn_layers = tuple(int(i) for i in self.cross_attn_layers)
        self.ce_steps = tuple(int(i) for i in self.ce_steps)
        if self.latent_dim is None:
            self.latent_dim = self.d_model
        if self.gate_hidden is None:
            self.gate_hidden = self.d_model
        if self.mask_id is None:
            self.mask_id = self.vocab_size - 1
        self._validate()

    def _check_types(self) -> None:
        """Every field has its annotated type, so ``--set sigma=abc`` or a config.json with a
        string where a number belongs fails here with the field's name, not deep in torch.

        Numbers must be finite (JSON and ``--set`` accept ``NaN`` and ``Infinity``); integers
        given for float fields become floats, numpy integers become ``int``.
        """
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), str(f.type)
            if kind.endswith(" | None"):
                if value is None:
                    continue
                kind = kind.removesuffix(" | None")
            integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if kind == "int" and integral:
                setattr(self, f.name, int(value))
            elif kind == "float" and (
                isinstance(value, numbers.Real)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                setattr(self, f.name, float(value))
            elif kind == "bool" and isinstance(value, bool):
                pass
            elif kind == "str" and isinstance(value, str):
                pass
            elif kind == "tuple[int, ...]" and (
                isinstance(value, (list, tuple))
                and all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in value)
            ):
                pass
            else:
                expected = _EXPECTED.get(kind, kind)
                raise ValueError(
                    f"{f.name} must be {expected}, got {value!r} ({type(value).__name__})"
                )

    def _validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        for name in (
            "vocab_size",
            "d_model",
            "n_heads",
            "enc_layers",
            "flow_layers",
            "latent_dim",
            "max_len",
            "K",
            "gate_hidden",
            "train_steps",
            "mamba_d_state",
            "mamba_d_conv",
            "mamba_expand",
            "stage1_mask_span",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.mask_id, bool) or not isinstance(self.mask_id, int):
            raise ValueError(f"mask_id must be an integer id, got {self.mask_id!r}")
        if not 0 <= self.mask_id < self.vocab_size:
            raise ValueError(f"mask_id={self.mask_id} is outside [0, vocab_size={self.vocab_size})")
        for name, allowed in (
            ("nll_reduction", NLL_REDUCTIONS),
            ("flow_start", FLOW_STARTS),
            ("flow_param", FLOW_PARAMS),
            ("expert_assignment", EXPERT_ASSIGNMENTS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.conv_kernel < 0 or (self.conv_kernel and self.conv_kernel % 2 == 0):
            raise ValueError(
                f"conv_kernel must be 0 (off) or an odd width >= 1 (symmetric padding), got "
                f"{self.conv_kernel}"
            )
        if not 0.0 <= self.stage1_mask_rate < 1.0:
            raise ValueError(f"stage1_mask_rate must be in [0, 1), got {self.stage1_mask_rate}")
        if self.mmd_max_tokens < 2:
            raise ValueError(
                f"mmd_max_tokens must be >= 2 (unbiased MMD), got {self.mmd_max_tokens}"
            )
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if not self.sigma >= MIN_SIGMA:
            raise ValueError(
                f"sigma must be a finite number >= {MIN_SIGMA:g} (eq. 5 overflows float32 "
                f"below it), got {self.sigma}"
            )
        # every block's MLP has round(mlp_ratio * d_model) units, the decoder's FFN
        # round(mlp_ratio * latent_dim): a zero-width layer would build and train silently
        narrow = min(self.d_model, self.latent_dim)
        if not round(self.mlp_ratio * narrow) >= 1:
            raise ValueError(
                f"mlp_ratio={self.mlp_ratio} gives MLPs of round({self.mlp_ratio} x {narrow}) = "
                f"{round(self.mlp_ratio * narrow)} units; use mlp_ratio >= {1 / narrow:.3g}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        bad = [i for i in self.cross_attn_layers if not 1 <= i <= self.flow_layers]
        if bad:
            raise ValueError(
                f"cross_attn_layers are 1-based flow block indices in 1..{self.flow_layers}, "
                f"got out-of-range {bad}"
            )
        if any(i < 1 for i in self.ce_steps):
            raise ValueError(f"ce_steps must be Euler step counts >= 1, got {self.ce_steps}")
        if len(set(self.cross_attn_layers)) != len(self.cross_attn_layers):
            raise ValueError(f"cross_attn_layers has duplicates: {self.cross_attn_layers}")
        if not self.cross_attn_layers:
            raise ValueError(
                "cross_attn_layers must name at least one flow block (the source "
                "conditions the flow only through cross-attention)"
            )
        for name in (
            "lambda_ce",
            "lambda_mmd",
            "lambda_scale",
            "latent_noise_std",
            "alpha_moefm",
            "alpha_ce",
            "alpha_length",
            "start_noise",
            "masked_ce_weight",
            "expert_floor",
        ):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def replace(self, **overrides: Any) -> YANConfig:
        """A copy with some fields changed (validated like :func:`preset` overrides)."""
        _check_keys(overrides)
        if "vocab_size" in overrides and "mask_id" not in overrides:
            overrides["mask_id"] = None  # follows the new vocabulary
        return dataclasses.replace(self, **overrides)

    def paper_literal(self) -> YANConfig:
        """This config with every deviation from the paper's text switched off (see above)."""
        return self.replace(**PAPER_LITERAL)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the resolved config (``latent_dim``/``gate_hidden`` filled in)."""
        out = dataclasses.asdict(self)
        out["cross_attn_layers"] = list(self.cross_attn_layers)
        out["ce_steps"] = list(self.ce_steps)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> YANConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``.

        A config written before our deviations from the paper existed lacks their fields; it
        gets the paper-literal values it was trained with, not today's defaults.
        """
        _check_keys(data)
        return cls(**{**PAPER_LITERAL, **data})


_EXPECTED = {
    "int": "an integer",
    "float": "a finite number",
    "bool": "true or false",
    "str": "a string",
    "tuple[int, ...]": "a list of integers",
}


def _check_keys(data: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(YANConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown YANConfig field(s) {unknown}; known fields: {sorted(known)}")


# The paper-literal values of the fields where our defaults deviate (see YANConfig).
PAPER_LITERAL: dict[str, Any] = dict(
    conv_kernel=0,
    stage1_mask_rate=0.0,
    stage1_mask_span=1,
    masked_ce_weight=1.0,
    mmd_scale_bandwidths=False,
    nll_reduction="sum",
    memory_positions=False,
    flow_start="noise",
    source_input=False,
    flow_param="velocity",
    expert_assignment="responsibility",
    ce_steps=(),
    expert_floor=0.0,
)

PRESETS: dict[str, dict[str, Any]] = {
    # unit tests: a full forward/backward in milliseconds on CPU
    "tiny": dict(
        vocab_size=64,
        d_model=32,
        n_heads=4,
        enc_layers=2,
        flow_layers=2,
        cross_attn_layers=(1,),
        mlp_ratio=2.0,
        max_len=64,
        K=3,
        gate_hidden=32,
        train_steps=2,
        mmd_max_tokens=64,
        mamba_d_state=4,
        mamba_d_conv=4,
        mamba_expand=2,
        tokenizer="bpe",
    ),
    # CPU demo with an 8k byte-level BPE: ~10M parameters
    "small": dict(
        vocab_size=8192,
        d_model=256,
        n_heads=4,
        enc_layers=2,
        flow_layers=3,
        cross_attn_layers=(1, 2),
        max_len=512,
        K=6,
        tokenizer="bpe",
    ),
    # App. B.3: YAN-TRF, ~200M parameters with the LLaMA-3 vocabulary
    "paper-trf": dict(arch="transformer", enc_layers=6, flow_layers=8),
    # App. B.3: YAN-M, bidirectional Mamba blocks, encoder 4 / flow 6, ~210M parameters
    "paper-mamba": dict(arch="mamba", enc_layers=4, flow_layers=6),
}


def preset(name: str, **overrides: Any) -> YANConfig:
    """The named preset with optional field overrides.

    Raises:
        ValueError: unknown preset name (the message lists the presets) or unknown field.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(PRESETS)}")
    _check_keys(overrides)
    return YANConfig(**{**PRESETS[name], **overrides})


def parse_override(text: str) -> tuple[str, Any]:
    """One ``--set KEY=VALUE`` of a config field: the value is read as JSON (``K=4``,
    ``freeze_autoencoder=false``, ``ce_steps=[2,4]``), or kept as a bare string (``arch=mamba``).

    Raises:
        ValueError: no ``=``, or nothing before it.
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def replace_given(config: C, **changes: Any) -> C:
    """A copy of the dataclass ``config`` with the ``changes`` that are not ``None``: command-line
    options left unset keep the config's setting."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})


__all__ = [
    "ARCHS",
    "FLOW_PARAMS",
    "FLOW_STARTS",
    "NLL_REDUCTIONS",
    "PAPER_LITERAL",
    "PRESETS",
    "YANConfig",
    "parse_override",
    "preset",
    "replace_given",
]
