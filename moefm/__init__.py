"""moefm: mixture-of-experts flow matching (MoE-FM).

A small library: the linear path and losses (eq. 2, 5, 12), a mixture-of-experts head for any
trunk, fixed-step solvers with frozen / re-sampled / mixture-mean routing, closed-form optima
for Gaussian-mixture data (Prop. 3.1, Thm 3.2, App. A.3), and metrics for straightness and
sample quality. See the labs for a guided tour.
"""

from .heads import MoEHead, MoEOutput
from .losses import mmd2, moefm_nll, responsibilities, vfm_loss
from .models import FlowModel, MLPTrunk, MoEField
from .paths import PathSample, linear_path
from .sampling import SampleResult, sample

__all__ = [
    "FlowModel",
    "MLPTrunk",
    "MoEField",
    "MoEHead",
    "MoEOutput",
    "PathSample",
    "SampleResult",
    "linear_path",
    "mmd2",
    "moefm_nll",
    "responsibilities",
    "sample",
    "vfm_loss",
]
__version__ = "0.1.0"
