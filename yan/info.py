"""``yan info`` / ``python -m yan.model``: a preset's configuration and parameter counts.

Counts only: the model is built on the meta device, so even the paper presets cost no memory
and no initialisation time.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from yan.config import PRESETS, parse_override, preset
from yan.model import YAN


def main(argv: Sequence[str] | None = None) -> None:
    """``yan info --preset NAME [--set KEY=VALUE ...]``: parameter counts."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--preset", default="paper-trf", choices=list(PRESETS))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (JSON value), e.g. --set K=4",
    )
    args = parser.parse_args(argv)
    try:
        config = preset(args.preset, **dict(parse_override(s) for s in args.set))
    except ValueError as err:
        parser.error(str(err))
    with torch.device("meta"):  # counts only: no memory, no initialisation cost
        model = YAN(config)
    print(
        f"YAN preset {args.preset!r} (arch={config.arch}, d={config.d_model}, "
        f"vocab={config.vocab_size:,}, K={config.K})"
    )
    for part, n in model.param_counts().items():
        print(f"  {part:<12} {n:>13,}  ({n / 1e6:7.2f}M)")


if __name__ == "__main__":
    main()
