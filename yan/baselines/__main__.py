"""Print the parameter count of every baseline preset: ``python -m yan.baselines``.

Models are built on the ``meta`` device, so even the paper presets cost no memory or time.
"""

from __future__ import annotations

import argparse

import torch

from yan.baselines.build import build_baseline, count_parameters
from yan.baselines.common import BASELINES, PRESET_NAMES

# GPT-2 BPE (50,257) and LLaMA-3 (128,256), each plus <|padding|> and <|mask|>.
VOCABS = {"gpt2": 50_259, "llama3": 128_258}


def parameter_table(vocab_size: int, max_len: int) -> list[tuple[str, str, int]]:
    """``(preset, baseline, parameters)`` for every preset and baseline at this vocabulary."""
    rows = []
    for preset in PRESET_NAMES:
        for name in BASELINES:
            with torch.device("meta"):
                model = build_baseline(
                    name,
                    preset,
                    vocab_size=vocab_size,
                    pad_id=vocab_size - 2,
                    mask_id=vocab_size - 1,
                    max_len=max_len,
                )
            rows.append((preset, name, count_parameters(model)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vocab",
        action="append",
        help=f"a vocabulary size or one of {sorted(VOCABS)} (repeatable; default: both)",
    )
    parser.add_argument("--max-len", type=int, default=1024, help="positions (default 1024)")
    args = parser.parse_args(argv)
    for vocab in args.vocab or list(VOCABS):
        if vocab in VOCABS:
            size = VOCABS[vocab]
        elif vocab.isdigit():
            size = int(vocab)
        else:
            parser.error(f"--vocab must be an integer or one of {sorted(VOCABS)}, got {vocab!r}")
        print(f"vocab_size={size:,} max_len={args.max_len}")
        for preset, name, n in parameter_table(size, args.max_len):
            print(f"  {preset:6s} {name:17s} {n / 1e6:8.2f}M")


if __name__ == "__main__":
    main()
