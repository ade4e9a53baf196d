"""Latent isotropy under the stage-1 regularisers (sec. 4.2, Fig. 3, eq. 8-10).

Four stage-1 autoencoders are trained with the same data, tokenizer, budget and seed, differing
only in the loss weights of eq. (8) and the latent noise (config overrides):

====================  ===========  ==============  ================
variant               lambda_MMD   lambda_Scale    latent noise std
====================  ===========  ==============  ================
(a) CE                0            0               0
(b) + MMD             default      0               0
(c) + MMD + scale     default      default         0
(d) + noise           default      default         default
====================  ===========  ==============  ================

(``default`` = :class:`yan.config.YANConfig`'s value). On held-out text, the token latents
``z = E_phi(y)`` are summarised by a PCA: the share of variance in the leading components
(lower = more isotropic, no dominant direction), the participation ratio
``(sum lambda)^2 / sum lambda^2`` over the latent size (1 = perfectly isotropic), the mean
``||z||^2 / m`` (1 for N(0, I)), the unbiased MMD^2 to N(0, I) and the reconstruction accuracy
(decoding the clean latents), which shows what the regularisers cost. The figure projects the
latents of a few frequent tokens on the first two components, as in Fig. 3.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yan.bench.budget import RunBudget
from yan.bench.report import (
    QUICK_WORK,
    announce,
    markdown_table,
    new_figure,
    quick_note,
    save_figure,
    write_outputs,
)
from yan.config import YANConfig, replace_given

_DEFAULTS = YANConfig()
VARIANTS: dict[str, dict[str, float]] = {
    "CE": dict(lambda_mmd=0.0, lambda_scale=0.0, latent_noise_std=0.0),
    "CE+MMD": dict(lambda_mmd=_DEFAULTS.lambda_mmd, lambda_scale=0.0, latent_noise_std=0.0),
    "CE+MMD+scale": dict(
        lambda_mmd=_DEFAULTS.lambda_mmd, lambda_scale=_DEFAULTS.lambda_scale, latent_noise_std=0.0
    ),
    "CE+MMD+scale+noise": dict(
        lambda_mmd=_DEFAULTS.lambda_mmd,
        lambda_scale=_DEFAULTS.lambda_scale,
        latent_noise_std=_DEFAULTS.latent_noise_std,
    ),
}


@dataclass
class IsotropyConfig(RunBudget):
    """Settings: the shared budget (:class:`~yan.bench.budget.RunBudget`: preset ``small`` or
    ``tiny``, data, max_len, batch_size, lr, warmup, seed, device) and the analysis sizes.

    Attributes:
        steps: the stage-1 steps of each variant.
        eval_texts: held-out texts encoded for the PCA.
        components: leading principal components reported.
        plot_tokens: number of frequent tokens coloured in the figure.
        work: folder for the trained autoencoders (a rerun reuses finished ones).
        quick_run: a smoke run (:meth:`quick`): its report and records say so.
    """

    steps: int = 600
    eval_texts: int = 256
    components: int = 10
    plot_tokens: int = 6
    work: Path = Path("outputs/bench")
    quick_run: bool = False

    @classmethod
    def quick(cls) -> IsotropyConfig:
        """A smoke run of every step of the full one (72 s on a 2-core CPU), its
        autoencoders in their own ``work`` folder."""
        return cls(steps=60, warmup=10, eval_texts=64, work=QUICK_WORK, quick_run=True)

    def with_options(
        self, *, work: Path | None = None, device: str | None = None
    ) -> IsotropyConfig:
        """A copy with the command-line options applied (``None`` keeps the setting)."""
        return replace_given(self, work=work, device=device)


def train_variants(cfg: IsotropyConfig) -> dict[str, Path]:
    """Train (or resume / reuse) the four stage-1 autoencoders; all share the first's tokenizer."""
    from yan.train import train
    from yan.train_args import resumable_run

    device = cfg.device_name()
    root = cfg.work / f"isotropy-{cfg.preset}-{cfg.steps}"
    folders: dict[str, Path] = {}
    tokenizer: str | None = None
    for name, weights in VARIANTS.items():
        out = root / name
        print(f"stage 1, {name}: {weights} -> {out}")
        train(
            resumable_run(
                out,
                cfg,
                data=cfg.data,
                stage="1",
                preset=cfg.preset,
                task="pretrain",
                max_steps=cfg.steps,
                tokenizer=tokenizer,
                overrides=dict(weights),
                save_every=max(cfg.steps, 1),
                progress=False,
                device="cpu" if device == "cpu" else "cuda",
            )
        )
        tokenizer = tokenizer or str(out)  # the same BPE for every variant
        folders[name] = out
    return folders


