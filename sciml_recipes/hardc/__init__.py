"""Hard physical constraints with a mixture of experts on diffusion-sorption.

Chalapathi, Du & Krishnapriyan (ICLR 2024): a neural model whose output is projected onto
the discretised PDE by a least-squares hard-constraint layer, one global constraint
(HardC) against a spatial mixture of experts (PCE-MoE) and its chained variant.
"""

from .pipeline import (
    METHODS,
    DiffSorpModel,
    HardCConfig,
    reference,
    relative_l2,
)
from .run import (
    TEST_U0,
    error_rows,
    evaluate_hardc,
    plot_hardc,
    run_hardc,
    train_hardc,
)

__all__ = [
    "METHODS",
    "TEST_U0",
    "DiffSorpModel",
    "HardCConfig",
    "error_rows",
    "evaluate_hardc",
    "plot_hardc",
    "reference",
    "relative_l2",
    "run_hardc",
    "train_hardc",
]
