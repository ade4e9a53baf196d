"""Benchmarks of YAN against GPT-2, BART and LLaDA-style masked diffusion (sec. 4.2, 5.3-5.4).

Three parts, each a function and a ``yan bench`` mode that writes JSON, markdown and PNGs:

- ``latency`` (:mod:`yan.bench.latency`): seconds and tokens/s versus target length L for
  YAN-TRF / YAN-M at T Euler steps and the three baselines, speed-up ratios from the same run,
  and YAN's achieved FLOP/s against the measured matmul peak (Fig. 4 bottom, App. C.2);
- ``quality`` (:mod:`yan.bench.quality`): infilling quality versus T for YAN and masked
  diffusion on the ``small`` models, and quality versus diversity over T and seeds (Fig. 4 top,
  5, 6);
- ``isotropy`` (:mod:`yan.bench.isotropy`): PCA of stage-1 latents trained with CE only,
  + MMD, + scale, + noise (Fig. 3).

Command line::

    yan bench --quick                        # latency, a few minutes on a 2-core CPU
    yan bench all --out reports              # everything (the full latency sweep takes long)
    yan bench latency --models yan-trf gpt2 --presets small --lengths 128 512 --threads 1

Python::

    from yan.bench import LatencyConfig, run_latency
    records = run_latency(LatencyConfig(models=("yan-trf", "gpt2"), lengths={"small": (128,)}))
"""

from yan.bench.cli import main
from yan.bench.latency import REQUIRED_KEYS, LatencyConfig, run_latency
from yan.bench.timing import count_flops, matmul_peak, time_call

__all__ = [
    "REQUIRED_KEYS",
    "LatencyConfig",
    "count_flops",
    "main",
    "matmul_peak",
    "run_latency",
    "time_call",
]
