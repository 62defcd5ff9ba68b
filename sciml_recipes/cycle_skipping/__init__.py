"""Cycle skipping: the L2 against the W2 misfit on an advected pulse.

Engquist & Froese (2014), Yang et al. (Geophysics 2018): how often a gradient
method recovers a pulse position from random starts with either misfit.
"""

from .experiment import (
    ShiftedPulse,
    cycle_skipping,
    cycle_skipping_problems,
    plot_cycle_skipping,
    recover_positions,
)

__all__ = [
    "ShiftedPulse",
    "cycle_skipping",
    "cycle_skipping_problems",
    "plot_cycle_skipping",
    "recover_positions",
]
