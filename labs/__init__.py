"""Teaching labs for MoE-FM: Jupyter notebooks and figure scripts built on :mod:`moefm`.

Notebooks ``01_*.ipynb`` ... ``05_*.ipynb`` walk from flow matching to mixture-of-experts flow
matching; every figure module has the same command line::

    python -m labs.figure2 --out DIR [--quick]       # the paper's Fig. 2 + W2/coverage/straightness
    python -m labs.vfm_blur --out DIR [--quick]      # the exact VFM optimum blurs modes (Prop. 3.1)
    python -m labs.sigma_limits --out DIR [--quick]  # sigma -> 0 and sigma -> inf (App. A.3)
    python -m labs.routing --out DIR [--quick]       # frozen vs re-sampled vs mixture-mean routing

Set ``MOEFM_LAB_FAST=1`` to shrink every notebook to a run of a few seconds.

Every notebook has "your turn" exercises: the student writes a function (the linear path, the
MoE-FM NLL, the responsibilities, frozen-routing Euler ...) and the next cell checks it against
the library with :mod:`labs.checks`, naming the mistake when it is wrong. :mod:`labs.solutions`
holds the answers; ``MOEFM_LAB_SOLUTIONS=1`` runs the notebooks with them (as the tests do).
Notebook 03 reads our own benchmark through :mod:`labs.bench_report`, which also checks every
statement the notebook makes about it.
"""
