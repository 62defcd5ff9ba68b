"""ProbConserv on the generalised porous medium equation.

Hansen et al. (ICML 2023): a deep ensemble of conditional neural processes predicts
the solution with its variance, and the conservation law is imposed on it at test time
(HardC projection, ProbConserv update, and the convex variant).
"""

from .pipeline import (
    METHODS,
    PROBLEMS,
    TEST_VALUES,
    TRAIN_RANGES,
    CaseResult,
    constraint,
    evaluate_case,
    make_tasks,
    pde_residual,
    result_rows,
    shock_position,
    test_cases,
    train_ensemble,
)
from .run import (
    plot_cases,
    run_probconserv,
    update_cost_ms,
)

__all__ = [
    "METHODS",
    "PROBLEMS",
    "TEST_VALUES",
    "TRAIN_RANGES",
    "CaseResult",
    "constraint",
    "evaluate_case",
    "make_tasks",
    "pde_residual",
    "plot_cases",
    "result_rows",
    "run_probconserv",
    "shock_position",
    "test_cases",
    "train_ensemble",
    "update_cost_ms",
]