@torch.inference_mode()
def latent_statistics(
    folder: Path, cfg: IsotropyConfig
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Isotropy numbers of one autoencoder, plus the token latents and their token ids."""
    from sklearn.decomposition import PCA

    from moefm.losses import mmd2
    from yan.data import BatchIterator, prepare
    from yan.model import YAN
    from yan.tokenizer import YanTokenizer

    model, tok = YAN.from_pretrained(folder), YanTokenizer.load(folder)
    examples = prepare(cfg.data, "pretrain", tok, max_len=cfg.max_len, seed=cfg.seed)["test"]
    examples = examples[: cfg.eval_texts]
    batches = BatchIterator(examples, 32, tok.pad_id, shuffle=False, infinite=False, bucket=False)
    latents, ids, hits = [], [], 0
    for batch in batches:
        z = model.encode(batch.tgt, batch.tgt_mask)
        hits += int(((model.decoder(z).argmax(-1) == batch.tgt) & batch.tgt_mask).sum())
        latents.append(z[batch.tgt_mask].float())
        ids.append(batch.tgt[batch.tgt_mask])
    z_all, id_all = torch.cat(latents), torch.cat(ids)
    m = z_all.shape[1]
    pca = PCA(n_components=min(cfg.components, m, len(z_all))).fit(z_all.numpy())
    eig = torch.linalg.eigvalsh(torch.cov(z_all.T).double()).clamp_min(0)
    gen = torch.Generator().manual_seed(cfg.seed)
    pick = torch.randperm(len(z_all), generator=gen)[:1024]
    ref = torch.randn(len(pick), m, generator=gen)
    ratio = pca.explained_variance_ratio_
    stats = {
        "tokens": len(z_all),
        "pc1_share": 100 * float(ratio[0]),
        "pc2_share": 100 * float(ratio[1]) if len(ratio) > 1 else float("nan"),
        "topk_share": 100 * float(ratio.sum()),
        "participation_ratio": float(eig.sum() ** 2 / (eig**2).sum() / m),
        "mean_sq_norm_per_dim": float(z_all.pow(2).mean()),
        "mmd2_to_gaussian": float(mmd2(z_all[pick], ref)),
        "recon_acc": 100 * hits / len(z_all),
    }
    projected = pca.transform(z_all.numpy())[:, :2]
    return stats, projected, id_all.numpy()


def run_isotropy(cfg: IsotropyConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train the variants and analyse their latents; one record per variant, plus 2-D data."""
    folders = train_variants(cfg)
    records, points = [], {}
    for name, folder in folders.items():
        stats, projected, ids = latent_statistics(folder, cfg)
        records.append(
            {
                "variant": name,
                **VARIANTS[name],
                **stats,
                "checkpoint": str(folder),
                "quick": cfg.quick_run,
            }
        )
        points[name] = (projected, ids)
        print(
            f"  {name:<20} PC1 {stats['pc1_share']:.1f}%  PC2 {stats['pc2_share']:.1f}%  "
            f"participation {stats['participation_ratio']:.3f}  MMD^2 "
            f"{stats['mmd2_to_gaussian']:.4f}  recon {stats['recon_acc']:.1f}%"
        )
    return records, points


def plot(points: dict[str, Any], records: list[dict[str, Any]], path: Path, top: int) -> Path:
    """Fig. 3: first two PCs of the latents of the most frequent tokens, per variant."""
    from yan.tokenizer import YanTokenizer

    tok = YanTokenizer.load(records[0]["checkpoint"])
    fig, axes = new_figure(len(points), width=4.0, height=4.0)
    first_ids = next(iter(points.values()))[1]
    frequent = [t for t, _ in Counter(first_ids.tolist()).most_common(top)]
    for ax, (name, (proj, ids)), rec in zip(axes, points.items(), records):
        for t in frequent:
            sel = ids == t
            ax.scatter(proj[sel, 0], proj[sel, 1], s=4, alpha=0.6, label=repr(tok.decode([t])))
        ax.set_title(
            f"{name}\n(PC1 {rec['pc1_share']:.1f}%, PC2 {rec['pc2_share']:.1f}%)", fontsize=9
        )
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
    axes[0].legend(fontsize=7, markerscale=3)
    return save_figure(fig, path)


def isotropy_main(cfg: IsotropyConfig, out_dir: str | Path) -> dict[str, Path]:
    """Run, print the table, write ``isotropy.json`` / ``.md`` / ``.png``."""
    out_dir = Path(out_dir)
    records, points = run_isotropy(cfg)
    columns = [
        "variant",
        "pc1_share",
        "pc2_share",
        "topk_share",
        "participation_ratio",
        "mean_sq_norm_per_dim",
        "mmd2_to_gaussian",
        "recon_acc",
    ]
    report = "\n".join(
        [
            "# Latent isotropy under the stage-1 regularisers (Fig. 3)\n",
            *([quick_note("a few stage-1 steps and held-out texts")] if cfg.quick_run else []),
            f"Four `{cfg.preset}` autoencoders, {cfg.steps} stage-1 steps each on {cfg.data} "
            f"(max_len {cfg.max_len}, batch {cfg.batch_size}); PCA of the token latents of "
            f"{cfg.eval_texts} held-out texts. Shares of variance in % (topk: the first "
            f"{cfg.components} components); participation ratio "
            "1 = isotropic; reconstruction accuracy in % (clean latents).\n",
            markdown_table(records, columns, 3),
        ]
    )
    paths = write_outputs(out_dir / "isotropy", records, report)
    paths["figure"] = plot(points, records, out_dir / "isotropy.png", cfg.plot_tokens)
    return announce(report, paths)


__all__ = [
    "VARIANTS",
    "IsotropyConfig",
    "isotropy_main",
    "latent_statistics",
    "run_isotropy",
    "train_variants",
]
