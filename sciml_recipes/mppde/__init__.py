"""Message-passing neural PDE solvers on the combined Burgers/KdV family.

Brandstetter, Worrall & Welling (ICLR 2022): MP-PDE and the FNO baseline trained with
the pushforward trick on WENO5 data, scored by the accumulated rollout error.
"""

from .pipeline import (
    build_stepper,
    load_stepper,
    rollout_error,
    train_stepper,
    weno5_error,
)
from .run import (
    CONVENTIONS,
    FAMILIES,
    case_name,
    plot_rollout,
    run_mppde,
)

__all__ = [
    "CONVENTIONS",
    "FAMILIES",
    "build_stepper",
    "case_name",
    "load_stepper",
    "plot_rollout",
    "rollout_error",
    "run_mppde",
    "train_stepper",
    "weno5_error",
]
